"""Faults and bad input (issue 28): each case is one line naming the file/key/option, and nothing
already written is lost.  Kills and full disks go through the write-point hook ``bench.faults``
(``$BENCH_FAULT``), never by patching internals."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from bench import cli, engine, faults, resume, runner, store, yamltypes
from bench.errors import ConfigError, DamagedFile, WriteError
from bench.profiles import Entry, load_profile
from conftest import needs_data

REPO = Path(__file__).resolve().parent.parent
TINY = {
    "description": "faults test", "protocol": "clean", "datasets": ["beauty"], "models": ["SASRec"],
    "seeds": [0], "max_users": 60, "max_train_prefixes": 3,
    "train": {"epochs": 3, "stopping_step": 10, "eval_step": 1, "train_batch_size": 64, "eval_batch_size": 128},
}


def profile_path(tmp_path, **changes) -> str:
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump({**TINY, **changes}))
    return str(path)


def run(profile, results, states, stop_after=None, notes=None):
    def hook(entry):
        if stop_after is not None and entry["epoch"] + 1 == stop_after:
            raise engine.Interrupted()

    return runner.run_entry(Entry("beauty", "SASRec", 0, "SASRec"), profile, results, progress=hook, device="cpu",
                            state_dir=states, save_every_s=0, notify=None if notes is None else notes.append)


def cli_run(tmp_path, results, states, env=None, **popen):
    """``bench run`` of the tiny profile in a subprocess (so that it can be SIGKILLed)."""
    argv = [sys.executable, "-m", "bench.cli", "run", "--model", "SASRec", "--dataset", "beauty", "--profile",
            profile_path(tmp_path), "--results-dir", str(results), "--state-dir", str(states), "--save-every", "0",
            "--device", "cpu"]
    full_env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", **(env or {})}
    return subprocess.run(argv, cwd=REPO, env=full_env, capture_output=True, text=True, timeout=300, **popen)


@pytest.fixture(autouse=True)
def no_fault(monkeypatch):
    monkeypatch.delenv("BENCH_FAULT", raising=False)
    faults.reset()


# ----------------------------------------------------------------------------- 1. state rotation
@needs_data
def test_a_damaged_state_is_never_rotated_over_the_good_previous_one(tmp_path, cache_dir, monkeypatch):
    profile = load_profile(profile_path(tmp_path))
    with pytest.raises(engine.Interrupted):
        run(profile, tmp_path / "r", tmp_path / "s", stop_after=2)
    (folder,) = (tmp_path / "s").iterdir()
    good_prev = (folder / "state.prev.pt").read_bytes()
    (folder / "state.pt").write_bytes(b"garbage")
    notes = []
    chash = resume._read(folder / "state.prev.pt")[0]["meta"]["config_hash"]
    state = resume.RunState(tmp_path / "s", chash, notify=notes.append)
    assert state.folder == folder
    assert state.load() is not None and state.resumed_path == folder / "state.prev.pt"
    # a save after the fallback keeps the good state.prev.pt (never the known-bad state.pt)
    state.maybe_save(lambda: {"progress": resume._read(folder / "state.prev.pt")[0]["progress"]}, force=True)
    assert (folder / "state.prev.pt").read_bytes() == good_prev
    assert resume._read(folder / "state.pt")[0] is not None
    # and the resume line names the file resumed from
    (folder / "state.pt").write_bytes(b"garbage")
    notes = []
    assert run(profile, tmp_path / "r", tmp_path / "s", notes=notes)[0] == "ok"
    assert any("state.prev.pt)" in n for n in notes if n.startswith("resumed")), notes


# ----------------------------------------------------------------------------- 2. grid names, missing data
def test_unknown_grid_names_are_one_line_with_the_valid_names(tmp_path, capsys):
    for argv, culprit in ((["--datasets", "foo"], "--datasets foo: not in profile 'smoke' (its datasets: beauty"),
                          (["--models", "Nope"], "--models Nope: not in profile 'smoke'"),
                          (["--seeds", "7"], "--seeds 7: not in profile 'smoke'")):
        for extra in ([], ["--list"]):
            code = cli.main(["grid", "--profile", "smoke", "--results-dir", str(tmp_path), *argv, *extra])
            err = capsys.readouterr().err
            assert code == 2 and culprit in err and len(err.strip().splitlines()) == 1, err
    assert not list(tmp_path.iterdir())


def test_a_missing_data_dir_is_skipped_for_real(tmp_path, capsys):
    code = cli.main(["grid", "--profile", "smoke", "--results-dir", str(tmp_path / "r"),
                     "--data-dir", str(tmp_path / "nodata"), "--datasets", "beauty"])
    out = capsys.readouterr()
    assert code == 0 and "skipping dataset beauty" in out.err + out.out and "0 runs" in out.out
    assert not (tmp_path / "r").exists()


# ----------------------------------------------------------------------------- 3. damaged store files
def test_damaged_record_and_ranks_name_their_file(tmp_path):
    folder = store.run_dir(tmp_path, "p", "beauty", "SASRec", 0)
    folder.mkdir(parents=True)
    (folder / "record.json").write_text('{"status": "ok", ')
    with pytest.raises(DamagedFile, match=r"seed-0/record.json: damaged record"):
        store.read_record(folder)
    problems = []
    assert list(store.iter_records(tmp_path, "p", problems)) == [] and "record.json" in problems[0]
    (folder / "ranks.npz").write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(DamagedFile, match=r"seed-0/ranks.npz: damaged ranks file"):
        store.read_ranks(folder)


@needs_data
def test_report_and_run_on_a_damaged_record(tmp_path, capsys):
    folder = store.run_dir(tmp_path, "tiny", "beauty", "SASRec", 0)
    folder.mkdir(parents=True)
    (folder / "record.json").write_text("{not json")
    other = store.run_dir(tmp_path, "tiny", "beauty", "GRU4Rec", 0)
    store.write_json(other / "record.json", {})
    code = cli.main(["report", "--profile", profile_path(tmp_path), "--results-dir", str(tmp_path),
                     "--reports-dir", str(tmp_path / "rep")])
    err = capsys.readouterr().err
    assert code == 0 and "SASRec/seed-0/record.json: damaged record" in err and "lacks status" in err
    code = cli.main(["run", "--model", "SASRec", "--dataset", "beauty", "--profile", profile_path(tmp_path),
                     "--results-dir", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "record.json: damaged record" in err
    assert (folder / "record.json").read_text() == "{not json"  # left as it was


# ----------------------------------------------------------------------------- 4. edited / missing ranks
@needs_data
def test_report_leaves_out_runs_whose_ranks_do_not_match(tmp_path, cache_dir, capsys):
    from bench.report import collect

    profile = load_profile(profile_path(tmp_path, seeds=[0], train={**TINY["train"], "epochs": 1}))
    assert run(profile, tmp_path, tmp_path / "s")[0] == "ok"
    folder = store.run_dir(tmp_path, "tiny", "beauty", "SASRec", 0)
    col = collect(tmp_path, "tiny")
    assert len(col.ok_records) == 1 and not col.left_out
    ranks = store.read_ranks(folder)
    ranks["test"] = np.zeros_like(ranks["test"])  # a valid file with better numbers
    np.savez_compressed(folder / "ranks.npz", **ranks)
    col = collect(tmp_path, "tiny")
    assert not col.ok_records and len(col.left_out) == 1 and col.values.empty
    assert any("ranks_sha256" in p for p in col.problems) and "ranks_sha256" in capsys.readouterr().err
    (folder / "ranks.npz").unlink()
    col = collect(tmp_path, "tiny")
    assert col.values.empty and any("missing" in p for p in col.problems)


# ----------------------------------------------------------------------------- 5. unwritable outputs
@needs_data
def test_unwritable_results_or_state_dir_is_found_before_training(tmp_path, cache_dir):
    profile = load_profile(profile_path(tmp_path))
    (tmp_path / "file").write_text("a file, not a folder")  # as root, chmod does not stop writes
    trained = []
    with pytest.raises(WriteError, match="results folder not writable: .*file/tiny"):
        runner.run_entry(Entry("beauty", "SASRec", 0, "SASRec"), profile, tmp_path / "file", device="cpu",
                         state_dir=tmp_path / "s", progress=trained.append)
    with pytest.raises(WriteError, match="state directory not writable: .*file/x"):
        runner.run_entry(Entry("beauty", "SASRec", 0, "SASRec"), profile, tmp_path / "r", device="cpu",
                         state_dir=tmp_path / "file" / "x", progress=trained.append)
    assert not trained and not list((tmp_path / "r").rglob("record.json"))


# ----------------------------------------------------------------------------- 6. typed config
@pytest.mark.parametrize("train, culprit", [
    ({"epochs": "eight"}, "train.epochs: expected int, got 'eight'"),
    ({"train_batch_size": 256.5}, "train.train_batch_size: expected int, got 256.5"),
])
def test_wrong_typed_profile_values_are_one_line(tmp_path, capsys, train, culprit):
    path = profile_path(tmp_path, train={**TINY["train"], **train})
    code = cli.main(["run", "--model", "SASRec", "--dataset", "beauty", "--profile", path,
                     "--results-dir", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert code == 2 and f"{path}: {culprit}" in err and err.count("\n") == 1
    assert not (tmp_path / "r").exists()


def test_float_written_as_1e_3_is_a_float_and_model_yaml_types_are_checked(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text("protocol: clean\ndatasets: [beauty]\nmodels: [SASRec]\nseeds: [0]\n"
                    "train: {learning_rate: 1e-3}\nmodel_overrides: {SASRec: {hidden_size: 64}}\n")
    assert load_profile(str(path))["train"]["learning_rate"] == 0.001
    path.write_text(path.read_text().replace("hidden_size: 64", "hidden_size: sixty-four"))
    with pytest.raises(ConfigError, match=r"model_overrides.SASRec.hidden_size: expected int"):
        load_profile(str(path))
    model_yaml = tmp_path / "gru4rec.yaml"
    model_yaml.write_text((REPO / "models" / "gru4rec.yaml").read_text().replace("hidden_size: 128", "hidden_size: 1.5"))
    with pytest.raises(ConfigError, match=r"gru4rec.yaml: hidden_size: expected int, got 1.5"):
        yamltypes.check_model_yaml(yaml.safe_load(model_yaml.read_text()), model_yaml)


@pytest.mark.parametrize("name, old, new, culprit", [
    ("diffurec", "    causal: false                # bool", "    causal: sometimes            # bool",
     r"diffurec.yaml: protocol_overrides.paper.causal: expected bool, got 'sometimes'"),
    ("diffurec", "    train_batch_size: 512        # int: their batch size", "    train_batch_size: 51.2",
     r"diffurec.yaml: protocol_overrides.paper.train_batch_size: expected int, got 51.2"),
    ("acvae", "  encoder_dropout: [0.2, 0.5]    # list[float]", "  encoder_dropout: [0.2, half]   # list[float]",
     r"acvae.yaml: tuning.encoder_dropout: expected list\[float\]"),
    ("acvae", "  encoder_dropout: [0.2, 0.5]    # list[float]", "  encoder_dropout: [0.2, half]",  # no comment: the parameter's type
     r"acvae.yaml: tuning.encoder_dropout\[1\]: expected float, got 'half'"),
    ("acvae", "  encoder_dropout: [0.2, 0.5]    # list[float]", "  encoder_dropout: 0.2",
     r"acvae.yaml: tuning: expected dict\[\.\.\., list\]"),
])
def test_nested_model_yaml_values_are_checked_naming_the_key(tmp_path, name, old, new, culprit):
    """protocol_overrides and tuning are checked at load like top-level keys: one line naming file and key."""
    text = (REPO / "models" / f"{name}.yaml").read_text()
    assert old in text
    path = tmp_path / f"{name}.yaml"
    path.write_text(text.replace(old, new))
    with pytest.raises(ConfigError, match=culprit):
        yamltypes.check_model_yaml(yaml.safe_load(path.read_text()), path)


def test_an_override_without_its_own_comment_gets_the_parameters_type(tmp_path):
    """A protocol override the YAML does not comment is checked against the parameter of that name."""
    path = tmp_path / "diffurec.yaml"
    path.write_text((REPO / "models" / "diffurec.yaml").read_text())
    data = yaml.safe_load(path.read_text())
    data["protocol_overrides"]["paper"]["hidden_size"] = "wide"
    with pytest.raises(ConfigError, match=r"protocol_overrides.paper.hidden_size: expected int, got 'wide'"):
        yamltypes.check_model_yaml(data, path)
    data["protocol_overrides"]["paper"]["hidden_size"] = 64
    assert yamltypes.check_model_yaml(data, path)["protocol_overrides"]["paper"]["hidden_size"] == 64


def test_every_shipped_yaml_passes_its_typed_comments_unchanged():
    for path in sorted((REPO / "models").glob("*.yaml")):
        data = yaml.safe_load(path.read_text())
        assert yamltypes.check_model_yaml(dict(data), path) == data, path
        assert yamltypes.declared(path), f"{path} declares no types"
    for name in ("smoke", "quick", "full", "paper"):
        raw = yaml.safe_load((REPO / "bench" / "profiles" / f"{name}.yaml").read_text())
        loaded = load_profile(name)
        assert {k: loaded[k] for k in raw} == raw, name


# ----------------------------------------------------------------------------- 7. data cache
@needs_data
def test_a_truncated_cache_is_rebuilt_and_a_bad_pickle_is_named(tmp_path, cache_dir):
    from datasets.prepare import DataError, load_sequences, read_diffurec_pickle

    first = load_sequences("beauty")
    (cache,) = cache_dir.rglob("sequences.npz")
    cache.write_bytes(cache.read_bytes()[:100])
    again = load_sequences("beauty")
    assert np.array_equal(first.items, again.items) and cache.stat().st_size > 100
    bad = tmp_path / "bad.pkl"
    bad.write_bytes(b"\x80\x04\x95garbage")
    with pytest.raises(DataError, match=r"bad.pkl: not a readable pickle"):
        read_diffurec_pickle(bad, "beauty", "x")


# ----------------------------------------------------------------------------- 8. disk full
@needs_data
def test_disk_full_during_a_save_names_the_file_and_keeps_the_state(tmp_path, cache_dir, monkeypatch):
    profile = load_profile(profile_path(tmp_path))
    monkeypatch.setenv("BENCH_FAULT", "fsync@.state.pt.new:2:enospc")
    with pytest.raises(WriteError, match=r"cannot write .*\.state\.pt\.new: No space left on device"):
        run(profile, tmp_path / "r", tmp_path / "s")
    (folder,) = (tmp_path / "s").iterdir()
    assert resume._read(folder / "state.pt")[0]["progress"].epoch == 1  # the first save, whole
    assert not list(folder.glob(".state.pt.new*"))
    monkeypatch.delenv("BENCH_FAULT")
    notes = []
    assert run(profile, tmp_path / "r", tmp_path / "s", notes=notes)[0] == "ok"
    assert any("from epoch 1" in n for n in notes)


# ----------------------------------------------------------------------------- 9. closed stdout
@needs_data
def test_a_closed_stdout_does_not_fail_the_run(tmp_path, cache_dir):
    argv = [sys.executable, "-m", "bench.cli", "run", "--model", "SASRec", "--dataset", "beauty", "--profile",
            profile_path(tmp_path), "--results-dir", str(tmp_path / "r"), "--device", "cpu"]
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "BENCH_CACHE_DIR": str(cache_dir)}
    proc = subprocess.Popen(f"{' '.join(argv)} | head -c 1", shell=True, cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = proc.communicate(timeout=300)
    record = store.read_record(store.run_dir(tmp_path / "r", "tiny", "beauty", "SASRec", 0))
    assert record is not None and record["status"] == "ok", err.decode()[-2000:]


# ----------------------------------------------------------------------------- 10. kills: counters, temporaries
@needs_data
def test_kills_are_counted_and_their_temporaries_cleaned(tmp_path, cache_dir):
    env = {"BENCH_CACHE_DIR": str(cache_dir)}
    results, states = tmp_path / "r", tmp_path / "s"
    # killed before its first save, then after two saves, then while writing record.json
    assert cli_run(tmp_path, results, states, {**env, "BENCH_FAULT": "segment:1"}).returncode == -9
    assert cli_run(tmp_path, results, states, {**env, "BENCH_FAULT": "open@.state.pt.new:3"}).returncode == -9
    assert cli_run(tmp_path, results, states, {**env, "BENCH_FAULT": "rename@record.json:1"}).returncode == -9
    folder = store.run_dir(results, "tiny", "beauty", "SASRec", 0)
    assert list(folder.glob(".record.json.*")) and store.read_record(folder) is None
    done = cli_run(tmp_path, results, states, env)
    assert done.returncode == 0, done.stderr[-2000:]
    record = store.read_record(folder)
    assert [s["from_epoch"] for s in record["resume"]["segments"]] == [0, 0, 2, 3]
    assert record["resume"]["state_saves"] == 3  # every save of every process
    assert not list(folder.glob(".*.*")) and not (folder / ".lock").exists()


# ----------------------------------------------------------------------------- 11. the run's lock
@needs_data
def test_the_lock_belongs_to_the_record_not_the_state_dir(tmp_path, cache_dir):
    profile = load_profile(profile_path(tmp_path))
    folder = store.run_dir(tmp_path / "r", "tiny", "beauty", "SASRec", 0)
    holder = store.RunLock(folder)
    holder.acquire()
    try:
        assert run(profile, tmp_path / "r", tmp_path / "other-states")[0] == "busy"
    finally:
        holder.release()
    assert run(profile, tmp_path / "r", tmp_path / "other-states")[0] == "ok"
