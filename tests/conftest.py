"""Shared fixtures.  Tests run on 2 cores next to nothing else: one torch thread each."""
import os
import tempfile
from pathlib import Path

import pytest

os.environ.setdefault("OMP_NUM_THREADS", "1")
# Training states of test runs go to a private folder, never into the user's .cache/runs.
os.environ["BENCH_STATE_DIR"] = tempfile.mkdtemp(prefix="bench-test-states-")

import bench  # noqa: E402,F401  (RecBole compatibility before anything imports RecBole)
import torch  # noqa: E402

torch.set_num_threads(1)

from datasets.prepare import DEFAULT_DATA_DIR, load_card, resolve_data_dir  # noqa: E402


def data_available(name: str) -> bool:
    return (resolve_data_dir(None) / load_card(name)["file"]).exists()


AVAILABLE = [n for n in ("beauty", "toys", "ml-1m") if data_available(n)]
needs_data = pytest.mark.skipif(not AVAILABLE, reason=f"released splits not found in {DEFAULT_DATA_DIR}")


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    """A private prepared-data cache, so tests never touch the user's."""
    folder = tmp_path / "cache"
    monkeypatch.setenv("BENCH_CACHE_DIR", str(folder))
    return folder


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return Path(__file__).resolve().parent.parent
