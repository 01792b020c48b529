"""The Ray executor: a local Ray instance on loopback (one CPU) runs a tiny grid into the
shared store exactly as the local executor would, reports failures, and resumes."""
import subprocess
import sys

import numpy as np
import pytest
import yaml

from bench import cli, store
from bench.profiles import load_profile
from conftest import needs_data

ray = pytest.importorskip("ray")

TINY = {
    "description": "ray test", "protocol": "clean", "datasets": ["beauty"], "models": ["GRU4Rec"],
    "seeds": [0, 1], "max_users": 50, "max_train_prefixes": 3,
    "train": {"epochs": 1, "stopping_step": 1, "eval_step": 1, "train_batch_size": 128, "eval_batch_size": 256},
    # a run that fails inside its task (negative embedding width), to see failures reported
    "variants": [{"name": "GRU4Rec-broken", "model": "GRU4Rec", "params": {"embedding_size": -4}, "seeds": [0]}],
}


@pytest.fixture(scope="module")
def local_ray():
    ray.init(address="local", num_cpus=1, include_dashboard=False, _node_ip_address="127.0.0.1",
             configure_logging=False, log_to_driver=False)
    yield
    ray.shutdown()


def test_local_executor_never_imports_ray():
    code = ("import sys, bench.cli, bench.grid, bench.ray_executor, bench.audit; "
            "assert 'ray' not in sys.modules, 'ray imported'")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True).returncode == 0


@needs_data
def test_grid_on_ray_matches_local_reports_failures_and_resumes(tmp_path, capsys, cache_dir, local_ray):
    prof = tmp_path / "tiny.yaml"
    prof.write_text(yaml.safe_dump(TINY))
    results = tmp_path / "results"
    argv = ["grid", "--profile", str(prof), "--results-dir", str(results), "--executor", "ray"]

    assert cli.main(argv) == 1  # the broken variant failed; the others are recorded
    out = capsys.readouterr().out
    assert "FAILED beauty/GRU4Rec-broken/seed-0" in out and "3 runs, 1 failed" in out
    records = {(r["model"], r["seed"]): r for r in store.load_records(results, "tiny", status=None)}
    assert {k: r["status"] for k, r in records.items()} == {
        ("GRU4Rec", 0): "ok", ("GRU4Rec", 1): "ok", ("GRU4Rec-broken", 0): "failed"}

    # a Ray task writes what the local executor writes
    from bench.runner import run_entry
    from bench.profiles import grid

    profile = load_profile(str(prof))
    entry = next(e for e in grid(profile) if e.model == "GRU4Rec" and e.seed == 1)
    status, local = run_entry(entry, profile, tmp_path / "local")
    assert status == "ok" and local["config_hash"] == records[("GRU4Rec", 1)]["config_hash"]
    ray_ranks = store.read_ranks(store.run_dir(results, "tiny", "beauty", "GRU4Rec", 1))
    local_ranks = store.read_ranks(store.run_dir(tmp_path / "local", "tiny", "beauty", "GRU4Rec", 1))
    assert ray_ranks.keys() == local_ranks.keys()
    assert all(np.array_equal(ray_ranks[k], local_ranks[k]) for k in ray_ranks)

    # resume: finished runs are skipped (records untouched), only the failed one is retried
    before = (store.run_dir(results, "tiny", "beauty", "GRU4Rec", 0) / "record.json").read_text()
    assert cli.main(argv) == 1
    out = capsys.readouterr().out
    assert "ok     beauty/GRU4Rec/" not in out and "FAILED beauty/GRU4Rec-broken/seed-0" in out
    assert (store.run_dir(results, "tiny", "beauty", "GRU4Rec", 0) / "record.json").read_text() == before
