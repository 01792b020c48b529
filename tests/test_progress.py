"""bench progress: hours left of a run in training, and its snapshot text."""
import math

import pytest

from bench.progress import hours_left, progress_md


def _row(**kw):
    row = {"dataset": "beauty", "model": "DiffuRec-paper", "seed": 0, "epochs_done": 40, "s_per_epoch": 360.0,
           "eval_s": 2 * 1800.0, "bad_validations": 1, "valid": [(20, {"NDCG@10": 0.03}), (40, {"NDCG@10": 0.029})],
           "segments": 3, "best_epoch": 19}
    return {**row, **kw}


def test_hours_left_counts_the_patience_and_the_cap_with_validation_time():
    params = {"epochs": 500, "eval_step": 20, "stopping_step": 5}
    least, most = hours_left(_row(), params)
    # at least 4 more validations x 20 epochs = 80 epochs of 360 s, plus 4 validations of 1800 s
    assert least == pytest.approx((80 * 360 + 4 * 1800) / 3600)
    assert most == pytest.approx((460 * 360 + 23 * 1800) / 3600)
    # a run at its cap has nothing left
    assert hours_left(_row(epochs_done=500), params) == (0.0, 0.0)


def test_snapshot_names_each_run_and_its_curve():
    row = _row(hours_left_least=10.0, hours_left_most=50.0)
    text = progress_md("full", [row])
    assert "| beauty/DiffuRec-paper/seed-0 | 40 | 360 | 2 | 20 | 10.0–50.0 | 3 |" in text
    assert "after epoch: 20: 3.000, 40: 2.900" in text
    assert "not from records" in text
    assert "No run of this profile is in training." in progress_md("full", [])
    assert math.isfinite(row["s_per_epoch"])


def test_snapshot_json_keeps_the_curve_and_is_read_back(tmp_path):
    from bench.progress import progress_json, read_snapshot, snapshot_path

    row = _row(hours_left_least=1.0, hours_left_most=2.0,
               curve=[{"epoch": 1, "train_loss": 26.0, "valid_ndcg10": None},
                      {"epoch": 2, "train_loss": 14.5, "valid_ndcg10": 0.0021}])
    snap = progress_json("full", [row], when="2026-12-06 17:00 UTC")
    assert set(snap["runs"][0]) >= {"curve", "hours_left_least", "epochs_done"} and "eval_s" not in snap["runs"][0]
    path = snapshot_path(tmp_path, "full")
    path.parent.mkdir()
    import json
    path.write_text(json.dumps(snap))
    assert read_snapshot(tmp_path, "full") == snap
    assert read_snapshot(tmp_path, "quick") is None  # none written: nothing shown
    path.write_text("{trunc")
    assert read_snapshot(tmp_path, "full") is None  # a damaged snapshot shows nothing rather than failing a report
