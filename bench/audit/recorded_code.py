"""The code that made a record: its git revision plus its stored diff, checked out into a temporary worktree.

A record made from a tree with uncommitted changes stores them as ``code.diff.gz``
beside itself (``bench.runner.run_entry``), with the SHA-256 of the uncompressed text
in ``env.code_diff_sha256``.  ``recorded_code_tree`` checks out ``git_revision`` with
``git worktree add --detach`` into a temporary folder and applies the diff there;
``rerun_with_recorded_code`` runs ``bench run`` of that tree in a subprocess
(``PYTHONPATH`` = the tree, so its ``bench``, ``models`` and ``datasets`` are imported).
"""
from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path

from bench import store
from bench.errors import BenchError

REPO_ROOT = Path(__file__).resolve().parent.parent.parent
DIFF_FILE = "code.diff.gz"


def read_code_diff(folder) -> str | None:
    """The uncompressed text of ``<folder>/code.diff.gz``; None when there is none."""
    path = Path(folder) / DIFF_FILE
    if not path.exists():
        return None
    return gzip.decompress(path.read_bytes()).decode()


def diff_sha256(text: str) -> str:
    """What ``env.code_diff_sha256`` holds: SHA-256 of the uncompressed diff text."""
    return hashlib.sha256(text.encode()).hexdigest()


def recorded_code(record: dict) -> tuple[str, str | None]:
    """(git revision, diff text or None) of the code that made ``record``; BenchError when unrecoverable."""
    env = record.get("env") or {}
    rev, dirty, sha = env.get("git_revision"), env.get("git_dirty"), env.get("code_diff_sha256")
    if not rev or rev == "unknown":
        raise BenchError("the record names no git revision: its code cannot be recovered")
    if not dirty:
        return rev, None
    if not sha:
        raise BenchError(f"the record was made from uncommitted changes on {rev[:10]} that were not stored "
                         f"(no env.code_diff_sha256): its code cannot be recovered; rerun without "
                         f"--with-recorded-code")
    text = read_code_diff(record["_dir"])
    if text is None:
        raise BenchError(f"{record['_dir']}: {DIFF_FILE} is missing (the record names a diff {sha[:12]}…)")
    if diff_sha256(text) != sha:
        raise BenchError(f"{record['_dir']}: {DIFF_FILE} does not match env.code_diff_sha256")
    return rev, text


def _git(*args, cwd=REPO_ROOT, stdin: str | None = None) -> str:
    res = subprocess.run(["git", *args], cwd=cwd, input=stdin, capture_output=True, text=True)
    if res.returncode:
        raise BenchError(f"git {' '.join(args[:3])}: {res.stderr.strip() or res.stdout.strip()}")
    return res.stdout


@contextmanager
def recorded_code_tree(revision: str, diff: str | None, repo=REPO_ROOT):
    """Yield a temporary worktree of ``repo`` at ``revision`` with ``diff`` applied; removed on exit."""
    holder = Path(tempfile.mkdtemp(prefix="bench-recorded-code-"))
    tree = holder / "tree"
    try:
        _git("worktree", "add", "--detach", "--quiet", str(tree), revision, cwd=repo)
        if diff:
            _git("apply", "--whitespace=nowarn", "-", cwd=tree, stdin=diff)
        yield tree
    finally:
        if tree.exists():
            subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=repo, capture_output=True)
        subprocess.run(["git", "worktree", "prune"], cwd=repo, capture_output=True)
        shutil.rmtree(holder, ignore_errors=True)


def run_command(tree: Path, entry, profile_arg: str, results_dir, data_dir, device: str) -> list[str]:
    """``bench run`` of the tree's own CLI for ``entry`` into ``results_dir`` (``--device`` where it has one)."""
    cmd = [sys.executable, "-m", "bench.cli", "run", "--model", entry.model, "--dataset", entry.dataset,
           "--seed", str(entry.seed), "--profile", profile_arg, "--results-dir", str(results_dir),
           "--data-dir", str(data_dir), "--force"]
    if "--device" in (tree / "bench" / "cli.py").read_text():
        cmd += ["--device", device]
    return cmd


def rerun_with_recorded_code(record: dict, entry, profile_arg: str, results_dir, data_dir, device: str,
                             threads: int | None) -> tuple[str, dict | None, Path | None]:
    """Rerun ``entry`` with the record's own code; (status, rerun record, its folder).

    The tree prepares its own data cache and keeps its run state in ``results_dir``, so
    nothing of this checkout's caches is shared with older code.
    """
    from datasets.prepare import resolve_data_dir

    revision, diff = recorded_code(record)
    profile_path = Path(profile_arg)
    if profile_path.suffix in (".yaml", ".yml") and profile_path.exists():
        profile_arg = str(profile_path.resolve())  # a YAML of this checkout; a name resolves in the tree
    results_dir = Path(results_dir).resolve()
    with recorded_code_tree(revision, diff) as tree:
        env = {**os.environ, "PYTHONPATH": str(tree), "BENCH_STATE_DIR": str(results_dir / ".state"),
               "BENCH_CACHE_DIR": str(results_dir / ".cache")}
        if threads:  # torch's default thread count follows OMP_NUM_THREADS
            env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(int(threads))
        cmd = run_command(tree, entry, profile_arg, results_dir, resolve_data_dir(data_dir).resolve(), device)
        res = subprocess.run(cmd, cwd=tree, env=env, capture_output=True, text=True)
    found = sorted(results_dir.glob(f"*/{entry.dataset}/{entry.model}/seed-{entry.seed}/record.json"))
    rerun = store.read_record(found[0].parent) if found else None
    if res.returncode or rerun is None or rerun.get("status") != "ok":
        tail = "\n".join((res.stdout + res.stderr).strip().splitlines()[-8:])
        return "failed", {"error": {"type": "RerunFailed", "message": f"bench run at {revision[:10]} exited "
                                                                      f"{res.returncode}: {tail}"}}, None
    rerun["env"] = {**(rerun.get("env") or {}), "git_revision": revision, "git_dirty": bool(diff),
                    "code_diff_sha256": diff_sha256(diff) if diff else None}
    return "ok", rerun, found[0].parent
