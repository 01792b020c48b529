"""The README's main command on the smoke profile: every model, two seeds, then every table
and figure — the whole pipeline, end to end.  Beauty and ML-1M only: Toys goes through Beauty's
loader and card code line for line, and leaving it out keeps the suite inside CI's ten minutes."""
import subprocess
import sys
import time

import pytest

from bench import store
from bench.profiles import grid, load_profile
from conftest import AVAILABLE, needs_data

DATASETS = [d for d in ("beauty", "ml-1m") if d in AVAILABLE] or AVAILABLE  # Toys alone: run it


@needs_data
def test_smoke_grid_and_report(tmp_path, repo_root):
    results, reports = tmp_path / "results", tmp_path / "reports"
    t0 = time.perf_counter()
    run = subprocess.run(
        [sys.executable, "-m", "bench.cli", "grid", "--profile", "smoke", "--datasets", *DATASETS,
         "--results-dir", str(results)],
        capture_output=True, text=True, cwd=repo_root, timeout=900)
    grid_s = time.perf_counter() - t0
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    profile = load_profile("smoke")
    expected = [e for e in grid(profile) if e.dataset in DATASETS]
    records = store.load_records(results, "smoke")
    assert len(records) == len(expected)
    assert {r["base_model"] for r in records} == {e.base_model for e in expected}
    t0 = time.perf_counter()
    rep = subprocess.run(
        [sys.executable, "-m", "bench.cli", "report", "--profile", "smoke", "--results-dir", str(results),
         "--reports-dir", str(reports)], capture_output=True, text=True, cwd=repo_root, timeout=300)
    assert rep.returncode == 0, rep.stdout[-3000:] + rep.stderr[-3000:]
    table2 = (reports / "smoke" / "table2.md").read_text()
    for model in ("GRU4Rec", "Caser", "SASRec", "BERT4Rec", "DiffuRec"):
        assert model in table2
    assert (reports / "smoke" / "index.md").exists()
    print(f"smoke grid {grid_s:.0f} s for {len(records)} runs, report {time.perf_counter() - t0:.0f} s")
