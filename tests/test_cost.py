"""The convergence cost model: epochs x (epoch + share of a stop validation) + the final ranking."""
import pytest

from bench.cost import run_hours


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
