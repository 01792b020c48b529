"""Command line: bad input ends in one clear line; the grid records failures, resumes,
and never loses a finished result."""
import json
import re
import shutil

import numpy as np
import pytest
import yaml

from bench import cli, store
from bench.errors import BenchError
from conftest import needs_data

TINY = {
    "description": "test", "protocol": "clean", "datasets": ["beauty"], "models": ["GRU4Rec", "SASRec"],
    "seeds": [0, 1], "max_users": 60, "max_train_prefixes": 3,
    "train": {"epochs": 1, "stopping_step": 1, "eval_step": 1, "train_batch_size": 128, "eval_batch_size": 256},
}


def profile_file(tmp_path, **changes):
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump({**TINY, **changes}))
    return str(path)


def run_cli(argv, capsys):
    code = cli.main(argv)
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.mark.parametrize("argv, culprit", [
    (["run", "--model", "SASRex", "--dataset", "beauty", "--profile", "smoke"], "unknown model 'SASRex'"),
    (["run", "--model", "SASRec", "--dataset", "beuty", "--profile", "smoke"], "beuty"),
    (["run", "--model", "SASRec", "--dataset", "beauty", "--profile", "smok"], "unknown profile 'smok'"),
    (["grid", "--profile", "nope"], "unknown profile 'nope'"),
])
def test_bad_names_end_in_one_line(argv, culprit, capsys, tmp_path):
    code, out, err = run_cli(argv + ["--results-dir", str(tmp_path)], capsys)
    assert code == 2 and culprit in err and len(err.strip().splitlines()) == 1


def test_malformed_profile_yaml_names_file(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("protocol: clean\ndatasets: [beauty\n")
    code, _, err = run_cli(["grid", "--profile", str(bad), "--results-dir", str(tmp_path)], capsys)
    assert code == 2 and "malformed YAML" in err and str(bad) in err and len(err.strip().splitlines()) == 1


def test_unknown_profile_key_is_named(tmp_path, capsys):
    code, _, err = run_cli(["grid", "--profile", profile_file(tmp_path, epochz=3), "--results-dir", str(tmp_path)], capsys)
    assert code == 2 and "epochz" in err


def test_missing_data_names_path(tmp_path, capsys):
    code, _, err = run_cli(["run", "--model", "SASRec", "--dataset", "beauty", "--profile", profile_file(tmp_path),
                            "--data-dir", str(tmp_path / "nowhere"), "--results-dir", str(tmp_path)], capsys)
    assert code == 2 and str(tmp_path / "nowhere" / "amazon_beauty.pkl") in err and "1d5ba224" in err


def test_wrong_checksum_is_an_error(tmp_path, capsys, cache_dir):
    data = tmp_path / "data"
    data.mkdir()
    (data / "amazon_beauty.pkl").write_bytes(b"not the released file")
    code, _, err = run_cli(["run", "--model", "SASRec", "--dataset", "beauty", "--profile", profile_file(tmp_path),
                            "--data-dir", str(data), "--results-dir", str(tmp_path)], capsys)
    assert code == 2 and "checksum mismatch" in err and len(err.strip().splitlines()) == 1


@needs_data
def test_grid_records_failure_resumes_and_keeps_results(tmp_path, capsys, monkeypatch):
    results = tmp_path / "results"
    prof = profile_file(tmp_path)
    assert run_cli(["grid", "--profile", prof, "--results-dir", str(results)], capsys)[0] == 0
    records = store.load_records(results, "tiny")
    assert len(records) == 4 and all(r["status"] == "ok" for r in records)
    ok_dir = store.run_dir(results, "tiny", "beauty", "SASRec", 0)
    before = (ok_dir / "record.json").read_text()

    # a rerun skips everything: same config hash
    code, out, _ = run_cli(["grid", "--profile", prof, "--results-dir", str(results)], capsys)
    assert code == 0 and "ok     " not in out

    # a changed config that fails (NaN loss) is recorded but never replaces the good record
    broken = profile_file(tmp_path, model_overrides={"SASRec": {"layer_norm_eps": -10.0}})
    code, out, err = run_cli(["grid", "--profile", broken, "--results-dir", str(results)], capsys)
    assert code == 1 and "FAILED beauty/SASRec/seed-0" in out
    assert (ok_dir / "record.json").read_text() == before
    failure = json.loads((ok_dir / "failed.json").read_text())
    assert failure["status"] == "failed" and "Traceback" in failure["error"]["traceback"]
    assert "loss is nan" in failure["error"]["message"]
    # GRU4Rec was unaffected by the change: still skipped
    assert "FAILED beauty/GRU4Rec" not in out


@needs_data
def test_interrupted_grid_resumes_where_it_stopped(tmp_path, capsys, monkeypatch):
    from bench import runner

    results = tmp_path / "results"
    prof = profile_file(tmp_path)
    real, calls = runner.run_entry, []

    def interrupt_on_third(entry, *args, **kwargs):
        calls.append(entry)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(entry, *args, **kwargs)

    monkeypatch.setattr(runner, "run_entry", interrupt_on_third)
    code, _, err = run_cli(["grid", "--profile", prof, "--results-dir", str(results)], capsys)
    assert code == 130 and "resume" in err
    assert len(store.load_records(results, "tiny")) == 2
    monkeypatch.setattr(runner, "run_entry", real)
    statuses = []

    def recording(*args, **kwargs):
        result = real(*args, **kwargs)
        statuses.append(result[0])
        return result

    monkeypatch.setattr(runner, "run_entry", recording)
    code, _, _ = run_cli(["grid", "--profile", prof, "--results-dir", str(results)], capsys)
    assert code == 0 and statuses == ["skipped", "skipped", "ok", "ok"]


@needs_data
def test_record_contents_and_ranks_recompute_metrics(tmp_path, capsys):
    results = tmp_path / "results"
    code, out, _ = run_cli(["run", "--model", "GRU4Rec", "--dataset", "beauty", "--seed", "1",
                            "--profile", profile_file(tmp_path), "--results-dir", str(results)], capsys)
    assert code == 0 and "HR@10" in out
    folder = store.run_dir(results, "tiny", "beauty", "GRU4Rec", 1)
    record = store.read_record(folder)
    for key in ("params", "seed", "env", "config_hash", "data", "curve", "timing", "metrics"):
        assert key in record
    assert record["data"]["sha256"].startswith("1d5ba224") and record["env"]["torch"].startswith("2.13")
    assert record["env"]["git_revision"] and record["timing"]["epochs_run"] == 1
    ranks = store.read_ranks(folder)
    assert len(ranks["test"]) == 60 == len(ranks["users"]) == len(ranks["hist_len"])
    assert store.metrics_from_ranks(ranks["test"]) == record["metrics"]["test"]
    assert store.metrics_from_ranks(ranks["valid"]) == record["metrics"]["valid"]


@needs_data
def test_grid_list_prints_the_runs_without_an_ok_record(tmp_path, capsys):
    argv = ["grid", "--profile", "smoke", "--list", "--datasets", "beauty", "--seeds", "0",
            "--models", "SASRec", "DiffuRec", "--results-dir", str(tmp_path)]
    assert cli.main(argv) == 0
    assert capsys.readouterr().out.splitlines() == ["DiffuRec beauty 0", "SASRec beauty 0"]
    store.write_run(store.run_dir(tmp_path, "smoke", "beauty", "SASRec", 0), {"status": "ok"},
                    {"users": np.arange(2), "test": np.zeros(2, np.int32), "valid": np.zeros(2, np.int32)})
    assert cli.main(argv) == 0
    assert capsys.readouterr().out.splitlines() == ["DiffuRec beauty 0"]  # nothing was trained
    assert not (tmp_path / "smoke" / "beauty" / "DiffuRec").exists()


def _order(profile_path, **kw):
    from bench.profiles import grid, load_profile, prioritised
    profile = load_profile(profile_path)
    return [(e.model, e.dataset, e.seed) for e in prioritised(profile, grid(profile, **kw))]


def test_priority_rules_reorder_the_grid_and_keep_grid_order_within_a_rule(tmp_path):
    variants = [{"name": "SASRec-wide", "model": "SASRec", "params": {"hidden_size": 128}}]
    path = profile_file(tmp_path, variants=variants,
                        priority=[{"models": ["SASRec*"], "seeds": [1]}, {"models": "base", "seeds": [0]}])
    assert _order(path) == [("SASRec", "beauty", 1), ("SASRec-wide", "beauty", 1),  # rule 0, grid order
                            ("GRU4Rec", "beauty", 0), ("SASRec", "beauty", 0),          # rule 1: no variant
                            ("SASRec-wide", "beauty", 0), ("GRU4Rec", "beauty", 1)]     # the rest, grid order
    assert _order(profile_file(tmp_path, variants=variants)) == [  # no rules: grid order
        ("GRU4Rec", "beauty", 0), ("SASRec", "beauty", 0), ("SASRec-wide", "beauty", 0),
        ("GRU4Rec", "beauty", 1), ("SASRec", "beauty", 1), ("SASRec-wide", "beauty", 1)]


@pytest.mark.parametrize("rule, culprit", [
    ({"model": ["SASRec"]}, "priority[0]: unknown key(s) model"),
    ({"models": ["SASRex"]}, "priority[0]: models pattern 'SASRex' matches no model"),
    ({"datasets": "beauty"}, "priority[0].datasets: expected a list, got 'beauty'"),
])
def test_a_bad_priority_rule_is_named(tmp_path, rule, culprit):
    with pytest.raises(BenchError, match=re.escape(culprit)):
        _order(profile_file(tmp_path, priority=[rule]))


@pytest.fixture
def throwaway_model(tmp_path, monkeypatch, repo_root):
    """The skeleton of models/CONTRACT.md, added as documented (two files, nothing else) in a
    folder of ``$BENCH_MODELS_PATH``; the zoo and the ``models`` package forget it afterwards."""
    import sys

    import models

    text = (repo_root / "models" / "CONTRACT.md").read_text().split("## Skeleton", 1)[1]
    code = re.search(r"```python\n(.*?)```", text, re.S).group(1)
    params = re.search(r"```yaml\n(.*?)```", text, re.S).group(1)
    folder = tmp_path / "more_models"
    folder.mkdir()
    (folder / "lastitem.py").write_text(code)
    (folder / "lastitem.yaml").write_text(params)
    monkeypatch.setenv("BENCH_MODELS_PATH", str(folder))
    monkeypatch.setattr(models, "__path__", list(models.__path__))  # restored: the folder leaves the package
    yield "LastItem"
    sys.modules.pop("models.lastitem", None)
    if hasattr(models, "lastitem"):
        delattr(models, "lastitem")


@pytest.mark.parametrize("with_throwaway", [False, True], ids=["shipped models", "plus a throwaway model"])
def test_paper_profile_puts_the_headline_and_the_controls_first(with_throwaway, request):
    """What a lent GPU session runs first (bench/gpu_session.sh takes `grid --list`'s order), for any number
    of models: the headline pair, then every other base model, then the controls, then Toys."""
    from bench.zoo import discover

    if with_throwaway:
        request.getfixturevalue("throwaway_model")
    others = sorted(s.name for s in discover().values() if s.name not in ("DiffuRec", "SASRec"))
    assert ("LastItem" in others) == with_throwaway
    order = _order("paper", datasets=["beauty", "toys"])
    head = order[:10]
    assert {m for m, d, s in head} == {"DiffuRec", "SASRec"} and {d for m, d, s in head} == {"beauty"}
    assert {s for m, d, s in head} == {0, 1, 2, 3, 4}
    after = order[10:10 + len(others)]  # every other base model, Beauty seed 0
    assert all(d == "beauty" and s == 0 for m, d, s in after) and sorted(m for m, d, s in after) == others
    start = 10 + len(others)
    controls = order[start:start + 11]  # seeds 0-2 of the two controls, seed 0 of the five tuning settings
    assert {m for m, d, s in controls} == {"DiffuRec-nodiff", "SASRec-matched", "SASRec-tune-h64.b2.d0.2",
                                           "SASRec-tune-h128.b2.d0.5", "SASRec-tune-h128.b2.d0.2",
                                           "SASRec-tune-h128.b4.d0.5", "SASRec-tune-h128.b4.d0.2"}
    toys = order[start + 11:start + 11 + len(others) + 2]
    assert all(d == "toys" and s == 0 for m, d, s in toys) and len({m for m, d, s in toys}) == len(others) + 2


def test_a_throwaway_model_joins_every_grid_and_its_tuning(throwaway_model):
    from bench.profiles import grid, load_profile, profile_names

    for name in profile_names():
        profile = load_profile(name)
        entries = grid(profile)
        base = [e for e in entries if e.model == throwaway_model]
        assert len(base) == len(profile["datasets"]) * len(profile["seeds"]), name
        tuned = sorted({e.model for e in entries if e.base_model == throwaway_model and e.variant})
        want = ["LastItem-tune-dropout_prob=0.1", "LastItem-tune-dropout_prob=0.5"] if profile.get("tuning") else []
        assert tuned == want, name


@needs_data
def test_a_throwaway_model_is_listed_by_grid_list(throwaway_model, tmp_path, capsys):
    argv = ["grid", "--profile", "smoke", "--list", "--datasets", "beauty", "--seeds", "0",
            "--models", "SASRec", throwaway_model, "--results-dir", str(tmp_path)]
    assert cli.main(argv) == 0
    assert capsys.readouterr().out.splitlines() == ["SASRec beauty 0", "LastItem beauty 0"]


def test_table2_note_and_index_agree_on_a_throwaway_models_missing_runs(throwaway_model, tmp_path):
    """A model with no record yet: the Table 2 partial-grid note and index.md name it with the same counts."""
    from test_report import write_fake_run

    from bench.profiles import grid, load_profile
    from bench.report import render

    path = tmp_path / "mini.yaml"
    path.write_text(yaml.safe_dump({**TINY, "models": "all", "datasets": ["beauty", "toys"], "seeds": [0, 1]}))
    profile = load_profile(str(path))
    expected = [(e.dataset, e.model, e.seed) for e in grid(profile)]
    assert ("beauty", throwaway_model, 1) in expected
    results = tmp_path / "results"
    for model, counts in (("SASRec", (30, 20, 20)), ("DiffuRec", (60, 30, 30)), ("GRU4Rec", (10, 10, 10))):
        for seed in (0, 1):
            write_fake_run(results, "beauty", model, seed, counts, profile="mini")
    write_fake_run(results, "toys", "SASRec", 0, (30, 20, 20), profile="mini")
    render(results, tmp_path / "reports", "mini", expected=expected)
    table2 = (tmp_path / "reports" / "mini" / "table2.md").read_text()
    index = (tmp_path / "reports" / "mini" / "index.md").read_text()
    note = table2.split("**Partial grid.**", 1)[1]
    for dataset, title in (("beauty", "Beauty"), ("toys", "Toys")):
        line = next(ln for ln in note.splitlines() if ln.startswith(f"- {title}:"))
        in_note = dict(re.findall(r"(\w+) (\d+)/\d+", line))
        missing = {m for d, m, s in expected if d == dataset and "-" not in m}
        missing -= {"SASRec", "DiffuRec", "GRU4Rec"} if dataset == "beauty" else {"SASRec"}
        assert throwaway_model in in_note and set(in_note) >= missing, (dataset, line)
        header = next(ln for ln in index.splitlines() if ln.startswith("| Model |")).split(" | ")
        column = [c.strip(" |") for c in header].index(title)
        for model, present in in_note.items():  # index.md: that model's missing runs on the dataset
            row = next(ln for ln in index.splitlines() if ln.startswith(f"| {model} |"))
            assert int(row.split(" | ")[column].strip(" |")) == 2 - int(present), (title, model, row)
