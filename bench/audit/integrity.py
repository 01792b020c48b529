"""Integrity of a results store: every record against its ranks, its own hash, today's config and the data.

For every ok record of the profile (``check_record``):

* its stored metrics recompute exactly from its ``ranks.npz`` (``test``/``valid``; under
  the paper protocol metric m from ``test@m``; extra evaluations from ``test@<name>``),
  and the per-user arrays are consistent with each other and with ``ranks_sha256``;
* its ``config_hash`` matches the hash of its own stored config, so nothing in
  ``record.json`` was edited after the run;
* it is *current*: the config ``bench.runner`` would resolve today hashes to the same
  value (else the record is stale and ``bench grid`` would rerun it);
* its data checksum matches the data file and the dataset card; with the data present,
  its test items, history lengths and head flags match the data.  An absent data file
  is noted ("data unavailable"), never a failure;
* its code is recoverable: a record made from uncommitted changes names their SHA-256
  (``env.code_diff_sha256``) and ``code.diff.gz`` beside it decompresses to exactly that
  text (a missing or edited diff is a failure; a dirty record from before diffs were
  stored is noted, "code not recoverable").

``integrity`` adds the missing runs (in the grid, no record), failed runs, failed
re-runs and records outside the grid.
"""
from __future__ import annotations

import json
import math
import zlib
from pathlib import Path

import numpy as np

from bench import store
from bench.audit.keys import entry_from_record, expected_key, key_differences, run_id, stored_key
from bench.errors import BenchError
from bench.fmt import error_text
from bench.profiles import grid
from datasets.prepare import DataError, load_card, load_sequences

METRICS = store.METRICS
RANK_KEYS = ("users", "test", "valid", "hist_len", "test_item", "test_is_head")
REQUIRED = ("dataset", "model", "seed", "base_model", "protocol", "params", "config_hash", "budget", "data",
            "metrics")
ranks_digest = store.ranks_digest


class DataCache:
    """Each dataset loaded at most once: checksum, size, head items; or why not."""

    def __init__(self, data_dir):
        self.data_dir = data_dir
        self.loaded = {}  # dataset -> {available, seqs, sha256, n_users, head} or {available: False, reason}

    def get(self, dataset: str) -> dict:
        if dataset not in self.loaded:
            try:
                seqs = load_sequences(dataset, self.data_dir)
                self.loaded[dataset] = {"available": True, "seqs": seqs, "sha256": seqs.sha256,
                                        "n_users": seqs.n_users, "head": None}
            except DataError as err:
                self.loaded[dataset] = {"available": False, "reason": str(err)}
        return self.loaded[dataset]

    def head(self, dataset: str) -> np.ndarray:
        """(n_items + 1,) bool: the head items of ``dataset`` (``bench.runner.head_items``)."""
        from bench.runner import head_items

        info = self.get(dataset)
        if info["head"] is None:
            info["head"] = head_items(info["seqs"])
        return info["head"]


def _same_float(a, b) -> bool:
    """Exactly equal floats (NaN equals NaN)."""
    if a is None or b is None:
        return a is b
    a, b = float(a), float(b)
    return a == b or (math.isnan(a) and math.isnan(b))


# =========================================================================== one record
def _read_ranks(record: dict, problems: list) -> dict | None:
    """The record's ranks when readable, complete and aligned; else None with the problem named."""
    try:
        ranks = store.read_ranks(record["_dir"])
    except (OSError, ValueError, KeyError) as err:
        problems.append(f"ranks.npz unreadable: {type(err).__name__}: {err}")
        return None
    missing = [k for k in RANK_KEYS if k not in ranks]
    if missing:
        problems.append(f"ranks.npz lacks {', '.join(missing)}")
        return None
    n = len(ranks["users"])
    bad_len = [k for k, v in ranks.items() if np.ndim(v) != 1 or len(v) != n]
    if bad_len:
        problems.append(f"ranks.npz arrays not aligned with users ({n}): {', '.join(sorted(bad_len))}")
        return None
    return ranks


def _expected_test_metrics(record: dict, ranks: dict) -> dict:
    if record.get("protocol") == "paper":
        return {m: store.metrics_from_ranks(ranks.get(f"test@{m}", ranks["test"]), [m])[m] for m in METRICS}
    return store.metrics_from_ranks(ranks["test"])


def _compare_metrics(label: str, recorded: dict | None, recomputed: dict, problems: list) -> None:
    if not isinstance(recorded, dict):
        problems.append(f"metrics.{label} missing from record.json")
        return
    for m, value in recomputed.items():
        if m not in recorded:
            problems.append(f"metrics.{label}.{m} missing from record.json")
        elif not _same_float(recorded[m], value):
            problems.append(f"metrics.{label}.{m} = {recorded[m]!r} in record.json but {value!r} from ranks.npz")


def _check_metrics(record: dict, ranks: dict, problems: list) -> None:
    """Stored test, valid and extra-evaluation metrics recompute exactly from the ranks."""
    _compare_metrics("test", record["metrics"].get("test"), _expected_test_metrics(record, ranks), problems)
    _compare_metrics("valid", record["metrics"].get("valid"), store.metrics_from_ranks(ranks["valid"]), problems)
    for name, ev in (record.get("extra_evals") or {}).items():
        key = f"test@{name}"
        if key not in ranks:
            problems.append(f"extra evaluation '{name}' has no {key} in ranks.npz")
            continue
        _compare_metrics(f"extra_evals[{name}].test", (ev.get("metrics") or {}).get("test"),
                         store.metrics_from_ranks(ranks[key]), problems)


def _check_users_against_data(record: dict, ranks: dict, info: dict, data: DataCache, problems: list) -> None:
    """Test items, history lengths and head flags of the evaluated users as the data has them."""
    seqs, users, n = info["seqs"], ranks["users"].astype(np.int64), len(ranks["users"])
    if users.min(initial=0) < 0 or users.max(initial=-1) >= seqs.n_users:
        problems.append("ranks.npz users outside the dataset")
        return
    checks = {"test_item": seqs.test_items[users], "hist_len": seqs.lengths[users] - 1}
    for key, want in checks.items():
        n_bad = int(np.sum(ranks[key].astype(np.int64) != want.astype(np.int64)))
        if n_bad:
            problems.append(f"ranks.npz {key} differs from the data for {n_bad} of {n} users")
    head = data.head(record["dataset"])[seqs.test_items[users]]
    n_bad = int(np.sum(ranks["test_is_head"].astype(bool) != head))
    if n_bad:
        problems.append(f"ranks.npz test_is_head differs from the head rule for {n_bad} of {n} users")


def _check_data(record: dict, ranks: dict, info: dict, data: DataCache, problems: list, notes: list) -> None:
    """The record's data checksum against the dataset card and the data file, then the users."""
    rec_sha = record["data"].get("sha256")
    card_sha = None
    try:
        card_sha = load_card(record["dataset"]).get("sha256")
    except DataError:
        pass
    if card_sha and rec_sha != card_sha:
        problems.append(f"data checksum {str(rec_sha)[:12]}… differs from the dataset card's {card_sha[:12]}…")
    if not info["available"]:
        notes.append(f"data unavailable ({info['reason']}); checked against the record's checksum")
    elif rec_sha != info["sha256"]:
        problems.append(f"data checksum {str(rec_sha)[:12]}… differs from the data file's {info['sha256'][:12]}…")
    else:
        _check_users_against_data(record, ranks, info, data, problems)


def _check_current(record: dict, own: dict, info: dict, profile: dict, entries: dict, problems: list,
                   notes: list) -> None:
    """The config resolved today from the profile and model YAML hashes to the record's hash."""
    entry = entries.get((record["dataset"], record["model"], int(record["seed"])))
    if entry is None:
        entry = entry_from_record(record)
        notes.append("not in the profile's grid")
    sha = info["sha256"] if info["available"] else record["data"].get("sha256")
    n_full = info["n_users"] if info["available"] else record["data"].get("n_users_full")
    try:
        if n_full is None:
            raise BenchError("record lacks data.n_users_full")
        expected = expected_key(entry, profile, sha, int(n_full))
    except (BenchError, DataError, KeyError) as err:
        problems.append(f"cannot resolve the config today: {err}")
        return
    if store.config_hash(expected) != record["config_hash"]:
        diffs = key_differences(expected, own)
        detail = "; ".join(diffs[:8]) + (f"; … ({len(diffs) - 8} more)" if len(diffs) > 8 else "")
        problems.append("config differs from what the profile and model YAML resolve to today (stale or "
                        f"edited; `bench grid` would rerun it): {detail or 'hash differs'}")


def check_code_diff(record: dict, problems: list, notes: list) -> None:
    """``code.diff.gz`` against ``env.code_diff_sha256``: the stored diff is the one the record names."""
    from bench.audit.recorded_code import DIFF_FILE, diff_sha256, read_code_diff

    env = record.get("env") or {}
    sha = env.get("code_diff_sha256")
    try:
        text = read_code_diff(record["_dir"]) if record.get("_dir") else None
    except (OSError, EOFError, ValueError, zlib.error) as err:
        problems.append(f"{DIFF_FILE} unreadable: {type(err).__name__}: {err}")
        return
    if sha and text is None:
        problems.append(f"env.code_diff_sha256 names a diff but {DIFF_FILE} is missing")
    elif text is not None and not sha:
        problems.append(f"{DIFF_FILE} present but the record names no env.code_diff_sha256")
    elif text is not None and diff_sha256(text) != sha:
        problems.append(f"{DIFF_FILE} does not match env.code_diff_sha256 (diff edited or replaced)")
    elif env.get("git_dirty") and not sha:
        notes.append("code not recoverable: made from uncommitted changes that were not stored")


def check_record(record: dict, profile: dict, entries: dict, data: DataCache) -> dict:
    """Integrity of one ok record: {run, dir, problems (failures), notes}."""
    problems, notes = [], []
    out = {"run": run_id(record), "dir": record.get("_dir"), "problems": problems, "notes": notes}
    absent = [k for k in REQUIRED if k not in record or record[k] is None]
    if absent:
        problems.append(f"record.json lacks {', '.join(absent)}")
        return out
    ranks = _read_ranks(record, problems)
    if ranks is None:
        return out
    n = len(ranks["users"])
    if record["data"].get("n_users") is not None and record["data"]["n_users"] != n:
        problems.append(f"record says {record['data']['n_users']} evaluated users, ranks.npz holds {n}")
    if record.get("ranks_sha256") and record["ranks_sha256"] != ranks_digest(ranks):
        problems.append("ranks.npz does not match the record's ranks_sha256 (ranks edited or replaced)")
    _check_metrics(record, ranks, problems)
    check_code_diff(record, problems, notes)
    own = stored_key(record, ranks["users"])
    if store.config_hash(own) != record["config_hash"]:
        problems.append("config_hash does not match the record's own config (params, protocol, budget, data, "
                        "seed or users were changed after the run)")
    info = data.get(record["dataset"])
    _check_data(record, ranks, info, data, problems, notes)
    _check_current(record, own, info, profile, entries, problems, notes)
    return out


# =========================================================================== the store
def _failed_reruns(results_dir, profile_name: str) -> list[dict]:
    out = []
    for path in sorted((Path(results_dir) / profile_name).glob("*/*/seed-*/failed.json")):
        try:
            rec = json.loads(path.read_text())
        except (OSError, ValueError):
            rec = {"error": {"type": "unreadable", "message": str(path)}}
        out.append({"run": str(path.parent.relative_to(Path(results_dir) / profile_name)),
                    "error": error_text(rec, unknown="unknown"), "dir": str(path.parent)})
    return out


def integrity(profile: dict, results_dir, data: DataCache) -> dict:
    """Integrity of every record of ``profile`` plus missing / failed / extra runs."""
    expected = grid(profile)
    entries = {(e.dataset, e.model, e.seed): e for e in expected}
    every = list(store.iter_records(results_dir, profile["name"]))
    ok = [r for r in every if r.get("status") == "ok"]
    failed = [r for r in every if r.get("status") != "ok"]
    checked = [check_record(r, profile, entries, data) for r in ok]
    have = {(r.get("dataset"), r.get("model"), int(r.get("seed", -1))) for r in every}
    missing = [{"run": run_id(e), "reason": "not run" if data.get(e.dataset)["available"]
                else "data unavailable (see Data)"}
               for e in expected if (e.dataset, e.model, e.seed) not in have]
    n_fail = sum(bool(c["problems"]) for c in checked)
    return {
        "passed": n_fail == 0, "n_records": len(every), "n_ok": len(ok), "n_checked": len(checked),
        "n_failed_checks": n_fail, "n_expected": len(expected), "records": checked,
        "failed_runs": [{"run": run_id(r), "error": error_text(r, unknown="unknown"), "dir": r.get("_dir")}
                        for r in failed],
        "failed_reruns": _failed_reruns(results_dir, profile["name"]), "missing_runs": missing,
        "outside_grid": [c["run"] for c in checked if "not in the profile's grid" in c["notes"]],
        "data": {d: ({"available": True, "sha256": i["sha256"]} if i["available"]
                     else {"available": False, "reason": i["reason"]}) for d, i in data.loaded.items()},
    }
