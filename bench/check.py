"""Reviewer-style checks of a results store: ``bench check`` and ``bench reproduce``.

``bench check --profile P`` writes ``<reports>/<P>/audit.md`` and ``audit.json``:

1. Integrity (a failure here exits 1).  For every record of the profile:
   * its stored metrics recompute exactly from its ``ranks.npz`` (``test``/``valid``;
     under the paper protocol metric m from ``test@m``; extra evaluations from
     ``test@<name>``), and the per-user arrays are consistent with each other;
   * its ``config_hash`` matches the hash of its own stored config (params, protocol,
     budget, data checksum, seed, extra evaluations, evaluated users), so nothing in
     ``record.json`` was edited after the run;
   * it is *current*: the config that ``bench.runner`` would resolve today from the
     profile and the model YAML hashes to the same value (else the record is stale and
     ``bench grid`` would rerun it);
   * its data checksum matches the data file (and the dataset card); with the data
     present, its test items, history lengths and head flags match the data.  An absent
     data file is noted ("data unavailable"), never a failure.
   Missing runs (in the profile's grid, no record), failed runs and records outside
   the grid are listed.
2. Determinism: a few runs re-run twice at a reduced budget into a temporary store
   and compared rank by rank (profile key ``determinism``, else ``DETERMINISM_DEFAULTS``).
3. Protocol sensitivity: DiffuRec and SASRec under the ``clean`` and ``paper`` protocols.
4. Claims: the paper's claims of ``bench/claims.yaml`` evaluated on the records.
5. Environment of the check and of every record; version differences are flagged.

``bench reproduce <record-dir>`` re-runs one record into a temporary store and reports
the difference per metric and the number of users whose rank changed (exit 0 iff
every rank is identical).
"""
from __future__ import annotations

import copy
import dataclasses
import datetime as dt
import json
import math
import shutil
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import yaml
from scipy import stats as sps

from bench import stats, store
from bench.errors import BenchError
from bench.profiles import Entry, _freeze, all_variants, grid, load_profile
from datasets.prepare import DataError, load_card, load_sequences, resolve_data_dir

CLAIMS_FILE = Path(__file__).resolve().parent / "claims.yaml"
PAPER_TABLE2 = Path(__file__).resolve().parent / "paper_tables" / "table2.csv"
MODELS_DIR = Path(__file__).resolve().parent.parent / "models"
METRICS = store.METRICS
VERDICTS = ("holds", "does not hold", "not testable")
VERSION_KEYS = ("python", "torch", "recbole", "numpy")
ENV_KEYS = ("python", "torch", "recbole", "numpy", "device", "cpu", "git_revision", "git_dirty")
DETERMINISM_DEFAULTS = {"models": ["DiffuRec", "SASRec"], "dataset": None, "seed": 0, "max_users": 200,
                        "epochs": 1}
RANK_KEYS = ("users", "test", "valid", "hist_len", "test_item", "test_is_head")
PROTOCOL_MODELS = ("DiffuRec", "SASRec")
PROTOCOL_TEXT = {
    "clean": ("one checkpoint per run: the epoch with the best validation NDCG@10 (patience "
              "`stopping_step` validations); every test metric is read from that checkpoint's ranks."),
    "paper": ("the DiffuRec authors' rule: whenever any validation metric improves, the test set is ranked "
              "with that checkpoint, and each metric is reported at its own best validation epoch (up to six "
              "checkpoints behind one row); training stops after `stopping_step` validations without any gain. "
              "Choosing a checkpoint per metric tends to raise the reported numbers over a single checkpoint. "
              "Model defaults may also change under this protocol (`protocol_overrides.paper` in the model "
              "YAML); they are listed below from the records' params."),
}


# =========================================================================== small helpers
def _run_id(r) -> str:
    if isinstance(r, Entry):
        return f"{r.dataset}/{r.model}/seed-{r.seed}"
    return f"{r.get('dataset')}/{r.get('model')}/seed-{r.get('seed')}"


def _finite(x) -> bool:
    return x is not None and isinstance(x, (int, float, np.floating, np.integer)) and math.isfinite(float(x))


def _same_float(a, b) -> bool:
    if a is None or b is None:
        return a is b
    a, b = float(a), float(b)
    return a == b or (math.isnan(a) and math.isnan(b))


def _same_value(a, b) -> bool:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-12)
    return str(a).lower() == str(b).lower()


def _jsonable(obj):
    """NaN/inf -> None, numpy -> Python, tuples -> lists (for audit.json)."""
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return [_jsonable(v) for v in obj.tolist()]
    if isinstance(obj, (np.bool_, bool)):
        return bool(obj)
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        return float(obj) if math.isfinite(float(obj)) else None
    return obj


def _pct(x, digits=3) -> str:
    return f"{100 * float(x):.{digits}f}" if _finite(x) else "–"


def _num(x, fmt="{:.3f}") -> str:
    return fmt.format(float(x)) if _finite(x) else "–"


def _p(x) -> str:
    if not _finite(x):
        return "–"
    return "<1e-4" if x < 1e-4 else f"{x:.4f}"


def _md_table(header, rows) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c).replace("|", "\\|").replace("\n", " ") for c in row) + " |"
              for row in rows]
    return "\n".join(lines) + "\n"


def _welch_interval(a, b, level=0.95) -> tuple[float, float]:
    """Welch t-interval of mean(a) - mean(b) (NaN with fewer than two values on a side)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if len(a) < 2 or len(b) < 2:
        return (math.nan, math.nan)
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    diff = float(a.mean() - b.mean())
    se = math.sqrt(va + vb)
    if se == 0.0:
        return (diff, diff)
    df = (va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1))
    half = float(sps.t.ppf(0.5 + level / 2, df)) * se
    return (diff - half, diff + half)


# =========================================================================== config keys
def expected_key(entry: Entry, profile: dict, data_sha256: str, n_users_full: int) -> dict:
    """What ``bench.runner.run_entry`` hashes into ``config_hash`` for ``entry`` today."""
    from bench.runner import config_key

    return config_key(entry, profile, data_sha256, n_users_full)


def stored_key(record: dict, users: np.ndarray) -> dict:
    """The same key rebuilt from a record's own fields and its ranks' ``users``."""
    extra = {name: ev.get("params") for name, ev in (record.get("extra_evals") or {}).items()}
    return {"model": record.get("base_model"), "dataset": record.get("dataset"), "seed": record.get("seed"),
            "protocol": record.get("protocol"), "params": record.get("params"),
            "data_sha256": (record.get("data") or {}).get("sha256"), "budget": record.get("budget"),
            "extra_evals": extra, "users": store.config_hash({"u": np.asarray(users).tolist()})}


def entry_from_record(record: dict) -> Entry:
    variant = record.get("variant") or {}
    params = variant.get("params") or {}
    return Entry(record["dataset"], record["model"], int(record["seed"]), record.get("base_model") or record["model"],
                 _freeze(params) if variant else ())


def _key_differences(expected: dict, stored: dict) -> list[str]:
    out = []
    for field in ("model", "dataset", "seed", "protocol", "data_sha256", "budget", "extra_evals", "users"):
        if json.dumps(expected.get(field), sort_keys=True, default=str) != json.dumps(stored.get(field), sort_keys=True,
                                                                                       default=str):
            what = "evaluated users" if field == "users" else field
            out.append(f"{what}: now {_short(expected.get(field))}, recorded {_short(stored.get(field))}")
    pe, ps = expected.get("params") or {}, stored.get("params") or {}
    for key in sorted(set(pe) | set(ps)):
        if json.dumps(pe.get(key), default=str) != json.dumps(ps.get(key), default=str):
            now, then = _short(pe.get(key, "(absent)")), _short(ps.get(key, "(absent)"))
            out.append(f"params.{key}: now {now}, recorded {then}")
    return out


def _short(value, n=60) -> str:
    text = json.dumps(value, sort_keys=True, default=str) if not isinstance(value, str) else value
    return text if len(text) <= n else text[: n - 1] + "…"


# =========================================================================== integrity
class _Data:
    """Each dataset loaded at most once: checksum, size, head items; or why not."""

    def __init__(self, data_dir):
        self.data_dir = data_dir
        self._cache = {}

    def get(self, dataset: str) -> dict:
        if dataset not in self._cache:
            try:
                seqs = load_sequences(dataset, self.data_dir)
                self._cache[dataset] = {"available": True, "seqs": seqs, "sha256": seqs.sha256,
                                        "n_users": seqs.n_users, "head": None}
            except DataError as err:
                self._cache[dataset] = {"available": False, "reason": str(err)}
        return self._cache[dataset]

    def head(self, dataset: str) -> np.ndarray:
        from bench.runner import head_items

        info = self.get(dataset)
        if info["head"] is None:
            info["head"] = head_items(info["seqs"])
        return info["head"]


ranks_digest = store.ranks_digest


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


def check_record(record: dict, profile: dict, entries: dict, data: _Data) -> dict:
    """Integrity of one ok record: {run, dir, problems (failures), notes}."""
    problems, notes = [], []
    out = {"run": _run_id(record), "dir": record.get("_dir"), "problems": problems, "notes": notes}
    required = ("dataset", "model", "seed", "base_model", "protocol", "params", "config_hash", "budget",
                "data", "metrics")
    absent = [k for k in required if k not in record or record[k] is None]
    if absent:
        problems.append(f"record.json lacks {', '.join(absent)}")
        return out
    try:
        ranks = store.read_ranks(record["_dir"])
    except (OSError, ValueError, KeyError) as err:
        problems.append(f"ranks.npz unreadable: {type(err).__name__}: {err}")
        return out
    missing = [k for k in RANK_KEYS if k not in ranks]
    if missing:
        problems.append(f"ranks.npz lacks {', '.join(missing)}")
        return out
    n = len(ranks["users"])
    bad_len = [k for k, v in ranks.items() if np.ndim(v) != 1 or len(v) != n]
    if bad_len:
        problems.append(f"ranks.npz arrays not aligned with users ({n}): {', '.join(sorted(bad_len))}")
        return out
    if record["data"].get("n_users") is not None and record["data"]["n_users"] != n:
        problems.append(f"record says {record['data']['n_users']} evaluated users, ranks.npz holds {n}")

    if record.get("ranks_sha256") and record["ranks_sha256"] != ranks_digest(ranks):
        problems.append("ranks.npz does not match the record's ranks_sha256 (ranks edited or replaced)")

    # 1. metrics recompute exactly from the ranks
    _compare_metrics("test", record["metrics"].get("test"), _expected_test_metrics(record, ranks), problems)
    _compare_metrics("valid", record["metrics"].get("valid"), store.metrics_from_ranks(ranks["valid"]), problems)
    for name, ev in (record.get("extra_evals") or {}).items():
        key = f"test@{name}"
        if key not in ranks:
            problems.append(f"extra evaluation '{name}' has no {key} in ranks.npz")
            continue
        _compare_metrics(f"extra_evals[{name}].test", (ev.get("metrics") or {}).get("test"),
                         store.metrics_from_ranks(ranks[key]), problems)

    # 2. the stored hash covers the stored config
    own = stored_key(record, ranks["users"])
    if store.config_hash(own) != record["config_hash"]:
        problems.append("config_hash does not match the record's own config (params, protocol, budget, data, "
                        "seed or users were changed after the run)")

    # 3. data
    info = data.get(record["dataset"])
    rec_sha = record["data"].get("sha256")
    card_sha = None
    try:
        card_sha = load_card(record["dataset"]).get("sha256")
    except DataError:
        pass
    if card_sha and rec_sha != card_sha:
        problems.append(f"data checksum {str(rec_sha)[:12]}… differs from the dataset card's {card_sha[:12]}…")
    if info["available"]:
        if rec_sha != info["sha256"]:
            problems.append(f"data checksum {str(rec_sha)[:12]}… differs from the data file's "
                            f"{info['sha256'][:12]}…")
        else:
            seqs, users = info["seqs"], ranks["users"].astype(np.int64)
            if users.min(initial=0) < 0 or users.max(initial=-1) >= seqs.n_users:
                problems.append("ranks.npz users outside the dataset")
            else:
                checks = {"test_item": seqs.test_items[users], "hist_len": seqs.lengths[users] - 1}
                for key, want in checks.items():
                    n_bad = int(np.sum(ranks[key].astype(np.int64) != want.astype(np.int64)))
                    if n_bad:
                        problems.append(f"ranks.npz {key} differs from the data for {n_bad} of {n} users")
                head = data.head(record["dataset"])[seqs.test_items[users]]
                n_bad = int(np.sum(ranks["test_is_head"].astype(bool) != head))
                if n_bad:
                    problems.append(f"ranks.npz test_is_head differs from the head rule for {n_bad} of {n} users")
    else:
        notes.append(f"data unavailable ({info['reason']}); checked against the record's checksum")

    # 4. current: the config resolved today hashes to the stored hash
    entry = entries.get((record["dataset"], record["model"], int(record["seed"])))
    if entry is None:
        entry = entry_from_record(record)
        notes.append("not in the profile's grid")
    sha = info["sha256"] if info["available"] else rec_sha
    n_full = info["n_users"] if info["available"] else record["data"].get("n_users_full")
    try:
        if n_full is None:
            raise BenchError("record lacks data.n_users_full")
        expected = expected_key(entry, profile, sha, int(n_full))
    except (BenchError, DataError, KeyError) as err:
        problems.append(f"cannot resolve the config today: {err}")
    else:
        if store.config_hash(expected) != record["config_hash"]:
            diffs = _key_differences(expected, own)
            detail = "; ".join(diffs[:8]) + (f"; … ({len(diffs) - 8} more)" if len(diffs) > 8 else "")
            problems.append("config differs from what the profile and model YAML resolve to today (stale or "
                            f"edited; `bench grid` would rerun it): {detail or 'hash differs'}")
    return out


def integrity(profile: dict, results_dir, data: _Data) -> dict:
    """Integrity of every record of ``profile`` plus missing / failed / extra runs."""
    expected = grid(profile)
    entries = {(e.dataset, e.model, e.seed): e for e in expected}
    every = list(store.iter_records(results_dir, profile["name"]))
    ok = [r for r in every if r.get("status") == "ok"]
    failed = [r for r in every if r.get("status") != "ok"]
    checked = [check_record(r, profile, entries, data) for r in ok]
    failed_reruns = []
    for path in sorted((Path(results_dir) / profile["name"]).glob("*/*/seed-*/failed.json")):
        try:
            rec = json.loads(path.read_text())
        except (OSError, ValueError):
            rec = {"error": {"type": "unreadable", "message": str(path)}}
        failed_reruns.append({"run": str(path.parent.relative_to(Path(results_dir) / profile["name"])),
                              "error": _error_text(rec), "dir": str(path.parent)})
    have = {(r.get("dataset"), r.get("model"), int(r.get("seed", -1))) for r in every}
    missing = []
    for e in expected:
        if (e.dataset, e.model, e.seed) not in have:
            info = data.get(e.dataset)
            missing.append({"run": _run_id(e), "reason": "not run" if info["available"]
                            else "data unavailable (see Data)"})
    extra = [c["run"] for c in checked if "not in the profile's grid" in c["notes"]]
    n_fail = sum(bool(c["problems"]) for c in checked)
    return {
        "passed": n_fail == 0, "n_records": len(every), "n_ok": len(ok), "n_checked": len(checked),
        "n_failed_checks": n_fail, "n_expected": len(expected), "records": checked,
        "failed_runs": [{"run": _run_id(r), "error": _error_text(r), "dir": r.get("_dir")} for r in failed],
        "failed_reruns": failed_reruns, "missing_runs": missing, "outside_grid": extra,
        "data": {d: ({"available": True, "sha256": i["sha256"]} if i["available"]
                     else {"available": False, "reason": i["reason"]}) for d, i in data._cache.items()},
    }


def _error_text(r: dict) -> str:
    err = r.get("error")
    text = f"{err.get('type', 'Error')}: {err.get('message', '')}" if isinstance(err, dict) else str(err or "unknown")
    text = " ".join(text.split())
    return text[:300] + ("…" if len(text) > 300 else "")


# =========================================================================== determinism
def compare_ranks(a: dict, b: dict) -> dict:
    """Rank arrays of two runs: identical?, per-array number of differing users."""
    arrays = {}
    for key in sorted(set(a) | set(b)):
        if key not in a or key not in b:
            arrays[key] = "missing in one run"
        elif a[key].shape != b[key].shape:
            arrays[key] = f"shape {a[key].shape} vs {b[key].shape}"
        else:
            arrays[key] = int(np.sum(a[key] != b[key]))
    identical = all(v == 0 for v in arrays.values())
    n = len(a.get("users", b.get("users", [])))
    return {"identical": identical, "n_users": int(n), "arrays": arrays,
            "users_changed_test": arrays.get("test") if isinstance(arrays.get("test"), int) else None,
            "users_changed_valid": arrays.get("valid") if isinstance(arrays.get("valid"), int) else None,
            "users_changed_any": _users_changed(a, b)}


def _users_changed(a: dict, b: dict) -> int | None:
    keys = [k for k in a if (k == "test" or k == "valid" or k.startswith("test@")) and k in b
            and a[k].shape == b[k].shape]
    if not keys:
        return None
    return int(np.sum(np.any(np.stack([a[k] != b[k] for k in keys]), axis=0)))


def _smallest_dataset(profile: dict, data_dir) -> str | None:
    from bench.grid import available_datasets

    present, _ = available_datasets(profile, data_dir)
    if not present:
        return None
    return min(present, key=lambda d: (load_card(d)["paper"].get("actions", math.inf), d))


def _entry_for(profile: dict, dataset: str, model: str, seed: int) -> tuple[Entry, bool]:
    """The grid entry of (dataset, model, seed), else the zoo model; (entry, in_grid)."""
    from bench.zoo import get_spec

    for e in grid(profile):
        if e.dataset == dataset and e.model.lower() == model.lower() and e.seed == seed:
            return e, True
    for var in all_variants(profile):
        if var["name"].lower() == model.lower():
            base = get_spec(var["model"]).name
            return Entry(dataset, var["name"], seed, base, _freeze(var.get("params", {}))), False
    spec = get_spec(model)
    return Entry(dataset, spec.name, seed, spec.name), False


def determinism(profile: dict, results_dir, data_dir=None) -> dict:
    """Re-run the determinism set twice at its reduced budget and compare ranks exactly."""
    from bench.runner import run_entry

    plan = {**DETERMINISM_DEFAULTS, **(profile.get("determinism") or {})}
    plan["dataset"] = plan.get("dataset") or _smallest_dataset(profile, data_dir)
    out = {"plan": plan, "runs": [], "status": "not run", "reason": ""}
    if plan["dataset"] is None:
        out["reason"] = "no dataset of the profile is available"
        return out
    reduced = copy.deepcopy(profile)
    reduced["max_users"] = plan["max_users"]
    reduced["name"] = f"{profile['name']}-determinism"
    seed = int(plan["seed"])
    for model in plan["models"]:
        t0 = time.perf_counter()
        try:
            entry, in_grid = _entry_for(profile, plan["dataset"], model, seed)
            load_sequences(plan["dataset"], data_dir)
        except (BenchError, DataError) as err:
            out["runs"].append({"run": f"{plan['dataset']}/{model}/seed-{seed}", "status": "failed",
                                "error": str(err), "seconds": 0.0})
            continue
        entry = dataclasses.replace(entry, variant=_freeze({**entry.variant_params, "epochs": int(plan["epochs"])}))
        row = {"run": _run_id(entry), "in_grid": in_grid}
        with tempfile.TemporaryDirectory(prefix="bench-determinism-") as tmp:
            results = []
            for attempt in ("a", "b"):
                status, rec = run_entry(entry, reduced, Path(tmp) / attempt, data_dir, force=True)
                results.append((status, rec))
            if any(s != "ok" for s, _ in results):
                bad = next(r for s, r in results if s != "ok")
                row.update(status="failed", error=_error_text(bad))
            else:
                def folder(attempt):
                    return store.run_dir(Path(tmp) / attempt, reduced["name"], entry.dataset, entry.model, seed)

                cmp = compare_ranks(store.read_ranks(folder("a")), store.read_ranks(folder("b")))
                row.update(status="identical" if cmp["identical"] else "differs", **cmp,
                           config_hash=results[0][1]["config_hash"])
                stored = store.read_record(
                    store.run_dir(results_dir, profile["name"], entry.dataset, entry.model, seed))
                if stored and stored.get("status") == "ok" and stored.get("config_hash") == row["config_hash"]:
                    vs = compare_ranks(store.read_ranks(stored["_dir"]), store.read_ranks(folder("a")))
                    row["vs_stored"] = {"identical": vs["identical"], "users_changed_any": vs["users_changed_any"]}
                else:
                    row["vs_stored"] = None  # the stored run has another budget
        row["seconds"] = round(time.perf_counter() - t0, 1)
        out["runs"].append(row)
    statuses = {r["status"] for r in out["runs"]}
    out["status"] = ("identical" if statuses == {"identical"} else "differs" if "differs" in statuses
                     else "failed" if statuses else "not run")
    return out


# =========================================================================== results view
class ResultsView:
    """The ok records of a profile, with seed values and per-user matrices on demand."""

    def __init__(self, records: list):
        self.records = [r for r in records if r.get("status") == "ok"]
        self.by_model = defaultdict(list)
        for r in self.records:
            self.by_model[(r["dataset"], r["model"])].append(r)
        self._per_user, self._info = {}, {}

    @property
    def datasets(self) -> list[str]:
        order = ("beauty", "toys", "ml-1m", "steam")
        names = {r["dataset"] for r in self.records}
        return [d for d in order if d in names] + sorted(names - set(order))

    def models(self, dataset: str) -> list[str]:
        return sorted({m for d, m in self.by_model if d == dataset})

    def main_models(self, dataset: str) -> list[str]:
        return [m for m in self.models(dataset) if not self.by_model[(dataset, m)][0].get("variant")]

    def first(self, dataset: str, model: str) -> dict:
        return self.by_model[(dataset, model)][0]

    def base(self, dataset: str, model: str) -> str:
        r = self.first(dataset, model)
        return r.get("base_model") or r["model"]

    def variant_keys(self, dataset: str, model: str) -> set:
        variant = self.first(dataset, model).get("variant") or {}
        return set((variant.get("params") or {}).keys())

    def seeds(self, dataset: str, model: str, metric: str) -> np.ndarray:
        vals = [((r.get("metrics") or {}).get("test") or {}).get(metric)
                for r in self.by_model.get((dataset, model), [])]
        return np.array([v for v in vals if _finite(v)], dtype=np.float64)

    def mean(self, dataset: str, model: str, metric: str) -> float:
        v = self.seeds(dataset, model, metric)
        return float(v.mean()) if len(v) else math.nan

    def info(self, dataset: str) -> dict | None:
        """users, hist_len, test_is_head of the dataset's evaluated users (from its first readable run)."""
        if dataset not in self._info:
            self._info[dataset] = None
            for r in (r for r in self.records if r["dataset"] == dataset):
                try:
                    ranks = store.read_ranks(r["_dir"])
                except (OSError, ValueError, KeyError):
                    continue
                if all(k in ranks for k in ("users", "hist_len", "test_is_head")):
                    order = np.argsort(ranks["users"], kind="stable")
                    self._info[dataset] = {"users": ranks["users"][order], "hist_len": ranks["hist_len"][order],
                                           "test_is_head": ranks["test_is_head"][order].astype(bool)}
                    break
        return self._info[dataset]

    def per_user(self, dataset: str, model: str) -> np.ndarray | None:
        """(len(METRICS), n_users) seed-averaged per-user values aligned with ``info(dataset)['users']``."""
        key = (dataset, model)
        if key in self._per_user:
            return self._per_user[key]
        info = self.info(dataset)
        result = None
        if info is not None:
            ref = info["users"]
            sums, counts = np.zeros((len(METRICS), len(ref))), np.zeros((len(METRICS), len(ref)))
            for r in self.by_model.get(key, []):
                try:
                    ranks = store.read_ranks(r["_dir"])
                except (OSError, ValueError, KeyError):
                    continue
                if "test" not in ranks or "users" not in ranks:
                    continue
                mat = np.stack([store.per_user_metric(ranks.get(f"test@{m}", ranks["test"]), m) for m in METRICS])
                pos = np.searchsorted(ref, ranks["users"])
                pos = np.clip(pos, 0, len(ref) - 1)
                hit = ref[pos] == ranks["users"]
                sums[:, pos[hit]] += mat[:, hit]
                counts[:, pos[hit]] += 1
            if counts.any():
                with np.errstate(invalid="ignore", divide="ignore"):
                    result = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
        self._per_user[key] = result
        return result


# =========================================================================== protocol sensitivity
def _yaml_comment(base_model: str, key: str) -> str:
    """The comment of ``key`` in ``models/<base>.yaml`` (first occurrence), else ''."""
    path = MODELS_DIR / f"{base_model.lower()}.yaml"
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return ""
    for line in lines:
        body, _, comment = line.partition("#")
        if body.strip().startswith(f"{key}:") and comment:
            text = comment.strip()
            return text.split(":", 1)[1].strip() if ":" in text[:12] else text
    return ""


def protocol_sensitivity(view: ResultsView) -> dict:
    """DiffuRec and SASRec under the clean and the paper protocol, side by side."""
    rows, params_changed, pairs = [], {}, []
    for base in PROTOCOL_MODELS:
        for dataset in view.datasets:
            chosen = {}
            for model in view.models(dataset):
                if view.base(dataset, model) != base:
                    continue
                # per protocol the run changing the fewest other params (budget keys may come with it)
                protocol = view.first(dataset, model).get("protocol")
                rank = (len(view.variant_keys(dataset, model) - {"protocol"}), model)
                if protocol not in chosen or rank < chosen[protocol][0]:
                    chosen[protocol] = (rank, model)
            if "clean" not in chosen or "paper" not in chosen:
                continue
            clean, paper = chosen["clean"][1], chosen["paper"][1]
            pairs.append({"dataset": dataset, "base_model": base, "clean": clean, "paper": paper})
            pc, pp = view.first(dataset, clean).get("params") or {}, view.first(dataset, paper).get("params") or {}
            for key in sorted(set(pc) | set(pp)):
                if json.dumps(pc.get(key), default=str) != json.dumps(pp.get(key), default=str):
                    params_changed.setdefault(base, {})[key] = {
                        "clean": pc.get(key), "paper": pp.get(key), "meaning": _yaml_comment(base, key)}
            uc, up = view.per_user(dataset, clean), view.per_user(dataset, paper)
            for i, metric in enumerate(METRICS):
                mc, mp = view.mean(dataset, clean, metric), view.mean(dataset, paper, metric)
                pr = stats.paired(up[i], uc[i]) if uc is not None and up is not None else stats.paired([], [])
                rows.append({"dataset": dataset, "base_model": base, "metric": metric, "clean_model": clean,
                             "paper_model": paper, "clean": mc, "paper": mp, "diff": mp - mc,
                             "rel_pct": 100 * (mp / mc - 1) if mc else math.nan,
                             "n_seeds_clean": len(view.seeds(dataset, clean, metric)),
                             "n_seeds_paper": len(view.seeds(dataset, paper, metric)), "paired_p": pr["p_t"]})
    if rows:
        adj = stats.holm([r["paired_p"] for r in rows])
        for r, a in zip(rows, adj):
            r["paired_p_holm"] = float(a)
    return {"status": "ok" if rows else "not run in this profile", "pairs": pairs, "rows": rows,
            "params_changed": params_changed, "protocols": PROTOCOL_TEXT}


# =========================================================================== claims
def load_claims(path=CLAIMS_FILE) -> dict:
    try:
        spec = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as err:
        raise BenchError(f"cannot read claims file {path}: {err}".replace("\n", " ")) from None
    if not isinstance(spec, dict) or not isinstance(spec.get("claims"), list):
        raise BenchError(f"{path}: expected a mapping with a 'claims' list")
    for c in spec["claims"]:
        for key in ("id", "statement", "source", "rule"):
            if key not in c:
                raise BenchError(f"{path}: claim {c.get('id', '?')} lacks '{key}'")
        if c["rule"].get("kind") not in RULES:
            raise BenchError(f"{path}: claim {c['id']}: unknown rule kind '{c['rule'].get('kind')}' "
                             f"(known: {', '.join(RULES)})")
    return spec


def _scope(view: ResultsView, rule: dict) -> tuple[list[str], list[str]]:
    """(datasets in scope with runs, datasets in scope without runs)."""
    wanted = rule.get("datasets", "all")
    if wanted in (None, "all"):
        wanted = ["beauty", "toys", "ml-1m", "steam"]
        wanted += [d for d in view.datasets if d not in wanted]
    have = set(view.datasets)
    return [d for d in wanted if d in have], [d for d in wanted if d not in have]


def _result(verdict: str, reason: str, evidence=None, columns=None, **extra) -> dict:
    assert verdict in VERDICTS
    return {"verdict": verdict, "reason": reason, "evidence": evidence or [], "columns": columns or [], **extra}


def _scope_note(absent_datasets: list, notes: list) -> str:
    parts = []
    if absent_datasets:
        parts.append(f"no runs on {', '.join(absent_datasets)}")
    parts += notes
    return ("; ".join(parts)) if parts else ""


def _baselines(view: ResultsView, dataset: str, target: str, cfg: dict) -> list[str]:
    allowed = {b.lower() for b in cfg.get("baselines", [])}
    return [m for m in view.main_models(dataset) if m != target and view.base(dataset, m).lower() in allowed]


def _target_and_baselines(view: ResultsView, dataset: str, target: str, cfg: dict, notes: list) -> list[str]:
    """The baselines run on ``dataset`` beside ``target``; [] (with a note why) when either is absent."""
    if target not in view.main_models(dataset):
        notes.append(f"{dataset}: no {target} run")
        return []
    bases = _baselines(view, dataset, target, cfg)
    if not bases:
        notes.append(f"{dataset}: no baseline run")
    return bases


def _paired_p(view, dataset, a, b, metric, mask=None) -> dict:
    ua, ub = view.per_user(dataset, a), view.per_user(dataset, b)
    if ua is None or ub is None:
        return stats.paired([], [])
    i = METRICS.index(metric)
    x, y = ua[i], ub[i]
    if mask is not None:
        x, y = x[mask], y[mask]
    return stats.paired(x, y)


def rule_beats_baselines(view: ResultsView, rule: dict, cfg: dict) -> dict:
    target, metrics, alpha = rule["target"], rule.get("metrics", list(METRICS)), cfg.get("alpha", 0.05)
    datasets, absent = _scope(view, rule)
    rows, notes = [], []
    for d in datasets:
        bases = _target_and_baselines(view, d, target, cfg, notes)
        if not bases:
            continue
        missing = [b for b in cfg.get("baselines", []) if b not in bases]
        if missing:
            notes.append(f"{d}: {len(bases)} of {len(cfg.get('baselines', []))} baselines "
                         f"(absent: {', '.join(missing)})")
        for metric in metrics:
            means = {m: view.mean(d, m, metric) for m in bases}
            best = max(means, key=lambda m: (means[m] if _finite(means[m]) else -math.inf))
            w = stats.welch(view.seeds(d, target, metric), view.seeds(d, best, metric))
            pr = _paired_p(view, d, target, best, metric)
            rows.append({"dataset": d, "metric": metric, "target": w["mean_a"], "best_baseline": best,
                         "baseline": w["mean_b"], "diff": w["diff"],
                         "improv_pct": 100 * (w["mean_a"] / w["mean_b"] - 1) if w["mean_b"] else math.nan,
                         "n_seeds": f"{w['n_a']}/{w['n_b']}", "welch_p": w["p"], "paired_p": pr["p_t"],
                         "beats": bool(w["mean_a"] > w["mean_b"])})
    cols = ["dataset", "metric", "target", "best_baseline", "baseline", "improv_pct", "n_seeds", "welch_p",
            "welch_p_holm", "paired_p_holm", "beats"]
    if not rows:
        return _result("not testable", _scope_note(absent, notes) or f"no {target} and baseline runs", columns=cols)
    _holm(rows, "welch_p")
    _holm(rows, "paired_p")
    scope = _scope_note(absent, notes)
    lost = [f"{r['dataset']} {r['metric']} ({r['best_baseline']})" for r in rows if not r["beats"]]
    if rule.get("require_significance"):
        if lost:
            return _result("does not hold", f"{target} is not above the best baseline in {len(lost)} of {len(rows)} "
                           f"cells: {', '.join(lost[:6])}" + (f"; scope: {scope}" if scope else ""), rows, cols)
        if any(not _finite(r["welch_p"]) for r in rows):
            return _result("not testable", "Welch's test needs at least two seeds per model; paired-over-users "
                           "p-values are in the evidence" + (f"; scope: {scope}" if scope else ""), rows, cols)
        weak = [f"{r['dataset']} {r['metric']}" for r in rows if not r["welch_p_holm"] < alpha]
        if weak:
            return _result("does not hold", f"not significant (Welch, Holm over {len(rows)} cells, alpha {alpha}) in "
                           f"{len(weak)} cells: {', '.join(weak[:6])}" + (f"; scope: {scope}" if scope else ""),
                           rows, cols)
        return _result("holds", f"significant in all {len(rows)} cells (Welch, Holm)" + (f"; scope: {scope}" if scope
                                                                                          else ""), rows, cols)
    if lost:
        return _result("does not hold", f"{target} is not above the best baseline in {len(lost)} of {len(rows)} cells: "
                       f"{', '.join(lost[:6])}" + (f"; scope: {scope}" if scope else ""), rows, cols)
    return _result("holds", f"{target} has the highest seed mean in all {len(rows)} cells"
                   + (f"; scope: {scope}" if scope else ""), rows, cols)


def _holm(rows: list, column: str) -> None:
    adj = stats.holm([r.get(column, math.nan) for r in rows])
    for r, a in zip(rows, adj):
        r[f"{column}_holm"] = float(a)


def _paper_improvements(rule: dict, cfg: dict) -> tuple[dict, str]:
    """{dataset: {metric: percent}} from table2.csv (DiffuRec over the best baseline), else the YAML's."""
    embedded = rule.get("paper_improvement_pct") or {}
    if PAPER_TABLE2.exists():
        frame = pd.read_csv(PAPER_TABLE2)
        out = {}
        for (d, metric), g in frame.groupby(["dataset", "metric"]):
            target = g.loc[g["model"] == rule["target"], "value_percent"]
            base = g.loc[g["model"].isin(cfg.get("baselines", [])), "value_percent"]
            if len(target) and len(base):
                out.setdefault(d, {})[metric] = round(100 * (float(target.iloc[0]) / float(base.max()) - 1), 2)
        return out, "bench/paper_tables/table2.csv"
    return embedded, "bench/claims.yaml"


def rule_improvement_matches(view: ResultsView, rule: dict, cfg: dict) -> dict:
    target, metrics = rule["target"], rule.get("metrics", list(METRICS))
    paper, source = _paper_improvements(rule, cfg)
    embedded = rule.get("paper_improvement_pct") or {}
    datasets, absent = _scope(view, rule)
    rows, notes = [], []
    for d in datasets:
        if d not in paper:
            notes.append(f"{d}: not in the paper's Table 2")
            continue
        bases = _target_and_baselines(view, d, target, cfg, notes)
        if not bases:
            continue
        if len(bases) < len(cfg.get("baselines", [])):
            notes.append(f"{d}: best of {len(bases)} baselines only (the paper's best may be absent)")
        for metric in metrics:
            means = {m: view.mean(d, m, metric) for m in bases}
            best = max(means, key=lambda m: (means[m] if _finite(means[m]) else -math.inf))
            a, b = view.seeds(d, target, metric), view.seeds(d, best, metric)
            mb = float(b.mean()) if len(b) else math.nan
            ours = 100 * (a.mean() / mb - 1) if len(a) and mb else math.nan
            lo, hi = _welch_interval(a, b)
            lo, hi = (100 * lo / mb, 100 * hi / mb) if mb else (math.nan, math.nan)
            pv = paper.get(d, {}).get(metric, math.nan)
            rows.append({"dataset": d, "metric": metric, "best_baseline": best, "ours_pct": ours, "ci_low_pct": lo,
                         "ci_high_pct": hi, "paper_pct": pv, "paper_column_pct": embedded.get(d, {}).get(metric),
                         "paper_in_ci": bool(lo <= pv <= hi) if _finite(lo) and _finite(pv) else None})
    cols = ["dataset", "metric", "best_baseline", "ours_pct", "ci_low_pct", "ci_high_pct", "paper_pct", "paper_in_ci"]
    scope = _scope_note(absent, notes)
    if not rows:
        return _result("not testable", scope or f"no {target} and baseline runs", columns=cols, paper_source=source)
    judged = [r for r in rows if r["paper_in_ci"] is not None]
    if len(judged) < len(rows):
        return _result("not testable", f"no 95% interval of our improvement in {len(rows) - len(judged)} of "
                       f"{len(rows)} cells (it needs at least two seeds per model and a best baseline above 0); "
                       "our point estimates are in the evidence" + (f"; scope: {scope}" if scope else ""), rows,
                       cols, paper_source=source)
    outside = [r for r in rows if not r["paper_in_ci"]]
    med = float(np.nanmedian([r["ours_pct"] for r in rows]))
    if outside:
        return _result("does not hold", f"the paper's improvement lies outside our 95% interval in {len(outside)} of "
                       f"{len(rows)} cells (our median improvement {med:.1f}%)"
                       + (f"; scope: {scope}" if scope else ""),
                       rows, cols, paper_source=source)
    return _result("holds", f"the paper's improvement lies inside our 95% interval in all {len(rows)} cells"
                   + (f"; scope: {scope}" if scope else ""), rows, cols, paper_source=source)


def _comparable(view: ResultsView, dataset: str, target: str, params: set) -> dict:
    """{model: record params} of target runs differing from the main one at most in ``params``."""
    main = [m for m in view.main_models(dataset) if view.base(dataset, m) == target]
    if not main:
        return {}
    protocol = view.first(dataset, main[0]).get("protocol")
    out = {}
    for m in view.models(dataset):
        first = view.first(dataset, m)
        if view.base(dataset, m) != target or first.get("protocol") != protocol:
            continue
        if view.variant_keys(dataset, m) - {"protocol"} - params:
            continue
        out[m] = first.get("params") or {}
    return out


def rule_best_setting(view: ResultsView, rule: dict, cfg: dict) -> dict:
    target, param, best = rule["target"], rule["param"], rule["best"]
    metrics, share_needed = rule.get("metrics", list(METRICS)), float(rule.get("min_share", 1.0))
    datasets, absent = _scope(view, rule)
    rows, notes = [], []
    for d in datasets:
        candidates = _comparable(view, d, target, {param})
        by_value = {}
        for m in sorted(candidates, key=lambda m: (len(view.variant_keys(d, m)), m)):
            value = candidates[m].get(param)
            if value is not None and not any(_same_value(value, v) for v in by_value):
                by_value[value] = m
        best_key = next((v for v in by_value if _same_value(v, best)), None)
        if best_key is None or len(by_value) < 2:
            notes.append(f"{d}: {target} runs with {param} = {best} and another value needed "
                         f"(have: {', '.join(map(str, by_value)) or 'none'})")
            continue
        for metric in metrics:
            means = {v: view.mean(d, m, metric) for v, m in by_value.items()}
            others = {v: x for v, x in means.items() if v is not best_key}
            runner = max(others, key=lambda v: others[v] if _finite(others[v]) else -math.inf)
            winner = max(means, key=lambda v: means[v] if _finite(means[v]) else -math.inf)
            w = stats.welch(view.seeds(d, by_value[best_key], metric), view.seeds(d, by_value[runner], metric))
            rows.append({"dataset": d, "metric": metric, "claimed": means[best_key], "best_other": str(runner),
                         "other": means[runner], "winner": str(winner),
                         "values": ", ".join(f"{v}={_pct(x)}" for v, x in means.items()),
                         "welch_p": w["p"], "claimed_wins": bool(means[best_key] > others[runner])})
    cols = ["dataset", "metric", "values", "winner", "best_other", "welch_p", "welch_p_holm", "claimed_wins"]
    scope = _scope_note(absent, notes)
    if not rows:
        return _result("not testable", f"no {target} runs differing only in {param}" + (f" ({scope})" if scope else ""),
                       columns=cols)
    _holm(rows, "welch_p")
    wins = sum(r["claimed_wins"] for r in rows)
    share = wins / len(rows)
    text = (f"{param} = {best} has the highest mean in {wins} of {len(rows)} cells ({100 * share:.0f}%; "
            f"needed {100 * share_needed:.0f}%)" + (f"; scope: {scope}" if scope else ""))
    return _result("holds" if share >= share_needed else "does not hold", text, rows, cols)


def rule_beats_variant(view: ResultsView, rule: dict, cfg: dict) -> dict:
    target, param, value = rule["target"], rule["param"], rule["value"]
    metrics = rule.get("metrics", list(METRICS))
    datasets, absent = _scope(view, rule)
    rows, notes = [], []
    for d in datasets:
        candidates = _comparable(view, d, target, {param})
        main = sorted((m for m in candidates if not view.variant_keys(d, m) - {"protocol"}),
                      key=lambda m: (len(view.variant_keys(d, m)), m))
        variants = sorted((m for m, p in candidates.items() if m not in main and _same_value(p.get(param), value)),
                          key=lambda m: (len(view.variant_keys(d, m)), m))
        if not main or not variants:
            notes.append(f"{d}: needs {target} and a {target} variant with {param} = {value}")
            continue
        a, b = main[0], variants[0]
        for metric in metrics:
            w = stats.welch(view.seeds(d, a, metric), view.seeds(d, b, metric))
            pr = _paired_p(view, d, a, b, metric)
            rows.append({"dataset": d, "metric": metric, "target": w["mean_a"], "variant": b,
                         "variant_mean": w["mean_b"],
                         "change_pct": 100 * (w["mean_b"] / w["mean_a"] - 1) if w["mean_a"] else math.nan,
                         "welch_p": w["p"], "paired_p": pr["p_t"], "beats": bool(w["mean_a"] > w["mean_b"])})
    cols = ["dataset", "metric", "target", "variant", "variant_mean", "change_pct", "welch_p_holm", "paired_p_holm",
            "beats"]
    scope = _scope_note(absent, notes)
    if not rows:
        return _result("not testable", scope or "no runs", columns=cols)
    _holm(rows, "welch_p")
    _holm(rows, "paired_p")
    lost = [f"{r['dataset']} {r['metric']}" for r in rows if not r["beats"]]
    if lost:
        return _result("does not hold", f"the variant ({param} = {value}) is not below {target} in {len(lost)} of "
                       f"{len(rows)} cells: {', '.join(lost[:6])}" + (f"; scope: {scope}" if scope else ""), rows, cols)
    return _result("holds", f"{target} is above the {param} = {value} variant in all {len(rows)} cells"
                   + (f"; scope: {scope}" if scope else ""), rows, cols)


def _groups(info: dict, kind: str) -> list[tuple[str, np.ndarray]]:
    if kind == "head_tail":
        head = info["test_is_head"]
        return [("head", head), ("long-tail", ~head)]
    if kind == "length":
        group, _, labels = stats.length_groups(info["hist_len"])
        return [(label, group == i) for i, label in enumerate(labels)]
    raise BenchError(f"unknown group kind '{kind}' (known: head_tail, length)")


def rule_beats_baselines_in_groups(view: ResultsView, rule: dict, cfg: dict) -> dict:
    target, kind = rule["target"], rule["groups"]
    metrics = rule.get("metrics", ["HR@10", "NDCG@10"])
    datasets, absent = _scope(view, rule)
    rows, notes = [], []
    for d in datasets:
        info = view.info(d)
        bases = _baselines(view, d, target, cfg)
        if target not in view.main_models(d) or not bases or info is None:
            notes.append(f"{d}: needs {target}, a baseline and readable ranks")
            continue
        mats = {m: view.per_user(d, m) for m in [target, *bases]}
        if mats[target] is None:
            notes.append(f"{d}: no readable ranks of {target}")
            continue
        for gname, mask in _groups(info, kind):
            if not mask.any():
                notes.append(f"{d}: group {gname} is empty")
                continue
            for metric in metrics:
                i = METRICS.index(metric)
                means = {m: float(np.nanmean(x[i, mask])) for m, x in mats.items() if x is not None}
                base_means = {m: v for m, v in means.items() if m != target}
                if not base_means:
                    continue
                best = max(base_means, key=lambda m: base_means[m])
                pr = stats.paired(mats[target][i, mask], mats[best][i, mask])
                rows.append({"dataset": d, "group": gname, "metric": metric, "n_users": int(mask.sum()),
                             "target": means[target], "best_baseline": best, "baseline": means[best],
                             "paired_p": pr["p_t"], "beats": bool(means[target] > means[best])})
    cols = ["dataset", "group", "metric", "n_users", "target", "best_baseline", "baseline", "paired_p_holm", "beats"]
    scope = _scope_note(absent, notes)
    if not rows:
        return _result("not testable", scope or "no runs", columns=cols)
    _holm(rows, "paired_p")
    lost = [f"{r['dataset']} {r['group']} {r['metric']}" for r in rows if not r["beats"]]
    if lost:
        return _result("does not hold", f"{target} is not above the best baseline in {len(lost)} of {len(rows)} "
                       f"group cells: {', '.join(lost[:6])}" + (f"; scope: {scope}" if scope else ""), rows, cols)
    return _result("holds", f"{target} is above every baseline in all {len(rows)} group cells"
                   + (f"; scope: {scope}" if scope else ""), rows, cols)


def rule_group_order(view: ResultsView, rule: dict, cfg: dict) -> dict:
    kind, better, worse = rule["groups"], rule["better"], rule["worse"]
    metrics = rule.get("metrics", ["HR@10", "NDCG@10"])
    datasets, absent = _scope(view, rule)
    rows, notes = [], []
    for d in datasets:
        info = view.info(d)
        if info is None:
            notes.append(f"{d}: no readable ranks")
            continue
        groups = dict(_groups(info, kind))
        if better not in groups or worse not in groups or not groups[better].any() or not groups[worse].any():
            notes.append(f"{d}: group {better} or {worse} empty")
            continue
        for m in view.main_models(d):
            mat = view.per_user(d, m)
            if mat is None:
                continue
            for metric in metrics:
                i = METRICS.index(metric)
                x, y = mat[i, groups[better]], mat[i, groups[worse]]
                w = stats.welch(x, y)
                rows.append({"dataset": d, "model": m, "metric": metric, "better_group": w["mean_a"],
                             "worse_group": w["mean_b"], "welch_p": w["p"], "holds": bool(w["mean_a"] > w["mean_b"])})
    cols = ["dataset", "model", "metric", "better_group", "worse_group", "welch_p_holm", "holds"]
    scope = _scope_note(absent, notes)
    if not rows:
        return _result("not testable", scope or "no runs", columns=cols)
    _holm(rows, "welch_p")
    lost = [f"{r['dataset']} {r['model']} {r['metric']}" for r in rows if not r["holds"]]
    verdict = "does not hold" if lost else "holds"
    text = (f"{better} above {worse} in {len(rows) - len(lost)} of {len(rows)} (model, metric) cells"
            + (f"; not in: {', '.join(lost[:6])}" if lost else "") + (f"; scope: {scope}" if scope else "")
            + "; Welch over users (unpaired: the groups hold different users)")
    return _result(verdict, text, rows, cols)


def _loss_epoch(curve: list, frac: float = 0.05) -> int | None:
    """First epoch (1-based) whose training loss is within ``frac`` of the total drop of its minimum."""
    losses = [c.get("train_loss") for c in curve or [] if _finite(c.get("train_loss"))]
    if len(losses) < 2:
        return None
    lo, first = min(losses), losses[0]
    if first <= lo:
        return 1
    return next(i + 1 for i, v in enumerate(losses) if v - lo <= frac * (first - lo))


def rule_converges_faster(view: ResultsView, rule: dict, cfg: dict) -> dict:
    target, other, d = rule["target"], rule["other"], rule["dataset"]
    cols = ["model", "seed", "epochs_to_best", "loss_epoch", "epochs_run", "epoch_cap", "censored"]
    if d not in view.datasets:
        return _result("not testable", f"no runs on {d}", columns=cols)
    rows = {}
    for model in (target, other):
        if model not in view.main_models(d):
            return _result("not testable", f"no {model} run on {d}", columns=cols)
        rows[model] = []
        for r in view.by_model[(d, model)]:
            best = (r.get("checkpoint") or {}).get("best_epoch")
            run = (r.get("timing") or {}).get("epochs_run", len(r.get("curve") or []))
            cap = (r.get("params") or {}).get("epochs")
            if best is None:
                continue
            rows[model].append({"model": model, "seed": r.get("seed"), "epochs_to_best": int(best) + 1,
                                "loss_epoch": _loss_epoch(r.get("curve")), "epochs_run": run, "epoch_cap": cap,
                                "censored": bool(cap is not None and run is not None and run >= cap)})
        if not rows[model]:
            return _result("not testable", f"{model} records on {d} carry no checkpoint.best_epoch", columns=cols)
    evidence = rows[target] + rows[other]
    t = np.array([r["epochs_to_best"] for r in rows[target]], float)
    o = np.array([r["epochs_to_best"] for r in rows[other]], float)
    w = stats.welch(t, o)
    summary = (f"epochs to the best validation checkpoint: {target} {t.mean():.1f}, {other} {o.mean():.1f} "
               f"(Welch p {_p(w['p'])})")
    t_cens = sum(r["censored"] for r in rows[target])
    o_cens = sum(r["censored"] for r in rows[other])
    if t_cens:
        return _result("not testable", f"{target} ran to the epoch cap in {t_cens} of {len(t)} seeds, so its "
                       f"convergence point is not observed at this budget; {summary}", evidence, cols, welch_p=w["p"])
    if t.mean() < o.mean():
        note = f"; {other} ran to the epoch cap in {o_cens} seeds (its value is a lower bound)" if o_cens else ""
        return _result("holds", summary + note, evidence, cols, welch_p=w["p"])
    if o_cens:
        return _result("not testable", f"{other} ran to the epoch cap in {o_cens} of {len(o)} seeds and {target} "
                       f"needed as many epochs or more; {summary}", evidence, cols, welch_p=w["p"])
    return _result("does not hold", summary, evidence, cols, welch_p=w["p"])


RULES = {
    "beats_baselines": rule_beats_baselines,
    "improvement_matches": rule_improvement_matches,
    "best_setting": rule_best_setting,
    "beats_variant": rule_beats_variant,
    "beats_baselines_in_groups": rule_beats_baselines_in_groups,
    "group_order": rule_group_order,
    "converges_faster": rule_converges_faster,
}


def evaluate_claims(records_or_view, claims_file=CLAIMS_FILE) -> list[dict]:
    """Every claim of ``claims_file`` with its verdict, reason and evidence."""
    view = records_or_view if isinstance(records_or_view, ResultsView) else ResultsView(records_or_view)
    spec = load_claims(claims_file)
    cfg = {"alpha": spec.get("alpha", 0.05), "baselines": spec.get("baselines", [])}
    out = []
    for claim in spec["claims"]:
        head = {k: claim[k] for k in ("id", "statement", "source")}
        head["rule"] = claim["rule"]
        try:
            res = RULES[claim["rule"]["kind"]](view, claim["rule"], cfg)
        except (KeyError, ValueError, BenchError) as err:
            res = _result("not testable", f"rule could not be evaluated: {type(err).__name__}: {err}")
        out.append({**head, **res})
    return out


# =========================================================================== environment
def environment_section(records: list) -> dict:
    from bench.runner import environment

    current = dict(environment())
    groups = Counter()
    flagged = []
    for r in records:
        env = r.get("env") or {}
        groups[tuple(str(env.get(k, "–")) for k in ENV_KEYS)] += 1
        diff = {k: {"record": env.get(k), "now": current.get(k)} for k in VERSION_KEYS
                if str(env.get(k)) != str(current.get(k))}
        if diff:
            flagged.append({"run": _run_id(r), "differs": diff})
    return {"current": current, "keys": list(ENV_KEYS),
            "groups": [{**dict(zip(ENV_KEYS, key)), "runs": n} for key, n in groups.most_common()],
            "flagged": flagged}


# =========================================================================== the audit
def audit(profile_name: str, results_dir, data_dir=None, run_determinism: bool = True,
          claims_file=CLAIMS_FILE) -> dict:
    """Everything of ``bench check`` as one JSON-able dict."""
    t0 = time.perf_counter()
    profile = load_profile(profile_name)
    data = _Data(data_dir)
    result = {"profile": profile["name"], "results_dir": str(Path(results_dir).resolve()),
              "data_dir": str(resolve_data_dir(data_dir)),
              "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}
    result["integrity"] = integrity(profile, results_dir, data)
    if run_determinism:
        result["determinism"] = determinism(profile, results_dir, data_dir)
    else:
        result["determinism"] = {"status": "skipped", "reason": "--skip-determinism", "runs": [],
                                 "plan": {**DETERMINISM_DEFAULTS, **(profile.get("determinism") or {})}}
    records = store.load_records(results_dir, profile["name"], status=None)
    view = ResultsView(records)
    result["protocol_sensitivity"] = protocol_sensitivity(view)
    result["claims"] = evaluate_claims(view, claims_file)
    result["environment"] = environment_section([r for r in records if r.get("status") == "ok"])
    result["seconds"] = round(time.perf_counter() - t0, 1)
    return result


def _evidence_md(claim: dict) -> str:
    cols, rows = claim.get("columns") or [], claim.get("evidence") or []
    if not rows or not cols:
        return ""
    pct_cols = {"target", "baseline", "variant_mean", "claimed", "other", "clean", "paper", "better_group",
                "worse_group"}

    def cell(col, v):
        if isinstance(v, bool):
            return "yes" if v else "no"
        if v is None:
            return "–"
        if col.endswith("_p") or col.endswith("_holm") or col.endswith("_p_t"):
            return _p(v)
        if col in pct_cols:
            return _pct(v)
        if col.endswith("_pct"):
            return _num(v, "{:.2f}")
        if isinstance(v, float):
            return _num(v)
        return str(v)

    return _md_table(cols, [[cell(c, r.get(c)) for c in cols] for r in rows])


def _rule_text(rule: dict) -> str:
    shown = {k: v for k, v in rule.items() if not isinstance(v, dict)}
    hidden = [k for k in rule if k not in shown]
    return json.dumps(shown, default=str) + (f" (+ {', '.join(hidden)}: see claims.yaml)" if hidden else "")


def render_md(result: dict) -> str:
    integ, det, prot = result["integrity"], result["determinism"], result["protocol_sensitivity"]
    verdict = "PASS" if integ["passed"] else "FAIL"
    lines = [f"# Audit of profile `{result['profile']}`", "",
             f"Results: `{result['results_dir']}`; data: `{result['data_dir']}`; {result['created']}; "
             f"{result['seconds']} s.", "",
             f"- **Integrity: {verdict}** — {integ['n_checked']} ok records checked, {integ['n_failed_checks']} "
             f"with problems; {len(integ['failed_runs'])} failed runs, {len(integ['missing_runs'])} missing of "
             f"{integ['n_expected']} expected.",
             f"- **Determinism: {det['status']}**" + (f" — {det['reason']}" if det.get("reason") else ""),
             f"- **Protocol sensitivity:** {prot['status']}",
             "- **Claims:** " + ", ".join(f"{c['id']} *{c['verdict']}*" for c in result["claims"]),
             f"- **Environment:** {len(result['environment']['flagged'])} records with versions other than now", ""]

    lines += ["## 1. Integrity", "",
              "Each ok record: stored metrics recompute exactly from `ranks.npz` (paper protocol: metric m from "
              "`test@m`; `ranks_sha256` checked when recorded); `config_hash` matches the record's own config; the config resolved today from the profile "
              "and model YAML hashes to the same value (else stale); data checksum, test items, history lengths "
              "and head flags match the data.", ""]
    bad = [c for c in integ["records"] if c["problems"]]
    if bad:
        lines += ["### Records failing the check", ""]
        lines += [_md_table(["Run", "Problem"], [[c["run"], p] for c in bad for p in c["problems"]])]
    else:
        lines += [f"All {integ['n_checked']} ok records pass.", ""]
    data_rows = [[d, "available" if i["available"] else "data unavailable",
                  i.get("sha256", "")[:16] if i["available"] else i["reason"]] for d, i in integ["data"].items()]
    if data_rows:
        lines += ["### Data", "", _md_table(["Dataset", "Status", "SHA-256 / reason"], data_rows)]
    lines += ["### Missing runs", ""]
    lines += ([_md_table(["Run", "Reason"], [[m["run"], m["reason"]] for m in integ["missing_runs"]])]
              if integ["missing_runs"] else ["None: every run of the profile's grid has a record.", ""])
    lines += ["### Failed runs", ""]
    failed = [[f["run"], f["error"]] for f in integ["failed_runs"]]
    failed += [[f["run"] + " (re-run failed; ok record kept)", f["error"]] for f in integ["failed_reruns"]]
    lines += [_md_table(["Run", "Error"], failed)] if failed else ["None.", ""]
    if integ["outside_grid"]:
        lines += ["### Records outside the profile's grid", "", ", ".join(integ["outside_grid"]), ""]

    lines += ["## 2. Determinism", ""]
    plan = det.get("plan") or {}
    lines += [f"Plan: models {plan.get('models')}, dataset {plan.get('dataset')}, seed {plan.get('seed')}, "
              f"max_users {plan.get('max_users')}, epochs {plan.get('epochs')} (profile key `determinism`). Each run "
              "is trained twice into a temporary store and its rank arrays compared exactly. A comparison with the "
              "stored record is made only when its config hash equals the reduced run's.", ""]
    if det.get("runs"):
        rows = []
        for r in det["runs"]:
            vs = r.get("vs_stored")
            rows.append([r["run"], r["status"], r.get("error") or
                         f"{r.get('users_changed_any')} of {r.get('n_users')} users differ "
                         f"(test {r.get('users_changed_test')}, valid {r.get('users_changed_valid')})",
                         "–" if not vs else ("identical" if vs["identical"]
                                             else f"{vs['users_changed_any']} users differ"),
                         f"{r['seconds']}"])
        lines += [_md_table(["Run", "Status", "Rerun A vs B", "Vs stored", "s"], rows)]
    else:
        lines += [f"{det['status']}: {det.get('reason', '')}", ""]

    lines += ["## 3. Protocol sensitivity", ""]
    for name, text in PROTOCOL_TEXT.items():
        lines += [f"- **{name}**: {text}"]
    lines += [""]
    if prot["rows"]:
        lines += [_md_table(["Dataset", "Model", "clean run", "paper run"],
                            [[p["dataset"], p["base_model"], p["clean"], p["paper"]] for p in prot["pairs"]])]
        for base in sorted({p["base_model"] for p in prot["pairs"]}):
            changed = prot["params_changed"].get(base)
            if not changed:
                lines += [f"{base}: no param differs between the two runs; only the checkpoint rule changes.", ""]
                continue
            lines += [f"Params of {base} that differ between the protocols (from the records):", ""]
            lines += [_md_table(["Param", "clean", "paper", "Meaning (model YAML)"],
                                [[k, _short(v["clean"]), _short(v["paper"]), v["meaning"]]
                                 for k, v in changed.items()])]
        lines += [_md_table(["Dataset", "Model", "Metric", "clean", "paper", "paper − clean", "Rel. %", "Seeds",
                             "Paired p (Holm)"],
                            [[r["dataset"], r["base_model"], r["metric"], _pct(r["clean"]), _pct(r["paper"]),
                              _pct(r["diff"]), _num(r["rel_pct"], "{:+.1f}"),
                              f"{r['n_seeds_clean']}/{r['n_seeds_paper']}", _p(r.get("paired_p_holm"))]
                             for r in prot["rows"]])]
        lines += ["Values in percent, seed means; paired t-test over users (per-user values averaged over seeds), "
                  "Holm over this table.", ""]
    else:
        lines += ["Not run in this profile: no DiffuRec or SASRec records under both protocols (the `paper` runs are "
                  "variants such as `DiffuRec-paper` with `params: {protocol: paper}`).", ""]

    lines += ["## 4. Claims", "",
              _md_table(["Id", "Source", "Verdict", "Reason"],
                        [[c["id"], c["source"], f"**{c['verdict']}**", c["reason"]] for c in result["claims"]])]
    for c in result["claims"]:
        lines += [f"### {c['id']}: {c['verdict']}", "", f"> {c['statement']} ({c['source']})", "",
                  f"Rule: `{_rule_text(c['rule'])}`", "", c["reason"], ""]
        ev = _evidence_md(c)
        if ev:
            lines += [ev]
    lines += ["Metric values in percent. p-values: Welch over seeds or paired t-test over users, Holm-adjusted "
              "over the cells of each claim (`*_holm`).", ""]

    env = result["environment"]
    lines += ["## 5. Environment", "", "This check:", "",
              _md_table(["Key", "Value"], [[k, str(v)] for k, v in env["current"].items()]), "Records:", "",
              _md_table([*env["keys"], "runs"], [[*(g[k] for k in env["keys"]), g["runs"]] for g in env["groups"]])]
    if env["flagged"]:
        lines += ["Records whose versions differ from this environment:", "",
                  _md_table(["Run", "Differs"], [[f["run"], ", ".join(f"{k} {v['record']} (now {v['now']})"
                                                                     for k, v in f["differs"].items())]
                                                 for f in env["flagged"]])]
    else:
        lines += ["Every record was made with the current Python, torch, RecBole and numpy versions.", ""]
    return "\n".join(lines) + "\n"


def write_audit(result: dict, reports_dir) -> tuple[Path, Path]:
    folder = Path(reports_dir) / result["profile"]
    folder.mkdir(parents=True, exist_ok=True)
    md, js = folder / "audit.md", folder / "audit.json"
    store.write_json(js, _jsonable(result))
    md.write_text(render_md(result))
    return md, js


def cmd_check(args) -> int:
    result = audit(args.profile, args.results_dir, args.data_dir, run_determinism=not args.skip_determinism)
    md, _ = write_audit(result, args.reports_dir)
    integ = result["integrity"]
    print(f"integrity: {'PASS' if integ['passed'] else 'FAIL'} ({integ['n_checked']} records, "
          f"{integ['n_failed_checks']} with problems, {len(integ['missing_runs'])} missing, "
          f"{len(integ['failed_runs'])} failed)")
    for c in integ["records"]:
        for p in c["problems"]:
            print(f"  {c['run']}: {p}")
    print(f"determinism: {result['determinism']['status']}")
    for c in result["claims"]:
        print(f"claim {c['id']}: {c['verdict']}")
    print(f"wrote {md} and audit.json")
    return 0 if integ["passed"] else 1


# =========================================================================== reproduce
def _find_record_dir(record_dir: str, results_dir) -> Path:
    for path in (Path(record_dir), Path(results_dir) / record_dir):
        if (path / "record.json").exists():
            return path
    raise BenchError(f"no record.json in {record_dir} (nor under --results-dir {results_dir})")


def reproduce(record_dir, results_dir=None, data_dir=None, profile_name=None, keep=False) -> dict:
    """Re-run one record into a temporary store and compare it with the original."""
    from bench.runner import run_entry

    folder = _find_record_dir(str(record_dir), results_dir or ".")
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
        differences += _key_differences(expected, own)
        mode = "pinned to the record's params (the config resolved today differs)"
        profile = copy.deepcopy(profile)
        for key in ("max_users", "max_train_prefixes"):
            profile[key] = (record.get("budget") or {}).get(key)
        pinned = {**(record.get("params") or {}), "protocol": record["protocol"]}
        entry = dataclasses.replace(entry, variant=tuple(sorted(pinned.items())))
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
        out = {"run": _run_id(record), "dir": str(folder), "profile": profile["name"], "mode": mode,
               "differences": differences, "status": status, "seconds": seconds, "threads": threads_then,
               "rerun_dir": str(tmp) if keep else None}
        if status != "ok":
            out.update(identical=False, error=_error_text(rerun))
            return out
        ranks1 = store.read_ranks(store.run_dir(tmp, profile["name"], entry.dataset, entry.model, entry.seed))
        shared = {k: v for k, v in ranks0.items() if k in ranks1}
        cmp = compare_ranks(shared, {k: ranks1[k] for k in shared})
        lost = sorted(set(ranks0) - set(ranks1))
        metrics = []
        for split in ("test", "valid"):
            for m in METRICS:
                a = ((record.get("metrics") or {}).get(split) or {}).get(m)
                b = ((rerun.get("metrics") or {}).get(split) or {}).get(m)
                metrics.append({"split": split, "metric": m, "recorded": a, "rerun": b,
                                "diff": (b - a) if _finite(a) and _finite(b) else math.nan})
        out.update(identical=cmp["identical"] and not lost, ranks=cmp, arrays_not_rerun=lost, metrics=metrics)
        return out
    finally:
        torch.set_num_threads(threads_now)
        if not keep:
            shutil.rmtree(tmp, ignore_errors=True)


def cmd_reproduce(args) -> int:
    res = reproduce(args.record_dir, args.results_dir, args.data_dir, args.profile, args.keep)
    print(f"reproduce {res['run']} (profile {res['profile']}; {res['mode']}; {res.get('threads')} threads as recorded)")
    for d in res["differences"][:12]:
        print(f"  note: {d}")
    if res["status"] != "ok":
        print(f"rerun FAILED: {res.get('error')}")
        return 1
    print(f"{'split':6s} {'metric':8s} {'recorded':>10s} {'rerun':>10s} {'diff':>11s}")
    for m in res["metrics"]:
        print(f"{m['split']:6s} {m['metric']:8s} {_num(m['recorded'], '{:10.6f}'):>10s} "
              f"{_num(m['rerun'], '{:10.6f}'):>10s} {_num(m['diff'], '{:+11.2e}'):>11s}")
    r = res["ranks"]
    print(f"users whose rank changed: test {r['users_changed_test']}, valid {r['users_changed_valid']}, "
          f"any stored ranking {r['users_changed_any']} (of {r['n_users']})")
    if res["arrays_not_rerun"]:
        print(f"arrays not produced by the rerun: {', '.join(res['arrays_not_rerun'])}")
    if res["rerun_dir"]:
        print(f"rerun kept in {res['rerun_dir']}")
    print(f"{'IDENTICAL' if res['identical'] else 'DIFFERENT'} ({res['seconds']:.1f} s)")
    return 0 if res["identical"] else 1


# =========================================================================== CLI
def add_check_parser(sub, common) -> None:
    parser = sub.add_parser("check", help="audit a profile's results: integrity, determinism, protocol, claims, env")
    common(parser)
    parser.add_argument("--skip-determinism", action="store_true", help="do not re-run the determinism set")
    parser.set_defaults(func=cmd_check)


def add_reproduce_parser(sub, common) -> None:
    parser = sub.add_parser("reproduce", help="re-run one record into a temporary store and compare")
    common(parser, profile=False)
    parser.add_argument("record_dir", help="a run folder (…/<profile>/<dataset>/<model>/seed-<S>), or relative to "
                                           "--results-dir")
    parser.add_argument("--profile", default=None, help="profile name or YAML (default: the record's profile)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary store of the rerun")
    parser.set_defaults(func=cmd_reproduce)
