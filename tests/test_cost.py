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


def test_schedule_epochs_waits_for_the_first_validation_after_the_best_then_the_patience():
    from bench.cost import schedule_epochs

    assert schedule_epochs(6, 2, 5, 200) == 16        # clean DiffuRec on Beauty: its record ran 16 epochs
    assert schedule_epochs(8, 20, 5, 500) == 120      # the release's cadence: best seen at 20, five more
    assert schedule_epochs(21, 20, 5, 500) == 140
    assert schedule_epochs(480, 20, 5, 500) == 500    # the cap
    assert schedule_epochs(3, 1, 10, 200) == 13


def test_similar_records_ignore_the_schedule_and_fill_missing_keys_with_the_base():
    from bench.cost import similar_records

    base = {"hidden_size": 64, "epochs": 200, "eval_step": 1, "padding": None}
    mine = {**base, "epochs": 500, "eval_step": 20, "padding": "fixed"}

    def rec(model, **params):
        return {"dataset": "beauty", "model": model, "base_model": "M", "params": params}

    es = rec("M-es", **{**mine, "epochs": 200, "eval_step": 2})            # the same epoch, another schedule
    old = rec("M", hidden_size=64, epochs=200, eval_step=1)                 # predates the switch: base value
    same, nearest = similar_records([es, old], "beauty", "M", mine, base)
    assert same == [es] and nearest == []
    same, nearest = similar_records([old], "beauty", "M", mine, base)
    assert same == [] and nearest == []                                     # shares none of the changes
    wide = rec("M-wide", **{**base, "hidden_size": 128, "padding": "fixed"})
    same, nearest = similar_records([old, wide], "beauty", "M", mine, base)
    assert same == [] and nearest == []                                     # sharing padding=fixed is not enough
    same, nearest = similar_records([old, wide], "beauty", "M", mine, base, like="M-wide")
    assert same == [] and nearest == [wide]                                 # the profile's cost_like names it
    assert similar_records([es], "toys", "M", mine, base) == ([], [])


@needs_data
def test_a_variant_that_changes_the_schedule_is_projected_from_its_own_schedule(tmp_path):
    """500 epochs, validation every 20, patience 5: epochs to the base's best checkpoint, on to the next
    validation and five more; at the base's s/epoch, or a similar run's once one exists."""
    import yaml

    from bench import store
    from bench.cost import queue_rows, run_hours
    from bench.profiles import Entry, load_profile
    from bench.runner import resolve

    spec = {"description": "t", "protocol": "clean", "datasets": ["beauty"], "models": ["SASRec"],
            "seeds": [0], "train": {"epochs": 200, "eval_step": 1, "stopping_step": 10}, "stop_users": 8000,
            "variants": [{"name": "SASRec-long", "model": "SASRec",
                          "params": {"epochs": 500, "eval_step": 20, "stopping_step": 5}},
                         {"name": "SASRec-longer", "model": "SASRec",
                          "params": {"epochs": 500, "eval_step": 10, "stopping_step": 5}}]}
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(spec))
    profile = load_profile(str(path))
    results = tmp_path / "results"

    def record(model, best_epoch, s_per_epoch):
        e = next(x for x in __import__("bench.profiles", fromlist=["grid"]).grid(profile) if x.model == model)
        params, _ = resolve(e, profile)
        store.write_run(store.run_dir(results, "tiny", "beauty", model, 0),
                        {"status": "ok", "dataset": "beauty", "model": model, "base_model": "SASRec",
                         "params": params, "checkpoint": {"best_epoch": best_epoch},
                         "timing": {"train_s": 3600.0, "eval_s": 0.0, "test_eval_s": 0.0,
                                    "s_per_epoch": s_per_epoch, "epochs_run": best_epoch + 11}}, None)

    record("SASRec", 25, 60.0)  # best after 26 epochs
    cell = {"epoch_s": 60.0, "valid_s": 30.0, "epochs": 37, "best": [26], "assumed_epochs": False,
            "n_users": 20000, "stop_users": 8000, "run_h": 1.0}
    rows = [{"model": "SASRec", "datasets": {"beauty": cell}}]
    mine, _ = resolve(Entry("beauty", "SASRec-long", 0, "SASRec", (("epochs", 500), ("eval_step", 20),
                                                                    ("stopping_step", 5))), profile)
    q = {r["model"]: r for r in queue_rows(profile, results, rows)}
    # 26 -> first validation at 40, then 5 x 20: 140 epochs; stop validations see 8,000 of 20,000 users
    assert q["SASRec-long"]["hours"] == pytest.approx(run_hours(140, 60.0, 30.0, mine, {"stop_users": 8000}, 20000, 0))
    assert "-> 140 epochs" in q["SASRec-long"]["basis"] and "best epoch of SASRec here" in q["SASRec-long"]["basis"]
    assert "-> 80 epochs" in q["SASRec-longer"]["basis"]   # 26 -> 30, then 5 x 10

    # a run of the same model at a schedule nearer the variant's: its s/epoch and its best epoch
    record("SASRec-longer", 45, 90.0)  # best after 46 epochs
    q = {r["model"]: r for r in queue_rows(profile, results, rows)}
    assert q["SASRec-long"]["hours"] == pytest.approx(run_hours(160, 90.0, 30.0, mine, {"stop_users": 8000}, 20000, 0))
    assert "of SASRec-longer here" in q["SASRec-long"]["basis"]


@needs_data
def test_a_run_in_training_is_projected_from_its_own_epochs_and_lends_its_s_per_epoch(tmp_path):
    """A run with a saved state counts its hours left (not a whole run); a variant sharing its change
    borrows its measured s/epoch, as DiffuRec-padattn does DiffuRec-paper-es's (both pad to 50)."""
    import yaml

    from bench import store
    from bench.cost import queue_rows, run_hours
    from bench.profiles import Entry, grid, load_profile
    from bench.runner import resolve

    spec = {"description": "t", "protocol": "clean", "datasets": ["beauty"], "models": ["SASRec"],
            "seeds": [0], "train": {"epochs": 200, "eval_step": 1, "stopping_step": 10}, "stop_users": 8000,
            "variants": [{"name": "SASRec-es", "model": "SASRec",
                          "params": {"hidden_dropout_prob": 0.3, "eval_step": 2, "stopping_step": 5}},
                         {"name": "SASRec-drop", "model": "SASRec", "params": {"hidden_dropout_prob": 0.3}},
                         {"name": "SASRec-pad", "model": "SASRec", "params": {"hidden_dropout_prob": 0.2},
                          "cost_like": "SASRec-es"},
                         {"name": "SASRec-init", "model": "SASRec", "params": {"hidden_dropout_prob": 0.2}}]}
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(spec))
    profile = load_profile(str(path))
    results = tmp_path / "results"
    base = next(x for x in grid(profile) if x.model == "SASRec")
    params, _ = resolve(base, profile)
    store.write_run(store.run_dir(results, "tiny", "beauty", "SASRec", 0),
                    {"status": "ok", "dataset": "beauty", "model": "SASRec", "base_model": "SASRec",
                     "params": params, "checkpoint": {"best_epoch": 25},
                     "timing": {"train_s": 3600.0, "eval_s": 0.0, "test_eval_s": 0.0, "s_per_epoch": 60.0}}, None)
    cell = {"epoch_s": 60.0, "valid_s": 30.0, "epochs": 37, "best": [26], "assumed_epochs": False,
            "n_users": 20000, "stop_users": 8000, "run_h": 1.0}
    rows = [{"model": "SASRec", "datasets": {"beauty": cell}}]
    training = [{"dataset": "beauty", "model": "SASRec-es", "seed": 0, "epochs_done": 4, "s_per_epoch": 600.0,
                 "hours_left_least": 1.5, "hours_left_most": 30.0}]
    q = {r["model"]: r for r in queue_rows(profile, results, rows, training=training)}
    assert q["SASRec-es"]["hours"] == 1.5 and "4 epochs done at 600 s/epoch" in q["SASRec-es"]["basis"]
    drop, _ = resolve(next(x for x in grid(profile) if x.model == "SASRec-drop"), profile)
    # its own schedule around the base's best epoch (26 + 10 = 36 epochs), at the run in training's s/epoch
    assert q["SASRec-drop"]["hours"] == pytest.approx(run_hours(36, 600.0, 30.0, drop, {"stop_users": 8000}, 20000, 0))
    assert "s/epoch of SASRec-es here (in training), its base's best epoch" in q["SASRec-drop"]["basis"]
    # the run in training already improved later than the base ever did: its best so far is the floor
    # (40 + 10 = 50 epochs), as DiffuRec-paper-es's for DiffuRec-paper; earlier than the base's, it is not
    for best_so_far, epochs, basis in ((39, 50, "and its best epoch so far (a floor)"), (9, 36, "its base's best epoch")):
        later = [{**training[0], "best_epoch": best_so_far}]
        q2 = {r["model"]: r for r in queue_rows(profile, results, rows, training=later)}
        assert q2["SASRec-drop"]["hours"] == pytest.approx(
            run_hours(epochs, 600.0, 30.0, drop, {"stop_users": 8000}, 20000, 0))
        assert basis in q2["SASRec-drop"]["basis"]
    pad, _ = resolve(next(x for x in grid(profile) if x.model == "SASRec-pad"), profile)
    assert q["SASRec-pad"]["hours"] == pytest.approx(run_hours(36, 600.0, 30.0, pad, {"stop_users": 8000}, 20000, 0))
    assert "s/epoch of SASRec-es here (the nearest run)" in q["SASRec-pad"]["basis"]
    assert q["SASRec-init"]["hours"] == pytest.approx(1.0)  # no cost_like: its base's hours, though it differs
    without = {r["model"]: r for r in queue_rows(profile, results, rows)}
    assert without["SASRec-drop"]["hours"] == pytest.approx(1.0)  # no run to learn from: as its base


def test_campaign_page_states_runs_finished_hours_run_and_hours_left(tmp_path):
    from bench import store
    from bench.cost import finished_rows, render_queue

    for ds, model, hours, device in (("beauty", "A", 2.0, "cpu"), ("beauty", "B", 1.0, "NVIDIA H100"),
                                     ("toys", "A", 0.5, "cpu")):
        store.write_run(store.run_dir(tmp_path, "full", ds, model, 0),
                        {"status": "ok", "dataset": ds, "model": model, "env": {"device": device},
                         "timing": {"train_s": hours * 3600, "eval_s": 0.0, "test_eval_s": 0.0}}, None)
    finished = finished_rows(tmp_path, "full")
    assert [(r["dataset"], r["runs"], r["gpu"]) for r in finished] == [("beauty", 2, 1), ("toys", 1, 0), ("all", 3, 1)]
    assert finished[-1]["hours"] == pytest.approx(3.5)
    queue = [{"model": "C", "dataset": "toys", "seed": 0, "hours": 4.0, "cumulative": 4.0, "basis": "x"}]
    text = render_queue(queue, "full", finished)
    assert "3 runs have an ok record in `results/full` (1 made on a GPU); they took 4 process-hours" in text
    assert "| 1 | C | toys | 0 | 4.0 | 4.0 | x |" in text
    assert "Total left: 4 process-hours (runs with a projection); with the 4 run so far, 8 for the whole" in text


def test_padded_tokens_grow_when_batches_are_not_sorted_by_length():
    import numpy as np

    from bench.cost import padded_tokens

    lengths = np.array([1] * 900 + [50] * 100)
    sorted_ = padded_tokens(lengths, 100, bucketing=True)
    plain = padded_tokens(lengths, 100, bucketing=False)
    assert sorted_ == 900 * 1 + 100 * 50     # one window, sorted: each batch as wide as its own histories
    assert plain > 0.9 * 1000 * 50           # shuffled: almost every batch holds a long history
