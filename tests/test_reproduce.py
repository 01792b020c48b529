"""bench reproduce: the three verdicts on constructed records, the environment side by side, the exit codes,
the stored code diff (integrity, worktree), ``--all`` resuming; one tiny real rerun per path."""
import copy
import difflib
import gzip
import importlib
import json
import shutil
import subprocess

import numpy as np
import pytest
import yaml

from bench import cli, store
from bench.audit import reproduce_all as RA
from bench.audit import verdict as V
from bench.audit.integrity import check_code_diff
from bench.audit.recorded_code import REPO_ROOT, diff_sha256, recorded_code, recorded_code_tree
from bench.errors import BenchError
from bench.profiles import Entry
from conftest import needs_data

R = importlib.import_module("bench.audit.reproduce")  # the module; bench.audit.reproduce is also its function

N = 2000
N_ITEMS = 12101
EPYC = {"python": "3.11.7", "torch": "2.13.0+cpu", "recbole": "1.2.1", "numpy": "2.4.6", "platform": "Linux",
        "cpu": "AMD EPYC", "cpu_flags": "avx avx2 avx512f fma", "cpu_capability": "AVX512",
        "blas_torch": "mkl 2024.2", "blas_numpy": "scipy-openblas 0.3.31", "threads": 2, "device": "cpu",
        "precision": {"float32_matmul_precision": "highest", "deterministic_algorithms": False},
        "git_revision": "a" * 40, "git_dirty": False}
XEON = {**EPYC, "cpu": "Intel Xeon", "cpu_flags": "avx avx2 fma"}


def ranks_of(seed=0, extra=()):
    """A ranks.npz of N users: ranks spread like a weak recommender's (about 1 % in the top 10)."""
    rng = np.random.default_rng(seed)

    def ranking():
        return np.minimum(rng.exponential(1500, N), N_ITEMS - 1).astype(np.int32)

    out = {"users": np.arange(N), "test": ranking(), "valid": ranking(),
           "hist_len": rng.integers(2, 50, N).astype(np.int32),
           "test_item": rng.integers(1, N_ITEMS, N).astype(np.int32),
           "test_is_head": rng.random(N) < 0.3}
    out.update({f"test@{name}": ranking() for name in extra})
    return out


def nudge(ranks, key, n_users, step=2, deep=500, seed=1):
    """``ranks`` with ``n_users`` users of ``key`` (ranks ≥ ``deep``) moved by ±``step``, half up, half down."""
    out = copy.deepcopy(ranks)
    users = np.random.default_rng(seed).permutation(np.flatnonzero(out[key] >= deep))[:n_users]
    out[key][users] += np.where(np.arange(n_users) % 2 == 0, step, -step).astype(out[key].dtype)
    return out


def checks(cmp):
    return {c["id"]: c["passed"] for c in cmp["checks"]}


# --------------------------------------------------------------------------- the three verdicts
def test_identical_rankings_are_identical_on_any_environment():
    r = ranks_of()
    for env in (EPYC, XEON):
        cmp = V.compare(r, copy.deepcopy(r), EPYC, env)
        assert cmp["verdict"] == "identical" and cmp["moved_any"] == 0
    assert V.EXIT_CODES["identical"] == 0


def test_the_measured_cross_cpu_changes_are_equivalent():
    """The issue's figures: SASRec 4 test + 5 valid of 2,000 users; DiffuRec 10 + 9, 80 in any stored ranking."""
    sas = ranks_of()
    moved = nudge(nudge(sas, "test", 4), "valid", 5, seed=2)
    cmp = V.compare(sas, moved, EPYC, XEON)
    assert cmp["verdict"] == "equivalent", cmp["checks"]
    assert cmp["float_order_differences"] == ["cpu", "cpu_flags"]
    assert (cmp["rankings"]["test"]["moved"], cmp["rankings"]["valid"]["moved"], cmp["moved_any"]) == (4, 5, 9)
    assert all(m["diff"] == 0 for rows in cmp["metrics"].values() for m in rows)  # moved far below the top 20

    steps = [f"reverse_steps={s}" for s in (1, 2, 4, 8, 16)]
    diffu = ranks_of(3, extra=steps)
    moved = nudge(nudge(diffu, "test", 10, step=1, deep=1), "valid", 9, step=1, deep=1, seed=2)
    touched = np.flatnonzero((moved["test"] != diffu["test"]) | (moved["valid"] != diffu["valid"]))
    assert len(touched) == 19
    for i, name in enumerate(steps):  # 61 more users, each in one extra ranking, half up, half down: 80 in any
        key = f"test@{name}"
        pool = np.setdiff1d(np.flatnonzero(diffu[key] >= 1), touched)[:13 if i < 4 else 9]
        moved[key][pool] += np.where(np.arange(len(pool)) % 2 == 0, 1, -1).astype(moved[key].dtype)
        touched = np.union1d(touched, pool)
    cmp = V.compare(diffu, moved, EPYC, XEON)
    assert cmp["moved_any"] == 80 and cmp["verdict"] == "equivalent", cmp["checks"]
    assert V.EXIT_CODES["equivalent"] == 3


def test_any_change_on_an_identical_environment_is_different():
    r = ranks_of()
    cmp = V.compare(r, nudge(r, "test", 4), EPYC, dict(EPYC))
    assert cmp["verdict"] == "different" and checks(cmp) == {"E1": False, "E2": True, "E3": True, "E4": True,
                                                             "E5": True}
    assert "floating-point order cannot explain the change" in cmp["checks"][0]["text"]
    # platform, Python, RecBole or the code cannot explain a float-order change either
    other = {**EPYC, "platform": "Linux-other", "recbole": "1.2.0", "git_revision": "b" * 40}
    assert V.compare(r, nudge(r, "test", 4), EPYC, other)["verdict"] == "different"
    assert V.EXIT_CODES["different"] == 1


def test_many_users_moving_is_different_even_across_cpus():
    r = ranks_of()
    cmp = V.compare(r, nudge(r, "test", int(0.15 * N), step=1, deep=0), EPYC, XEON)
    assert cmp["verdict"] == "different" and not checks(cmp)["E3"]


def test_a_directed_change_of_a_few_users_is_different():
    """Twelve users, all pulled into the top 5: few movers, but one direction and HR@5 up by 12/n."""
    r = ranks_of()
    moved = copy.deepcopy(r)
    users = np.flatnonzero(r["test"] > 40)[:12]
    moved["test"][users] = 0
    cmp = V.compare(r, moved, EPYC, XEON)
    assert cmp["verdict"] == "different"
    assert checks(cmp)["E3"] and not checks(cmp)["E4"] and not checks(cmp)["E5"]
    assert cmp["rankings"]["test"]["crossed"] == {5: 12, 10: 12, 20: 12}


def test_other_users_or_a_missing_ranking_are_different():
    r = ranks_of(extra=["x"])
    other = copy.deepcopy(r)
    other["test_item"][:3] += 1
    del other["test@x"]
    cmp = V.compare(r, other, EPYC, XEON)
    assert cmp["verdict"] == "different" and not checks(cmp)["E2"]
    assert any("test_item" in p for p in cmp["problems"]) and any("test@x" in p for p in cmp["problems"])


def test_old_records_show_not_recorded_and_give_no_evidence():
    old = {k: v for k, v in EPYC.items() if k not in ("cpu_flags", "cpu_capability", "blas_torch", "blas_numpy",
                                                       "precision")}
    rows = {row["key"]: row for row in V.compare_environments(old, EPYC)}
    assert rows["cpu_flags"]["recorded"] == "not recorded" and rows["cpu_flags"]["status"] == "not recorded"
    assert rows["cpu"]["status"] == "same" and rows["threads"]["float_order"]
    r = ranks_of()
    cmp = V.compare(r, nudge(r, "test", 4), old, EPYC)
    assert cmp["verdict"] == "different" and "cpu_flags" in cmp["checks"][0]["text"]


def test_code_status():
    clean = {"git_revision": "a" * 40, "git_dirty": False}
    assert V.code_status(clean, dict(clean), False)["status"] == "same"
    assert V.code_status(clean, {"git_revision": "b" * 40}, False)["status"] == "differs"
    dirty = {"git_revision": "a" * 40, "git_dirty": True}
    assert V.code_status(dirty, dict(dirty), False)["status"] == "unrecoverable"
    stored = {**dirty, "code_diff_sha256": "c" * 64}
    assert V.code_status(stored, dict(stored), True)["status"] == "same"
    assert V.code_status(stored, dict(stored), False)["status"] == "unrecoverable"  # code.diff.gz missing
    assert V.code_status(stored, {**stored, "code_diff_sha256": "d" * 64}, True)["status"] == "differs"


# --------------------------------------------------------------------------- bench reproduce, console and exit code
def fake_reproduce(monkeypatch, tmp_path, rerun_ranks, rerun_env, record_env=EPYC):
    """``reproduce`` on a constructed record whose rerun returns ``rerun_ranks`` made on ``rerun_env``."""
    folder = store.run_dir(tmp_path / "results", "fake", "beauty", "SASRec", 0)
    ranks = ranks_of()
    record = {"status": "ok", "profile": "fake", "dataset": "beauty", "model": "SASRec", "base_model": "SASRec",
              "seed": 0, "protocol": "clean", "env": record_env, "config_hash": "h",
              "metrics": {"test": store.metrics_from_ranks(ranks["test"]),
                          "valid": store.metrics_from_ranks(ranks["valid"])}}
    store.write_run(folder, record, ranks)
    entry = Entry("beauty", "SASRec", 0, "SASRec")

    def prepare(*args):
        return folder, store.read_record(folder), {"name": "fake"}, entry, "as recorded", []

    def rerun_here(entry, profile, tmp, data_dir, device, threads):
        out = store.run_dir(tmp, "fake", "beauty", "SASRec", 0)
        store.write_run(out, {**record, "env": rerun_env}, rerun_ranks(ranks))
        return "ok", {**record, "env": rerun_env}, out

    monkeypatch.setattr(R, "_prepare", prepare)
    monkeypatch.setattr(R, "_rerun_here", rerun_here)
    return folder


@pytest.mark.parametrize("rerun_env, change, verdict, code", [
    (EPYC, lambda r: copy.deepcopy(r), "IDENTICAL", 0),
    (XEON, lambda r: nudge(nudge(r, "test", 4), "valid", 5, seed=2), "EQUIVALENT", 3),
    (EPYC, lambda r: nudge(nudge(r, "test", 4), "valid", 5, seed=2), "DIFFERENT", 1),
])
def test_cli_prints_both_environments_and_exits_by_verdict(monkeypatch, tmp_path, capsys, rerun_env, change,
                                                           verdict, code):
    folder = fake_reproduce(monkeypatch, tmp_path, change, rerun_env)
    assert cli.main(["reproduce", str(folder), "--device", "cpu"]) == code
    out = capsys.readouterr().out
    assert out.splitlines()[-1].startswith(verdict), out
    env_lines = [l for l in out.splitlines() if " cpu " in f" {l} " and "AMD EPYC" in l]
    assert env_lines and (("≠ fp" in env_lines[0]) == (rerun_env is XEON)), out
    if rerun_env is XEON:
        assert "cpu_flags only in the record: avx512f" in out
        assert "users whose rank changed: test 4, valid 5, any stored ranking 9 (of 2000)" in out
        assert "paired 95% CI" in out and "crossed" in out
    if verdict == "DIFFERENT":
        assert "[ ] E1" in out


def test_cli_warns_when_the_code_cannot_be_recovered(monkeypatch, tmp_path, capsys):
    dirty = {**EPYC, "git_dirty": True}
    folder = fake_reproduce(monkeypatch, tmp_path, lambda r: copy.deepcopy(r), dict(dirty), record_env=dirty)
    assert cli.main(["reproduce", str(folder), "--device", "cpu"]) == 0
    assert "WARNING: code made from uncommitted changes" in capsys.readouterr().out


# --------------------------------------------------------------------------- the stored diff
def _diff_against_head(path="bench/errors.py", line="# changed by the test\n"):
    head = subprocess.run(["git", "show", f"HEAD:{path}"], cwd=REPO_ROOT, capture_output=True, text=True)
    if head.returncode:
        pytest.skip("not a git checkout with a HEAD commit")
    old = head.stdout.splitlines(keepends=True)
    return "".join(difflib.unified_diff(old, old + [line], f"a/{path}", f"b/{path}")), line


def test_integrity_checks_the_stored_diff(tmp_path):
    text = "diff --git a/x b/x\n"
    record = {"_dir": str(tmp_path), "env": {"git_dirty": True, "code_diff_sha256": diff_sha256(text)}}
    problems, notes = [], []
    check_code_diff(record, problems, notes)
    assert problems == ["env.code_diff_sha256 names a diff but code.diff.gz is missing"]
    (tmp_path / "code.diff.gz").write_bytes(gzip.compress(text.encode()))
    problems.clear()
    check_code_diff(record, problems, notes)
    assert problems == [] and notes == []
    (tmp_path / "code.diff.gz").write_bytes(gzip.compress(b"diff --git a/y b/y\n"))
    check_code_diff(record, problems, notes)
    assert problems and "does not match" in problems[0]
    problems.clear()
    check_code_diff({"_dir": str(tmp_path / "none"), "env": {"git_dirty": True}}, problems, notes)
    assert not problems and notes == ["code not recoverable: made from uncommitted changes that were not stored"]


def test_recorded_code_is_checked_out_with_its_diff_and_removed(tmp_path):
    diff, line = _diff_against_head()
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "code.diff.gz").write_bytes(gzip.compress(diff.encode()))
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True).stdout.strip()
    record = {"_dir": str(folder), "env": {"git_revision": head, "git_dirty": True,
                                           "code_diff_sha256": diff_sha256(diff)}}
    rev, text = recorded_code(record)
    with recorded_code_tree(rev, text) as tree:
        assert (tree / "bench" / "errors.py").read_text().endswith(line)
    assert not tree.exists()
    assert str(tree) not in subprocess.run(["git", "worktree", "list"], cwd=REPO_ROOT, capture_output=True,
                                           text=True).stdout
    with pytest.raises(BenchError, match="not stored"):
        recorded_code({"_dir": str(folder), "env": {"git_revision": head, "git_dirty": True}})
    with pytest.raises(BenchError, match="does not match"):
        recorded_code({"_dir": str(folder), "env": {**record["env"], "code_diff_sha256": "0" * 64}})


# --------------------------------------------------------------------------- --all
def _store_of_three(root):
    for seed in (0, 1, 2):
        ranks = ranks_of(seed)
        record = {"status": "ok", "profile": "quick", "dataset": "beauty", "model": "SASRec", "seed": seed,
                  "config_hash": f"h{seed}", "created": "2026-01-01T00:00:00+00:00", "ranks_sha256": f"r{seed}",
                  "env": EPYC}
        store.write_run(store.run_dir(root, "quick", "beauty", "SASRec", seed), record, ranks)


def _fake_rerun(calls, outcome):
    """A stand-in for reproduce(): records the seed, then compares the stored ranks with
    ``outcome(record, ranks) -> (rerun ranks, rerun environment)`` (which may raise)."""
    def rerun(record_dir, results_dir, data_dir, profile, device="record"):
        rec = store.read_record(record_dir)
        calls.append(rec["seed"])
        before = store.read_ranks(record_dir)
        after, env = outcome(rec, before)
        cmp = V.compare(before, after, EPYC, env)
        return {"run": f"beauty/SASRec/seed-{rec['seed']}", "status": "ok", "seconds": 1.0, "differences": [],
                "record_id": RA.record_identity(rec), **cmp, "metrics_reported": R.reported_rows(cmp, {})}
    return rerun


def test_reproduce_all_writes_the_report_and_resumes(tmp_path):
    results, reports = tmp_path / "results", tmp_path / "reports"
    _store_of_three(results)
    calls = []

    rerun = _fake_rerun(calls, lambda rec, r: (r if rec["seed"] == 0 else nudge(r, "test", 4),
                                               XEON if rec["seed"] == 1 else EPYC))

    out = RA.reproduce_all("quick", results, reports, rerun=rerun, progress=False)
    assert calls == [0, 1, 2] and out["verdict"] == "different"
    assert [r["verdict"] for r in out["rows"]] == ["identical", "equivalent", "different"]
    md = (reports / "quick" / "reproduce.md").read_text()
    assert "**1 identical, 1 equivalent, 1 different.**" in md and "## Why different" in md
    assert "| beauty/SASRec/seed-1 | **equivalent** | 4 of 2000 |" in md and "cpu, cpu_flags" in md
    assert (reports / "quick" / "reproduce" / "beauty" / "SASRec" / "seed-2.json").exists()

    calls.clear()
    again = RA.reproduce_all("quick", results, reports, rerun=rerun, progress=False)
    assert calls == [] and [r["verdict"] for r in again["rows"]] == ["identical", "equivalent", "different"]
    folder = store.run_dir(results, "quick", "beauty", "SASRec", 1)
    rec = json.loads((folder / "record.json").read_text())
    store.write_json(folder / "record.json", {**rec, "created": "2026-02-01T00:00:00+00:00"})  # re-made record
    RA.reproduce_all("quick", results, reports, rerun=rerun, progress=False)
    assert calls == [1]
    assert [r["seed"] for r in RA.select_records(results, "quick", sample=2)] == \
        [r["seed"] for r in RA.select_records(results, "quick", sample=2)]
    assert len(RA.select_records(results, "quick", sample=2)) == 2
    assert [r["seed"] for r in RA.select_records(results, "quick", seeds=[1, 2], models=["sasrec"])] == [1, 2]


# --------------------------------------------------------------------------- real reruns (tiny)
TINY = {"description": "reproduce test", "protocol": "clean", "datasets": ["beauty"], "models": ["SASRec"],
        "seeds": [0], "max_users": 60, "max_train_prefixes": 3,
        "train": {"epochs": 1, "stopping_step": 1, "eval_step": 1, "train_batch_size": 128, "eval_batch_size": 256}}


@pytest.fixture
def tiny_record(tmp_path, monkeypatch):
    """(profile YAML, record folder) of one tiny SASRec run."""
    from conftest import AVAILABLE

    if "beauty" not in AVAILABLE:
        pytest.skip("released Beauty split not found")
    from bench.profiles import load_profile
    from bench.runner import run_entry

    monkeypatch.setenv("BENCH_CACHE_DIR", str(tmp_path / "cache"))
    prof = tmp_path / "tiny.yaml"
    prof.write_text(yaml.safe_dump(TINY))
    status, _ = run_entry(Entry("beauty", "SASRec", 0, "SASRec"), load_profile(str(prof)), tmp_path / "results",
                          state_dir=tmp_path / "state")
    assert status == "ok"
    return prof, store.run_dir(tmp_path / "results", "tiny", "beauty", "SASRec", 0)


def _edit(folder, change):
    record = json.loads((folder / "record.json").read_text())
    change(record)
    (folder / "record.json").write_text(json.dumps(record))


@needs_data
def test_a_record_made_elsewhere_is_equivalent(tiny_record, capsys):
    """The stored record says another CPU made it, and two deep ranks differ by one: equivalent, exit 3."""
    prof, folder = tiny_record
    _edit(folder, lambda r: r["env"].update(cpu="Intel Xeon Gold 6338", cpu_flags="avx avx2 fma"))
    ranks = store.read_ranks(folder)
    deep = np.argsort(ranks["test"])[-2:]
    ranks["test"][deep] += np.array([1, -1], dtype=ranks["test"].dtype)
    store.write_run(folder, json.loads((folder / "record.json").read_text()), ranks)
    assert cli.main(["reproduce", str(folder), "--profile", str(prof)]) == 3
    out = capsys.readouterr().out
    assert "EQUIVALENT" in out and "Intel Xeon Gold 6338" in out and "test 2, valid 0" in out


@needs_data
def test_with_recorded_code_reruns_the_revision_in_a_worktree(tiny_record, capsys):
    """A record that says it was made from clean HEAD: rerun by HEAD's own code in a temporary worktree."""
    prof, folder = tiny_record
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True)
    if head.returncode:
        pytest.skip("not a git checkout with a HEAD commit")
    _edit(folder, lambda r: (r["env"].update(git_revision=head.stdout.strip(), git_dirty=False),
                             r["env"].pop("code_diff_sha256", None)))
    (folder / "code.diff.gz").unlink(missing_ok=True)
    before = {p.name for p in (REPO_ROOT / ".git" / "worktrees").glob("*")} if (REPO_ROOT / ".git").is_dir() else set()
    res = R.reproduce(folder, profile_name=str(prof), with_recorded_code=True)
    assert res["status"] == "ok", res.get("error")
    assert res["verdict"] == "identical" and res["code"]["status"] == "same" and "worktree" in res["mode"]
    after = {p.name for p in (REPO_ROOT / ".git" / "worktrees").glob("*")} if (REPO_ROOT / ".git").is_dir() else set()
    assert after == before  # the worktree is gone
    shutil.rmtree(folder.parent.parent.parent, ignore_errors=True)


# --------------------------------------------------------------------------- environment keys, audit vocabulary
def test_environment_names_vector_extensions_and_blas():
    from bench import machine
    from bench.runner import environment

    env = environment()
    for key in ("cpu_flags", "cpu_capability", "blas_torch", "blas_numpy", "threads", "precision"):
        assert key in env
    assert all(machine.VECTOR_FLAG.match(f) for f in env["cpu_flags"].split())
    assert machine.VECTOR_FLAG.match("avx512f") and machine.VECTOR_FLAG.match("amx_tile")
    assert not machine.VECTOR_FLAG.match("fpu") and not machine.VECTOR_FLAG.match("aes")


def test_audit_determinism_uses_the_verdict_vocabulary():
    from bench.audit.render import _determinism

    det = {"plan": {"models": ["SASRec"]}, "device": "cpu", "status": "different", "runs": [
        {"run": "beauty/SASRec/seed-0", "status": "different", "users_changed_any": 2, "n_users": 200,
         "users_changed_test": 1, "users_changed_valid": 1,
         "vs_stored": {"verdict": "equivalent", "users_changed_any": 3, "float_order_differences": ["cpu"]}}]}
    md = "\n".join(_determinism(det))
    assert "on device cpu" in md and "**identical**" in md and "**equivalent**" in md
    assert "| beauty/SASRec/seed-0 | different | 2 of 200 users differ" in md
    assert "equivalent: 3 users differ (cpu)" in md


def test_reproduce_all_retries_failed_reruns(tmp_path):
    results, reports = tmp_path / "results", tmp_path / "reports"
    _store_of_three(results)
    calls = []

    def outcome(rec, ranks):
        if rec["seed"] == 2:
            raise BenchError("data unavailable")
        return ranks, EPYC

    rerun = _fake_rerun(calls, outcome)

    out = RA.reproduce_all("quick", results, reports, seeds=[1, 2], rerun=rerun, progress=False)
    assert [r["verdict"] for r in out["rows"]] == ["identical", "different"] and out["verdict"] == "different"
    md = (reports / "quick" / "reproduce.md").read_text()
    assert "| beauty/SASRec/seed-2 | **different** | – | – | – |" in md and "data unavailable" in md
    assert "seeds [1, 2]" in md and "on each record's device" in md
    calls.clear()
    RA.reproduce_all("quick", results, reports, seeds=[1, 2], rerun=rerun, progress=False)
    assert calls == [2]
