"""``bench reproduce <record-dir>``: re-run one record into a temporary store and compare it with the original.

What it says (``format_reproduce``): the environment of the record and of the rerun side
by side with every difference marked, whether the record's code can be recovered and is
the code that ran, the metric differences with their paired 95 % intervals, how far the
users' ranks moved, and a verdict of ``bench.audit.verdict``: identical, equivalent
(only floating-point order explains the change) or different.  ``--all`` is
``bench.audit.reproduce_all``.
"""
from __future__ import annotations

import copy
import dataclasses
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from bench import store
from bench.audit import verdict as V
from bench.audit.determinism import compare_ranks
from bench.audit.keys import entry_from_record, expected_key, key_differences, run_id, stored_key
from bench.audit.recorded_code import DIFF_FILE, rerun_with_recorded_code
from bench.errors import BenchError
from bench.fmt import error_text, num
from bench.profiles import load_profile
from datasets.prepare import load_sequences

METRICS = store.METRICS


def find_record_dir(record_dir: str, results_dir) -> Path:
    """``record_dir`` itself, else relative to ``results_dir``: the folder holding ``record.json``."""
    for path in (Path(record_dir), Path(results_dir) / record_dir):
        if (path / "record.json").exists():
            return path
    raise BenchError(f"no record.json in {record_dir} (nor under --results-dir {results_dir})")


def _pin_to_record(record: dict, profile: dict, entry):
    """(profile, entry) with the record's own budget and params: the config resolved today differs."""
    profile = copy.deepcopy(profile)
    for key in ("max_users", "max_train_prefixes"):
        profile[key] = (record.get("budget") or {}).get(key)
    pinned = {**(record.get("params") or {}), "protocol": record["protocol"]}
    return profile, dataclasses.replace(entry, variant=tuple(sorted(pinned.items())))


def rerun_device(name: str, record: dict) -> str:
    """The device to rerun on: 'record' = the record's own kind (cpu, or cuda when it ran on a GPU and one is here)."""
    from bench.runner import resolve_device

    if name != "record":
        return str(resolve_device(name))
    recorded = str((record.get("env") or {}).get("device") or "cpu")
    return "cuda" if recorded != "cpu" and torch.cuda.is_available() else "cpu"


def seed_spread(folder: Path) -> dict:
    """{split: {metric: sd over the seeds}} of the record's sibling seeds (same results folder); {} under 2 seeds."""
    values = {}
    for path in sorted(Path(folder).parent.glob("seed-*/record.json")):
        rec = store.read_record(path.parent)
        if rec and rec.get("status") == "ok":
            for split, ms in (rec.get("metrics") or {}).items():
                for m, v in (ms or {}).items():
                    values.setdefault(split, {}).setdefault(m, []).append(v)
    return {s: {m: float(np.std(v, ddof=1)) for m, v in ms.items() if len(v) > 1} for s, ms in values.items()}


def reported_rows(cmp: dict, spread: dict) -> list[dict]:
    """The twelve reported metrics (test, valid) as :func:`verdict.metric_change` rows, with split and seed sd.

    Under the paper protocol test metric m comes from ranking ``test@m``.
    """
    rows = []
    for split in ("test", "valid"):
        for i, m in enumerate(METRICS):
            key = f"test@{m}" if split == "test" and f"test@{m}" in cmp["metrics"] else split
            if key in cmp["metrics"]:
                rows.append({**cmp["metrics"][key][i], "split": split, "ranking": key,
                             "seed_sd": spread.get(split, {}).get(m)})
    return rows


def _prepare(record_dir, results_dir, data_dir, profile_name):
    """(folder, record, profile, entry, mode, notes) of the record to rerun."""
    folder = find_record_dir(str(record_dir), results_dir or ".")
    record = store.read_record(folder)
    if record.get("status") != "ok":
        raise BenchError(f"{folder}: the record is a failed run; nothing to reproduce")
    name = profile_name or record["profile"]
    try:
        profile = load_profile(name)
    except BenchError as err:
        raise BenchError(f"{err}; pass --profile NAME_OR_YAML for the profile of this record") from None
    entry = entry_from_record(record)
    full = load_sequences(record["dataset"], data_dir)
    own = stored_key(record, store.read_ranks(folder)["users"])
    expected = expected_key(entry, profile, full.sha256, full.n_users)
    mode, notes = "as recorded", []
    if store.config_hash(own) != record.get("config_hash"):
        notes.append("the record's own config does not hash to its config_hash (record.json edited after "
                     "the run?); `bench check` reports it")
    if store.config_hash(expected) != record.get("config_hash"):
        # the profile, model YAML or data changed since: pin the record's own params and budget
        notes += key_differences(expected, own)
        mode = "pinned to the record's params (the config resolved today differs)"
        profile, entry = _pin_to_record(record, profile, entry)
    return folder, record, profile, entry, mode, notes


def _rerun_here(entry, profile: dict, tmp: Path, data_dir, device: str, threads) -> tuple[str, dict, Path]:
    """Rerun with this checkout's code and ``threads`` torch threads; (status, record, folder)."""
    from bench import runner

    # CPU reductions split work by thread: bit-identical ranks need the record's thread count
    if threads:
        torch.set_num_threads(int(threads))
    # a private state folder: force=True must not clear a real run's saved state of the same config
    status, rerun = runner.run_entry(entry, profile, tmp, data_dir, force=True, device=device,
                                     state_dir=tmp / ".state")
    return status, rerun, store.run_dir(tmp, profile["name"], entry.dataset, entry.model, entry.seed)


def reproduce(record_dir, results_dir=None, data_dir=None, profile_name=None, keep=False, device="record",
              with_recorded_code=False) -> dict:
    """Re-run one record into a temporary store and compare it with the original (keys: see ``format_reproduce``)."""
    folder, record, profile, entry, mode, notes = _prepare(record_dir, results_dir, data_dir, profile_name)
    device = rerun_device(device, record)
    threads_now, threads_then = torch.get_num_threads(), (record.get("env") or {}).get("threads")
    if with_recorded_code:
        mode = "the record's own code, in a temporary worktree"
    tmp = Path(tempfile.mkdtemp(prefix="bench-reproduce-"))
    t0 = time.perf_counter()
    try:
        if with_recorded_code:
            status, rerun, rerun_dir = rerun_with_recorded_code(record, entry, profile_name or record["profile"],
                                                                tmp, data_dir, device, threads_then)
        else:
            status, rerun, rerun_dir = _rerun_here(entry, profile, tmp, data_dir, device, threads_then)
        out = {"run": run_id(record), "dir": str(folder), "profile": profile["name"], "mode": mode,
               "differences": notes, "status": status, "seconds": time.perf_counter() - t0,
               "threads": threads_then, "device": device, "rerun_dir": str(tmp) if keep else None,
               "record_id": {k: record.get(k) for k in ("config_hash", "created", "ranks_sha256")}}
        if status != "ok":
            out.update(identical=False, verdict="different", error=error_text(rerun, unknown="unknown"),
                       checks=[{"id": "rerun", "passed": False, "text": "the rerun failed"}])
            return out
        if with_recorded_code and rerun.get("config_hash") != record.get("config_hash"):
            out["differences"].append("the record's code resolved another config than the record's "
                                      f"({str(rerun.get('config_hash'))[:12]}… vs {record['config_hash'][:12]}…)")
        ranks0, ranks1 = store.read_ranks(folder), store.read_ranks(rerun_dir)
        cmp = V.compare(ranks0, ranks1, record.get("env") or {}, rerun.get("env") or {},
                        diff_stored=(folder / DIFF_FILE).exists())
        shared = {k: v for k, v in ranks0.items() if k in ranks1}
        out.update(cmp, identical=cmp["verdict"] == "identical",
                   ranks=compare_ranks(shared, {k: ranks1[k] for k in shared}),
                   metrics_reported=reported_rows(cmp, seed_spread(folder)),
                   arrays_not_rerun=sorted(set(ranks0) - set(ranks1)))
        return out
    finally:
        torch.set_num_threads(threads_now)
        if not keep:
            shutil.rmtree(tmp, ignore_errors=True)


# =========================================================================== console
def _cut(text: str, n: int) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


HASH_KEYS = ("git_revision", "code_diff_sha256")  # shown by their first 12 characters


def format_environment(rows: list[dict]) -> list[str]:
    """The two environments side by side; '≠' marks a difference, '≠ fp' one that changes float order."""
    lines = [f"{'':4s} {'environment':16s} {'record':44s} rerun"]
    for r in rows:
        mark = {"differs": "≠ fp" if r["float_order"] else "≠", V.NOT_RECORDED: "?"}.get(r["status"], "")
        a, b = (v[:12] if r["key"] in HASH_KEYS and v != V.NOT_RECORDED else v for v in (r["recorded"], r["rerun"]))
        lines.append(f"{mark:>4s} {r['key']:16s} {_cut(a, 44):44s} {_cut(b, 44)}".rstrip())
    flags = next((r for r in rows if r["key"] == "cpu_flags" and r["status"] == "differs"), None)
    if flags:
        a, b = set(flags["recorded"].split()), set(flags["rerun"].split())
        lines.append(f"       cpu_flags only in the record: {' '.join(sorted(a - b)) or '–'}; "
                     f"only in the rerun: {' '.join(sorted(b - a)) or '–'}")
    lines.append("       (≠ fp: changes floating-point order; ≠: differs; ?: not recorded on one side)")
    return lines


def format_metrics(rows: list[dict]) -> list[str]:
    """Reported metrics: recorded, rerun, diff with its paired 95 % interval, tolerance, seed sd."""
    lines = [f"{'split':6s} {'metric':8s} {'recorded':>9s} {'rerun':>9s} {'diff':>10s} {'paired 95% CI of diff':>24s} "
             f"{'tolerance':>9s} {'seed sd':>8s}"]
    for m in rows:
        ci = f"[{num(m['ci_low'], '{:+.5f}')}, {num(m['ci_high'], '{:+.5f}')}]"
        lines.append(f"{m['split']:6s} {m['metric']:8s} {num(m['recorded'], '{:9.5f}'):>9s} "
                     f"{num(m['rerun'], '{:9.5f}'):>9s} {num(m['diff'], '{:+10.5f}'):>10s} {ci:>24s} "
                     f"{num(m['tolerance'], '{:9.5f}'):>9s} {num(m['seed_sd'], '{:8.5f}'):>8s}"
                     + ("" if m["within"] else "  beyond tolerance"))
    return lines


def format_rankings(rankings: dict) -> list[str]:
    """Per stored ranking: users moved, largest / median |Δrank|, crossings of 5/10/20, up/down and sign test."""
    lines = ["rankings: users moved; largest and median |Δrank| of the movers; users crossing @5/@10/@20; "
             "moved up/down (sign test p)"]
    for k, r in rankings.items():
        c = r["crossed"]
        lines.append(f"  {k:22s} {r['moved']:5d} of {r['n']}  largest {r['largest']:6d}  median {r['median']:7.1f}  "
                     f"crossed {c[5]}/{c[10]}/{c[20]}  up {r['up']} down {r['down']} (p {r['sign_p']:.2g})")
    return lines


def format_reproduce(res: dict) -> str:
    """The console report of :func:`reproduce`."""
    lines = [f"reproduce {res['run']} (profile {res['profile']}; {res['mode']}; {res.get('threads')} threads as "
             f"recorded; device {res.get('device')})"]
    lines += [f"  note: {d}" for d in res["differences"][:12]]
    if res["status"] != "ok":
        return "\n".join(lines + [f"rerun FAILED: {res.get('error')}", "DIFFERENT (exit 1): the rerun failed"])
    lines += format_environment(res["environment"])
    code = res["code"]
    lines.append(("WARNING: code " if code["status"] != "same" else "code: ") + code["text"])
    lines += format_metrics(res["metrics_reported"]) + format_rankings(res["rankings"])
    r = res["ranks"]
    lines.append(f"users whose rank changed: test {r['users_changed_test']}, valid {r['users_changed_valid']}, "
                 f"any stored ranking {r['users_changed_any']} (of {r['n_users']})")
    if res["arrays_not_rerun"]:
        lines.append(f"arrays not produced by the rerun: {', '.join(res['arrays_not_rerun'])}")
    if res["rerun_dir"]:
        lines.append(f"rerun kept in {res['rerun_dir']}")
    if res["verdict"] != "identical":
        lines.append("checks (equivalent needs all):")
        lines += [f"  [{'x' if c['passed'] else ' '}] {c['id']} {c['text']}" for c in res["checks"]]
    lines.append(f"{res['verdict'].upper()} (exit {V.EXIT_CODES[res['verdict']]}; {res['seconds']:.1f} s): "
                 + VERDICT_MEANING[res["verdict"]])
    return "\n".join(lines)


VERDICT_MEANING = {
    "identical": "every stored ranking is bit-for-bit equal to the record's",
    "equivalent": "the rankings differ only as floating-point reduction order on another environment explains",
    "different": "the change is not explained by floating-point order alone (see the checks)",
}
