"""``bench reproduce <record-dir>``: re-run one record into a temporary store and compare it with the original.

The verdict is per metric (recorded, rerun, difference) and per user (how many ranks
changed in each stored ranking); identical means every rank is identical.
"""
from __future__ import annotations

import copy
import dataclasses
import math
import shutil
import tempfile
import time
from pathlib import Path

import torch

from bench import store
from bench.audit.determinism import compare_ranks
from bench.audit.keys import entry_from_record, expected_key, key_differences, run_id, stored_key
from bench.errors import BenchError
from bench.fmt import error_text, finite, num
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


def _metric_rows(record: dict, rerun: dict) -> list[dict]:
    """One row per (split, metric): recorded, rerun and rerun − recorded."""
    rows = []
    for split in ("test", "valid"):
        for m in METRICS:
            a = ((record.get("metrics") or {}).get(split) or {}).get(m)
            b = ((rerun.get("metrics") or {}).get(split) or {}).get(m)
            rows.append({"split": split, "metric": m, "recorded": a, "rerun": b,
                         "diff": (b - a) if finite(a) and finite(b) else math.nan})
    return rows


def reproduce(record_dir, results_dir=None, data_dir=None, profile_name=None, keep=False) -> dict:
    """Re-run one record into a temporary store and compare it with the original."""
    from bench.runner import run_entry

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
    ranks0 = store.read_ranks(folder)
    own = stored_key(record, ranks0["users"])
    expected = expected_key(entry, profile, full.sha256, full.n_users)
    mode, differences = "as recorded", []
    if store.config_hash(own) != record.get("config_hash"):
        differences.append("the record's own config does not hash to its config_hash (record.json edited after "
                           "the run?); `bench check` reports it")
    if store.config_hash(expected) != record.get("config_hash"):
        # the profile, model YAML or data changed since: pin the record's own params and budget
        differences += key_differences(expected, own)
        mode = "pinned to the record's params (the config resolved today differs)"
        profile, entry = _pin_to_record(record, profile, entry)
    # CPU matmuls reduce in a thread-count-dependent order: bit-identical ranks need the
    # record's thread count (a different one changes low-order bits, then the training path)
    threads_now, threads_then = torch.get_num_threads(), (record.get("env") or {}).get("threads")
    tmp = Path(tempfile.mkdtemp(prefix="bench-reproduce-"))
    try:
        if threads_then:
            torch.set_num_threads(int(threads_then))
        t0 = time.perf_counter()
        status, rerun = run_entry(entry, profile, tmp, data_dir, force=True)
        seconds = time.perf_counter() - t0
        out = {"run": run_id(record), "dir": str(folder), "profile": profile["name"], "mode": mode,
               "differences": differences, "status": status, "seconds": seconds, "threads": threads_then,
               "rerun_dir": str(tmp) if keep else None}
        if status != "ok":
            out.update(identical=False, error=error_text(rerun, unknown="unknown"))
            return out
        ranks1 = store.read_ranks(store.run_dir(tmp, profile["name"], entry.dataset, entry.model, entry.seed))
        shared = {k: v for k, v in ranks0.items() if k in ranks1}
        cmp = compare_ranks(shared, {k: ranks1[k] for k in shared})
        lost = sorted(set(ranks0) - set(ranks1))
        out.update(identical=cmp["identical"] and not lost, ranks=cmp, arrays_not_rerun=lost,
                   metrics=_metric_rows(record, rerun))
        return out
    finally:
        torch.set_num_threads(threads_now)
        if not keep:
            shutil.rmtree(tmp, ignore_errors=True)


def format_reproduce(res: dict) -> str:
    """The console report of :func:`reproduce`: notes, per-metric table, changed users, verdict."""
    lines = [f"reproduce {res['run']} (profile {res['profile']}; {res['mode']}; {res.get('threads')} threads as "
             "recorded)"]
    lines += [f"  note: {d}" for d in res["differences"][:12]]
    if res["status"] != "ok":
        return "\n".join(lines + [f"rerun FAILED: {res.get('error')}"])
    lines.append(f"{'split':6s} {'metric':8s} {'recorded':>10s} {'rerun':>10s} {'diff':>11s}")
    lines += [f"{m['split']:6s} {m['metric']:8s} {num(m['recorded'], '{:10.6f}'):>10s} "
              f"{num(m['rerun'], '{:10.6f}'):>10s} {num(m['diff'], '{:+11.2e}'):>11s}" for m in res["metrics"]]
    r = res["ranks"]
    lines.append(f"users whose rank changed: test {r['users_changed_test']}, valid {r['users_changed_valid']}, "
                 f"any stored ranking {r['users_changed_any']} (of {r['n_users']})")
    if res["arrays_not_rerun"]:
        lines.append(f"arrays not produced by the rerun: {', '.join(res['arrays_not_rerun'])}")
    if res["rerun_dir"]:
        lines.append(f"rerun kept in {res['rerun_dir']}")
    lines.append(f"{'IDENTICAL' if res['identical'] else 'DIFFERENT'} ({res['seconds']:.1f} s)")
    return "\n".join(lines)
