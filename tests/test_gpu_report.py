"""The GPU check's report compares two stores run by run."""
import numpy as np

from bench import gpu_report, store


def write(root, run, test_ranks, device="cpu"):
    ranks = {"users": np.arange(len(test_ranks)), "test": np.asarray(test_ranks, np.int32),
             "valid": np.asarray(test_ranks, np.int32)}
    record = {"status": "ok", "metrics": {"test": store.metrics_from_ranks(ranks["test"])},
              "env": {"device": device, "torch": "x", "precision": {}, "git_revision": "abc"}}
    store.write_run(root / run, record, ranks)


def test_stores_compare_run_by_run(tmp_path):
    write(tmp_path / "cpu", "beauty/SASRec/seed-0", [0, 3, 50, 7])
    write(tmp_path / "dev", "beauty/SASRec/seed-0", [0, 3, 51, 12], device="NVIDIA H100 80GB HBM3")
    write(tmp_path / "dev", "beauty/GRU4Rec/seed-0", [1, 2], device="NVIDIA H100 80GB HBM3")  # no CPU twin
    rows = gpu_report.compare_stores(tmp_path / "cpu", tmp_path / "dev")
    sas = next(r for r in rows if r["run"] == "beauty/SASRec/seed-0")
    assert sas["users_changed"] == 2 and sas["cpu HR@10"] == 0.75 and sas["device HR@10"] == 0.5
    assert next(r for r in rows if "GRU4Rec" in r["run"])["status"].startswith("cpu None")
    assert gpu_report.main(["--cpu", str(tmp_path / "cpu"), "--device-store", str(tmp_path / "dev"),
                            "--out", str(tmp_path / "out")]) == 0
    md = (tmp_path / "out" / "gpu-nvidia-h100-80gb-hbm3.md").read_text()
    assert "1 runs compared; 0 with every test rank equal" in md
