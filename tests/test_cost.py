"""The convergence cost model: epochs x (epoch + share of a stop validation) + the final ranking."""
import pytest

from bench.cost import run_hours
from conftest import needs_data


def test_run_hours_counts_epochs_stop_validations_and_final_ranking():
    params = {"eval_step": 2}
    # 10 epochs of 100 s, a 40 s all-user validation of which early stopping sees 8,000 of 20,000 users
    # every 2 epochs, then validation + test + 1 extra evaluation over all users
    hours = run_hours(10, 100.0, 40.0, params, {"stop_users": 8000}, 20000, n_extra=1)
    assert hours == pytest.approx((10 * (100 + 40 * 0.4 / 2) + 40 * 3) / 3600)
    assert run_hours(10, 100.0, 40.0, {"eval_step": 1}, {}, 20000, 0) == pytest.approx((10 * 140 + 80) / 3600)


def test_grid_table_counts_runs_done_and_hours_left():
    from bench.cost import render

    def cell(run_h, records, seeds=5):
        return {"epoch_s": 100.0, "valid_s": 10.0, "epochs": 20, "best": None, "records": records,
                "assumed_epochs": not records, "converged": None, "run_h": run_h, "grid_h": run_h * seeds,
                "left_h": run_h * max(0, seeds - records)}

    rows = [{"model": "A", "seeds": 5, "datasets": {"beauty": cell(2.0, 1), "toys": cell(1.0, 0)}},
            {"model": "B", "seeds": 5, "datasets": {"beauty": cell(0.5, 5), "toys": cell(0.5, 2)}}]
    text = render(rows, "full", "beauty", ["beauty", "toys"], None, {"cpu": "x", "threads": 1})
    assert "| A | 10.0 | 5.0 | 15.0 | 1 / 10 | 13.0 |" in text  # 4 Beauty runs x 2 h + 5 Toys runs x 1 h
    assert "| B | 2.5 | 2.5 | 5.0 | 7 / 10 | 1.5 |" in text
    assert "20 h of one process, of which 14 h are left to run" in text


@needs_data
def test_runs_left_are_in_grid_order_with_hours_from_the_records(tmp_path):
    """A base run costs its model's measured runs there; a variant, its base's hours times the
    variant/base ratio measured on another dataset, else its base's hours, marked rough where it
    changes width or schedule."""
    import yaml

    from bench import store
    from bench.cost import queue_rows
    from bench.profiles import load_profile

    spec = {"description": "t", "protocol": "clean", "datasets": ["beauty", "toys"], "models": ["SASRec"],
            "seeds": [0, 1], "train": {"epochs": 1},
            "variants": [{"name": "SASRec-bce", "model": "SASRec", "params": {"loss_type": "BCE"}, "seeds": [0]},
                         {"name": "SASRec-wide", "model": "SASRec", "params": {"hidden_size": 128}, "seeds": [0]}],
            "priority": [{"models": ["SASRec-*"]}]}
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(spec))
    profile = load_profile(str(path))

    def record(dataset, model, hours):
        folder = store.run_dir(tmp_path / "results", "tiny", dataset, model, 0)
        store.write_run(folder, {"status": "ok", "dataset": dataset, "model": model,
                                 "timing": {"train_s": hours * 3000, "eval_s": hours * 500, "test_eval_s": hours * 100}},
                        None)

    record("beauty", "SASRec", 1.0)
    record("toys", "SASRec", 2.0)
    record("beauty", "SASRec-bce", 0.5)
    rows = [{"model": "SASRec", "datasets": {ds: {"run_h": 9.0, "assumed_epochs": False} for ds in ("beauty", "toys")}}]
    queue = queue_rows(profile, tmp_path / "results", rows)
    got = [(q["model"], q["dataset"], q["seed"], round(q["hours"], 3)) for q in queue]
    assert got == [("SASRec-wide", "beauty", 0, 1.0),   # the priority rule first: variants, grid order
                   ("SASRec-bce", "toys", 0, 1.0),      # toys SASRec 2 h x the 0.5 ratio measured on beauty
                   ("SASRec-wide", "toys", 0, 2.0),
                   ("SASRec", "beauty", 1, 1.0), ("SASRec", "toys", 1, 2.0)]
    assert queue[-1]["cumulative"] == pytest.approx(7.0)
    assert "rough: hidden_size 64 -> 128" in queue[0]["basis"]
    assert "measured on beauty" in queue[1]["basis"]
