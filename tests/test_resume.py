"""Resumable runs: a run interrupted after k epochs and resumed gives bit-identical ranks,
metrics and curve; damaged or foreign states are never loaded; two processes never train
one run; the device plumbing leaves CPU runs (and the committed quick records) unchanged."""
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from bench import engine, resume, runner, store
from bench.errors import BenchError
from bench.profiles import Entry, load_profile
from conftest import needs_data

TINY = {
    "description": "resume test", "protocol": "clean", "datasets": ["beauty"], "models": ["SASRec", "DiffuRec"],
    "seeds": [0], "max_users": 80, "max_train_prefixes": 3, "stop_users": 50,
    "train": {"epochs": 4, "stopping_step": 10, "eval_step": 1, "train_batch_size": 64, "eval_batch_size": 128},
    "model_overrides": {"DiffuRec": {"hidden_size": 32, "num_blocks": 1, "diffusion_steps": 4, "reverse_steps": 4}},
}


def tiny_profile(tmp_path, **changes) -> dict:
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump({**TINY, **changes}))
    return load_profile(str(path))


def run(profile, model, results, states, stop_after=None, notes=None):
    """run_entry; with ``stop_after=k`` the progress hook interrupts it after epoch k-1."""
    def hook(entry):
        if stop_after is not None and entry["epoch"] + 1 == stop_after:
            raise engine.Interrupted()

    return runner.run_entry(Entry("beauty", model, 0, model), profile, results, progress=hook, device="cpu",
                            state_dir=states, save_every_s=0, notify=None if notes is None else notes.append)


def outputs(results, model):
    folder = store.run_dir(results, "tiny", "beauty", model, 0)
    record = store.read_record(folder)
    return record, store.read_ranks(folder)


@needs_data
@pytest.mark.parametrize("model", ["SASRec", "DiffuRec"])
def test_interrupted_run_resumes_bit_identical(tmp_path, cache_dir, model):
    profile = tiny_profile(tmp_path)
    status, record = run(profile, model, tmp_path / "a", tmp_path / "sa")
    assert status == "ok", record.get("error")
    with pytest.raises(engine.Interrupted):
        run(profile, model, tmp_path / "b", tmp_path / "sb", stop_after=2)
    assert store.read_record(store.run_dir(tmp_path / "b", "tiny", "beauty", model, 0)) is None
    assert list((tmp_path / "sb").glob("*/state.pt")), "the interrupted run left its state"
    notes = []
    status, _ = run(profile, model, tmp_path / "b", tmp_path / "sb", notes=notes)
    assert status == "ok" and any("from epoch 2" in n for n in notes), notes
    (ra, ka), (rb, kb) = outputs(tmp_path / "a", model), outputs(tmp_path / "b", model)
    assert set(ka) == set(kb) and all(np.array_equal(ka[k], kb[k]) for k in ka)
    assert ra["metrics"] == rb["metrics"] and ra["ranks_sha256"] == rb["ranks_sha256"]
    assert [e["train_loss"] for e in ra["curve"]] == [e["train_loss"] for e in rb["curve"]]
    assert [e["valid"] for e in ra["curve"]] == [e["valid"] for e in rb["curve"]]
    assert [s["from_epoch"] for s in rb["resume"]["segments"]] == [0, 2]
    assert rb["checkpoint"]["stopping_users"] == 50 and rb["checkpoint"]["stopped_by"] == "epoch_cap"
    assert not list((tmp_path / "sb").glob("*/state.pt")), "the state is deleted once the record is written"


def complete_and_interrupted(tmp_path):
    """A 3-epoch SASRec run finished into a/ and the same run interrupted after 2 epochs into b/.

    Returns (profile, the interrupted run's state folder)."""
    profile = tiny_profile(tmp_path, train={**TINY["train"], "epochs": 3})
    run(profile, "SASRec", tmp_path / "a", tmp_path / "sa")
    with pytest.raises(engine.Interrupted):
        run(profile, "SASRec", tmp_path / "b", tmp_path / "sb", stop_after=2)
    (folder,) = (tmp_path / "sb").iterdir()
    return profile, folder


@needs_data
def test_damaged_or_foreign_state_is_never_loaded(tmp_path, cache_dir):
    profile, folder = complete_and_interrupted(tmp_path)
    for path in folder.glob("state*.pt"):  # killed mid-write / disk full: both copies truncated
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    notes = []
    status, _ = run(profile, "SASRec", tmp_path / "b", tmp_path / "sb", notes=notes)
    assert status == "ok"
    assert any("state.pt not used: damaged" in n for n in notes) and not any("resumed" in n for n in notes)
    assert outputs(tmp_path / "a", "SASRec")[0]["metrics"] == outputs(tmp_path / "b", "SASRec")[0]["metrics"]
    # a state saved under one config hash is refused by another
    with pytest.raises(engine.Interrupted):
        run(profile, "SASRec", tmp_path / "c", tmp_path / "sc", stop_after=1)
    (src,) = (tmp_path / "sc").iterdir()
    other = resume.RunState(tmp_path / "sc", "f" * 64, notify=notes.append)
    other.folder.mkdir()
    (other.folder / "state.pt").write_bytes((src / "state.pt").read_bytes())
    assert other.load() is None and "another config" in notes[-1]


@needs_data
def test_damaged_latest_state_falls_back_to_previous(tmp_path, cache_dir):
    profile, folder = complete_and_interrupted(tmp_path)
    raw = bytearray((folder / "state.pt").read_bytes())
    raw[-100] ^= 0xFF  # one flipped bit in the tensors: the digest catches it
    (folder / "state.pt").write_bytes(bytes(raw))
    notes = []
    assert run(profile, "SASRec", tmp_path / "b", tmp_path / "sb", notes=notes)[0] == "ok"
    assert any("damaged" in n for n in notes) and any("from epoch 1" in n for n in notes)
    assert outputs(tmp_path / "a", "SASRec")[1]["test"].tolist() == outputs(tmp_path / "b", "SASRec")[1]["test"].tolist()


@needs_data
def test_a_run_held_by_another_process_is_busy(tmp_path, cache_dir):
    profile = tiny_profile(tmp_path)
    entry = Entry("beauty", "SASRec", 0, "SASRec")
    full = runner.load_sequences("beauty")
    chash = store.config_hash(runner.config_key(entry, profile, full.sha256, full.n_users))
    holder = resume.RunState(tmp_path / "s", chash)
    holder.acquire()
    try:
        assert run(profile, "SASRec", tmp_path / "r", tmp_path / "s")[0] == "busy"
    finally:
        holder.release()


def test_cuda_without_cuda_is_one_clear_error():
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(BenchError, match="--device cuda: .*no CUDA"):
        runner.resolve_device("cuda")
    assert runner.resolve_device("auto").type == "cpu"
    with pytest.raises(BenchError, match="--device gpu"):
        runner.resolve_device("gpu")


def test_cuda_switches_to_deterministic_kernels_and_the_cpu_does_not(monkeypatch):
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    before = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled(),
              torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark)
    try:
        runner.resolve_device("cpu")
        assert not torch.are_deterministic_algorithms_enabled() and "CUBLAS_WORKSPACE_CONFIG" not in os.environ
        monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
        assert runner.resolve_device("cuda:0").type == "cuda"
        assert torch.are_deterministic_algorithms_enabled() and torch.backends.cudnn.deterministic
        assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"
    finally:
        torch.use_deterministic_algorithms(before[0], warn_only=before[1])
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = before[2], before[3]


@needs_data
def test_committed_quick_records_stay_current(repo_root):
    """The device plumbing and the optional budget keys leave every quick config hash as it was."""
    profile = load_profile("quick")
    full = runner.load_sequences("beauty")
    for model in ("SASRec", "DiffuRec", "ACVAE", "TiMiRec"):
        record = store.read_record(repo_root / "results" / "quick" / "beauty" / model / "seed-0")
        key = runner.config_key(Entry("beauty", model, 0, model), profile, full.sha256, full.n_users)
        if model in ("SASRec", "DiffuRec", "ACVAE"):  # TiMiRec's YAML may change under the baseline-fidelity work
            assert store.config_hash(key) == record["config_hash"], model


def test_stopping_users_are_fixed_and_seed_free():
    a, b = runner.stopping_users(1000, 100), runner.stopping_users(1000, 100)
    assert np.array_equal(a, b) and len(a) == 100 and np.all(np.diff(a) > 0)
    assert runner.stopping_users(1000, None) is None and runner.stopping_users(50, 100) is None


def test_code_diff_rebuilds_tracked_and_untracked_changes(tmp_path, monkeypatch):
    """The diff a dirty run stores, applied to its revision, gives back the code that ran."""
    import subprocess

    def git(*args, cwd=tmp_path / "repo"):
        return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout

    repo = tmp_path / "repo"
    repo.mkdir()
    git("init", "-q")
    (repo / "a.py").write_text("x = 1\n")
    git("add", "a.py")
    git("-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "a")
    (repo / "a.py").write_text("x = 2\n")
    (repo / "new.py").write_text("y = 3\n")
    monkeypatch.setattr(runner, "REPO_ROOT", repo)
    diff = runner.code_diff()
    assert "x = 2" in diff and "y = 3" in diff
    git("clone", "-q", str(repo), str(tmp_path / "clean"), cwd=tmp_path)
    (tmp_path / "d.patch").write_text(diff)
    git("apply", str(tmp_path / "d.patch"), cwd=tmp_path / "clean")
    assert (tmp_path / "clean" / "a.py").read_text() == "x = 2\n"
    assert (tmp_path / "clean" / "new.py").read_text() == "y = 3\n"
