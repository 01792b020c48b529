"""Identical, equivalent or different: a rerun's rankings against its record's, and why.

The vocabulary of ``bench reproduce`` (one record rerun, often on another machine) and
of ``bench check``'s determinism section (the same run twice on this machine):

* **identical** — every stored ranking (``test``, ``valid``, ``test@…``) and every
  per-user array is bit-for-bit equal.
* **equivalent** — the rankings differ only as floating-point reduction order explains.
  All of (E1)–(E5) hold:

  - (E1) the environments differ in something that changes floating-point order
    (``FLOAT_ORDER_KEYS``: CPU model or its vector extensions, torch's kernel
    dispatch, a BLAS build, the thread count, torch/numpy versions, the device or its
    precision flags).  A key the record does not carry ("not recorded") is no evidence.
  - (E2) the same users and data: ``users``, ``hist_len``, ``test_item`` and
    ``test_is_head`` equal, and every stored ranking was rerun.
  - (E3) few users moved: at most ``MAX_MOVED_FRACTION`` of the users changed rank in
    any stored ranking.
  - (E4) no direction: in every ranking the users who moved up and those who moved
    down are as balanced as coin flips (exact two-sided sign test, Holm over the
    rankings, adjusted p ≥ ``ALPHA``).
  - (E5) every metric (HR/NDCG @5/10/20) of every ranking moved by at most its
    tolerance ``max(SE_FACTOR · se, 1/n)``: se = sd(recorded per-user values) / √n,
    the metric's own standard error over the users; 1/n = one user crossing the cutoff,
    the metric's resolution.

* **different** — anything else; on an identical environment any change is different.

Why these thresholds (docs/operations.md, "bench reproduce"): a float-order change perturbs scores by a
few units in the last place; training amplifies them, but in the measured cross-CPU
reruns (Intel Xeon against AMD EPYC, 2 threads) only 4 test + 5 validation ranks of
2,000 users (SASRec) and 10 + 9, 80 in any stored ranking (DiffuRec: 4 %) moved, with
every SASRec metric equal.  Another seed moves 99.6–99.8 % of users (median |Δrank|
about 800–950 on the quick Beauty records), so 10 % separates the two with a wide
margin either side.  A perturbation without direction moves users up and down alike; a
bug or another code path moves them one way, which the sign test sees with ten movers
(p = 0.002).  The metric tolerance is the metric's sampling error over users, which on
the quick records is also the size of the seed-to-seed standard deviation (0.2–1.3 ×, median 0.85):
a rerun within it changes no published number by more than the seeds already vary.
"""
from __future__ import annotations

import json
import math
import re

import numpy as np
from scipy import stats as sps

from bench import store
from bench.stats import holm, paired

VERDICTS = ("identical", "equivalent", "different")
EXIT_CODES = {"identical": 0, "equivalent": 3, "different": 1}  # 2 is "bad input" (bench.cli.main)
MAX_MOVED_FRACTION = 0.10
ALPHA = 0.05
SE_FACTOR = 1.0
CUTOFFS = (5, 10, 20)
METRICS = store.METRICS
DATA_ARRAYS = ("users", "hist_len", "test_item", "test_is_head")  # must match exactly: same users, same data

# (key, changes floating-point order?) in the order they are shown
ENV_ROWS = (("cpu", True), ("cpu_flags", True), ("cpu_capability", True), ("blas_torch", True),
            ("blas_numpy", True), ("threads", True), ("torch", True), ("numpy", True), ("device", True),
            ("precision", True), ("python", False), ("recbole", False), ("platform", False),
            ("git_revision", False), ("git_dirty", False), ("code_diff_sha256", False))
FLOAT_ORDER_KEYS = tuple(k for k, float_order in ENV_ROWS if float_order)
NOT_RECORDED = "not recorded"

RULE_TEXT = (
    "identical: every stored ranking bit-for-bit equal. equivalent: the environments differ in something that "
    "changes floating-point order (CPU model or vector extensions, torch kernel dispatch, BLAS, threads, "
    f"torch/numpy versions, device, precision flags), the same users and data, at most "
    f"{MAX_MOVED_FRACTION:.0%} of users moved in any stored ranking, no direction (sign test of up vs down "
    f"movers per ranking, Holm, p ≥ {ALPHA}), and every metric within max({SE_FACTOR:g} × its standard error "
    "over users, 1/n). different: anything else, or any change on an identical environment.")


# =========================================================================== environment
def shown(value) -> str:
    """An environment value as one line ('not recorded' for None; dicts as k=v pairs)."""
    if value is None:
        return NOT_RECORDED
    if isinstance(value, dict):
        return ", ".join(f"{k}={v}" for k, v in sorted(value.items()))
    return str(value)


def compare_environments(recorded: dict, rerun: dict) -> list[dict]:
    """One row per ``ENV_ROWS`` key: {key, recorded, rerun (shown), status, float_order}.

    status: 'same', 'differs', or 'not recorded' (absent on either side: no evidence).
    """
    rows = []
    for key, float_order in ENV_ROWS:
        a, b = _value(recorded or {}, key), _value(rerun or {}, key)
        if a is None or b is None:
            status = NOT_RECORDED
        else:
            same = json.dumps(a, sort_keys=True, default=str) == json.dumps(b, sort_keys=True, default=str)
            status = "same" if same else "differs"
        rows.append({"key": key, "recorded": shown(a), "rerun": shown(b), "status": status,
                     "float_order": float_order})
    return rows


def _value(env: dict, key: str):
    """``env[key]``; a clean tree's absent code_diff_sha256 reads 'none' (there is no diff)."""
    if key == "code_diff_sha256" and env.get(key) is None and env.get("git_dirty") is False:
        return "none"
    return env.get(key)


def float_order_differences(rows: list[dict]) -> list[str]:
    """Keys that differ and can change floating-point order."""
    return [r["key"] for r in rows if r["float_order"] and r["status"] == "differs"]


def code_status(recorded: dict, rerun: dict, diff_stored: bool) -> dict:
    """Can the record's code be recovered, and is it the code of the rerun?

    Returns {status: 'same' | 'differs' | 'unrecoverable', text}.  A record from a tree
    with uncommitted changes is recoverable only through its stored ``code.diff.gz``.
    """
    rev, dirty, sha = recorded.get("git_revision"), recorded.get("git_dirty"), recorded.get("code_diff_sha256")
    if not rev or rev == "unknown" or dirty is None:
        return {"status": "unrecoverable", "text": "the record names no git revision: its code cannot be recovered"}
    if dirty and not sha:
        return {"status": "unrecoverable",
                "text": f"made from uncommitted changes on {rev[:10]} that were not stored: its git_revision does "
                        "not identify the code, which cannot be recovered"}
    if dirty and not diff_stored:
        return {"status": "unrecoverable",
                "text": f"made from {rev[:10]} + a diff (sha256 {sha[:12]}…) whose code.diff.gz is missing"}
    then = rev[:10] + (f" + diff {sha[:12]}…" if dirty else "")
    now_rev, now_sha = rerun.get("git_revision") or "unknown", rerun.get("code_diff_sha256")
    now = now_rev[:10] + (f" + diff {now_sha[:12]}…" if now_sha else "")
    if now_rev == rev and (now_sha or None) == (sha if dirty else None):
        return {"status": "same", "text": f"the rerun ran the record's code ({then})"}
    return {"status": "differs",
            "text": f"the record was made from {then}, the rerun ran {now}: a change may also come from the code "
                    "(--with-recorded-code reruns the record's own code)"}


# =========================================================================== rankings
def ranking_keys(ranks: dict) -> list[str]:
    """The stored rankings of a ``ranks.npz``: test, valid, then test@… (numbers in names sorted as numbers)."""
    def natural(key):
        return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", key)]

    extra = sorted((k for k in ranks if k.startswith("test@")), key=natural)
    return [k for k in ("test", "valid") if k in ranks] + extra


def ranking_change(before: np.ndarray, after: np.ndarray) -> dict:
    """How one ranking moved: (n_users,) 0-based ranks of the record and of the rerun.

    Returns n, moved, up (rank improved), down, largest and median |Δrank| over movers,
    crossed {k: users on the other side of cutoff k}, sign_p (exact two-sided sign test).
    """
    before, after = np.asarray(before, np.int64), np.asarray(after, np.int64)
    delta = after - before
    moved = delta != 0
    up, down = int(np.sum(delta < 0)), int(np.sum(delta > 0))
    sign_p = float(sps.binomtest(up, up + down, 0.5).pvalue) if up + down else 1.0
    return {"n": int(len(before)), "moved": int(moved.sum()), "up": up, "down": down,
            "largest": int(np.abs(delta).max(initial=0)),
            "median": float(np.median(np.abs(delta[moved]))) if moved.any() else 0.0,
            "crossed": {k: int(np.sum((before < k) != (after < k))) for k in CUTOFFS}, "sign_p": sign_p}


def metric_change(before: np.ndarray, after: np.ndarray, metric: str) -> dict:
    """One metric of one ranking: recorded, rerun, diff (rerun − recorded) with its paired 95 % interval,
    the paired t-test p, the metric's standard error over users, the tolerance and whether diff is within it."""
    x, y = store.per_user_metric(after, metric), store.per_user_metric(before, metric)
    n = len(y)
    test = paired(x, y)
    se = float(np.std(y, ddof=1) / math.sqrt(n)) if n > 1 else math.nan
    tol = max(SE_FACTOR * se, 1.0 / n) if n else math.nan
    diff = float(x.mean() - y.mean()) if n else math.nan
    return {"metric": metric, "recorded": float(y.mean()) if n else math.nan,
            "rerun": float(x.mean()) if n else math.nan,
            "diff": diff, "ci_low": test["ci_low"], "ci_high": test["ci_high"], "p": test["p_t"], "se": se,
            "tolerance": tol, "within": bool(abs(diff) <= tol + 1e-15)}


def structural_problems(before: dict, after: dict) -> list[str]:
    """What makes two ``ranks.npz`` incomparable: other users or data, a ranking not rerun, shapes."""
    out = []
    for key in sorted(set(before) | set(after)):
        if key not in after:
            out.append(f"{key}: not produced by the rerun")
        elif key not in before:
            continue  # a ranking the record did not store: nothing to compare it with
        elif before[key].shape != after[key].shape:
            out.append(f"{key}: shape {before[key].shape} recorded, {after[key].shape} rerun")
        elif key in DATA_ARRAYS and np.any(before[key] != after[key]):
            out.append(f"{key}: differs for {int(np.sum(before[key] != after[key]))} users (other users or data)")
    return out


# =========================================================================== the verdict
def compare(before: dict, after: dict, env_before: dict, env_after: dict, diff_stored: bool = False) -> dict:
    """Everything ``bench reproduce`` says about a rerun: environment, code, rank and metric changes, verdict.

    before / after: {name: (n_users,) array} as read from ``ranks.npz`` (record, rerun);
    env_before / env_after: the ``env`` of the record and of the rerun.
    """
    env_rows = compare_environments(env_before, env_after)
    problems = structural_problems(before, after)
    keys = [k for k in ranking_keys(before) if k in after and before[k].shape == after[k].shape]
    rankings = {k: ranking_change(before[k], after[k]) for k in keys}
    metrics = {k: [metric_change(before[k], after[k], m) for m in METRICS] for k in keys}
    moved_any = _moved_any(before, after, keys)
    n = int(len(before.get("users", [])))
    out = {"environment": env_rows, "float_order_differences": float_order_differences(env_rows),
           "code": code_status(env_before or {}, env_after or {}, diff_stored), "problems": problems,
           "rankings": rankings, "metrics": metrics, "n_users": n, "moved_any": moved_any}
    out["verdict"], out["checks"] = judge(out)
    return out


def _moved_any(before: dict, after: dict, keys: list) -> int:
    """Users whose rank changed in any of ``keys``."""
    if not keys:
        return 0
    return int(np.sum(np.any(np.stack([before[k] != after[k] for k in keys]), axis=0)))


def judge(cmp: dict) -> tuple[str, list[dict]]:
    """(verdict, checks) from :func:`compare`'s parts; checks: [{id, passed, text}] for (E1)–(E5)."""
    rankings, n = cmp["rankings"], max(cmp["n_users"], 1)
    if not cmp["problems"] and rankings and all(r["moved"] == 0 for r in rankings.values()):
        return "identical", [{"id": "identical", "passed": True, "text": "every stored ranking is bit-for-bit equal"}]
    unknown = [r["key"] for r in cmp["environment"] if r["float_order"] and r["status"] == NOT_RECORDED]
    diffs = cmp["float_order_differences"]
    holm_p = dict(zip(rankings, holm([r["sign_p"] for r in rankings.values()]))) if rankings else {}
    directed = {k: p for k, p in holm_p.items() if p < ALPHA}
    beyond = [(k, m) for k, rows in cmp["metrics"].items() for m in rows if not m["within"]]
    checks = [
        {"id": "E1", "passed": bool(diffs),
         "text": (f"environments differ in {', '.join(diffs)}" if diffs else
                  "nothing that changes floating-point order differs between the environments"
                  + (f" ({', '.join(unknown)} not recorded)" if unknown else "")
                  + ", so floating-point order cannot explain the change")},
        {"id": "E2", "passed": not cmp["problems"] and bool(rankings),
         "text": "; ".join(cmp["problems"]) if cmp["problems"] else
         ("same users and data, every ranking rerun" if rankings else "no ranking to compare")},
        {"id": "E3", "passed": cmp["moved_any"] <= MAX_MOVED_FRACTION * n,
         "text": f"{cmp['moved_any']} of {n} users ({cmp['moved_any'] / n:.2%}) moved in some stored ranking "
                 f"(at most {MAX_MOVED_FRACTION:.0%} allowed)"},
        {"id": "E4", "passed": not directed,
         "text": ("users moved one way in " + ", ".join(f"{k} ({rankings[k]['up']} up, {rankings[k]['down']} down, "
                                                         f"Holm p {p:.2g})" for k, p in directed.items())
                  if directed else f"no direction: sign test Holm p ≥ {ALPHA} in every ranking (smallest "
                                   f"{min(holm_p.values(), default=1.0):.2g})")},
        {"id": "E5", "passed": not beyond,
         "text": ("beyond tolerance: " + ", ".join(f"{k} {m['metric']} {m['diff']:+.5f} (tolerance "
                                                   f"{m['tolerance']:.5f})" for k, m in beyond[:6])
                  + (f", … ({len(beyond) - 6} more)" if len(beyond) > 6 else "")
                  if beyond else "every metric of every ranking within max(se, 1/n)")},
    ]
    return ("equivalent" if all(c["passed"] for c in checks) else "different"), checks


def worst(verdicts) -> str:
    """The least reproducible of several verdicts (different > equivalent > identical)."""
    order = {v: i for i, v in enumerate(VERDICTS)}
    return max(verdicts, key=order.__getitem__, default="identical")
