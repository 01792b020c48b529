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
