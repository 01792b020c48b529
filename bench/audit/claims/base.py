"""What every claim rule shares: the verdict dict, the scope of datasets, baselines, the headline test, Holm.

A rule is ``rule(view, rule, cfg) -> dict`` where ``view`` is a
:class:`~bench.audit.view.ResultsView`, ``rule`` the claim's ``rule:`` mapping from
``bench/claims.yaml`` and ``cfg`` = {alpha, baselines}; it returns :func:`result`.
"""
from __future__ import annotations

import math

import numpy as np

from bench import stats
from bench.audit.view import METRICS, ResultsView
from bench.errors import BenchError
from bench.fmt import DATASET_ORDER, finite
from bench.stats.hierarchical_bootstrap import compare_metric_rows

VERDICTS = ("holds", "does not hold", "not testable")


def result(verdict: str, reason: str, evidence=None, columns=None, **extra) -> dict:
    """A rule's answer: verdict, reason, evidence rows and the columns the audit shows of them."""
    assert verdict in VERDICTS
    return {"verdict": verdict, "reason": reason, "evidence": evidence or [], "columns": columns or [], **extra}


def with_scope(text: str, scope: str) -> str:
    """``text`` + '; scope: …' when the scope note is not empty."""
    return text + (f"; scope: {scope}" if scope else "")


def scope(view: ResultsView, rule: dict) -> tuple[list[str], list[str]]:
    """(datasets in scope with runs, datasets in scope without runs)."""
    wanted = rule.get("datasets", "all")
    if wanted in (None, "all"):
        wanted = list(DATASET_ORDER)
        wanted += [d for d in view.datasets if d not in wanted]
    have = set(view.datasets)
    return [d for d in wanted if d in have], [d for d in wanted if d not in have]


def scope_note(absent_datasets: list, notes: list) -> str:
    """'no runs on …; <notes>' or ''."""
    parts = []
    if absent_datasets:
        parts.append(f"no runs on {', '.join(absent_datasets)}")
    parts += notes
    return ("; ".join(parts)) if parts else ""


def baselines(view: ResultsView, dataset: str, target: str, cfg: dict) -> list[str]:
    """Base runs on ``dataset`` whose model is one of the claims file's baselines."""
    allowed = {b.lower() for b in cfg.get("baselines", [])}
    return [m for m in view.main_models(dataset) if m != target and view.base(dataset, m).lower() in allowed]


def target_and_baselines(view: ResultsView, dataset: str, target: str, cfg: dict, notes: list) -> list[str]:
    """The baselines run on ``dataset`` beside ``target``; [] (with a note why) when either is absent."""
    if target not in view.main_models(dataset):
        notes.append(f"{dataset}: no {target} run")
        return []
    bases = baselines(view, dataset, target, cfg)
    if not bases:
        notes.append(f"{dataset}: no baseline run")
    return bases


def best_by_mean(means: dict):
    """The key with the highest finite mean (non-finite counts as -inf; the first wins ties)."""
    return max(means, key=lambda k: means[k] if finite(means[k]) else -math.inf)


def headline_test(view: ResultsView, dataset: str, a: str, b: str, metric: str, mask=None) -> dict:
    """The headline two-level bootstrap (``bench.stats.hierarchical_bootstrap``) of a − b on one
    metric, over a's and b's seeds and the dataset's users (optionally only those in ``mask``,
    (n_users,) bool); users a run did not rank are left out on both sides.

    Returns {hb_p: two-sided p, hb_ci_low, hb_ci_high: the 95 % interval of the difference,
    p_a_beats_b: P(a new run of a beats one of b)}; NaN without readable ranks on a side."""
    r = compare_metric_rows(view.per_seed(dataset, a), view.per_seed(dataset, b), METRICS.index(metric), mask)
    return {"hb_p": r.p, "hb_ci_low": r.ci_low, "hb_ci_high": r.ci_high, "p_a_beats_b": r.p_a_beats_b}


HEADLINE_COLUMNS = ["hb_p_holm", "family", "p_a_beats_b"]  # what a claim quotes of the report's headline test


def headline(frame, dataset: str, metric: str, a: str, b: str) -> dict:
    """The report's headline test of a against b in ``frame`` (``view.report.vs_best`` or ``.vs_reference``):
    {hb_p_holm: its Holm-adjusted p in the frame's one family, family: that family's name,
    p_a_beats_b: P(a new run of a beats one of b)}; NaN and '–' where the frame lacks the comparison.
    A row stored as b − a is read the other way round (the p is symmetric, P(a > b) = 1 − P(b > a))."""
    out = {"hb_p_holm": math.nan, "family": "–", "p_a_beats_b": math.nan}
    if frame is None or not len(frame):
        return out
    for x, y, flip in ((a, b, False), (b, a, True)):
        hit = frame[(frame["dataset"] == dataset) & (frame["metric"] == metric) & (frame["model_a"] == x)
                    & (frame["model_b"] == y)]
        if len(hit):
            r = hit.iloc[0]
            beats = float(r["p_a_beats_b"])
            return {"hb_p_holm": float(r["hb_p_holm"]), "family": str(r["family"]),
                    "p_a_beats_b": 1.0 - beats if flip and finite(beats) else beats}
    return out


def holm(rows: list, column: str) -> None:
    """Add ``<column>_holm`` to every row: Holm over the rows of one claim."""
    adj = stats.holm([r.get(column, math.nan) for r in rows])
    for r, a in zip(rows, adj):
        r[f"{column}_holm"] = float(a)


def same_value(a, b) -> bool:
    """Param values equal as numbers (close) or as case-insensitive text."""
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-12)
    return str(a).lower() == str(b).lower()


def comparable(view: ResultsView, dataset: str, target: str, params: set) -> dict:
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


def user_groups(info: dict, kind: str) -> list[tuple[str, np.ndarray]]:
    """[(group name, (n_users,) bool mask)]: head/long-tail test item, or the five length groups."""
    if kind == "head_tail":
        head = info["test_is_head"]
        return [("head", head), ("long-tail", ~head)]
    if kind == "length":
        group, _, labels = stats.length_groups(info["hist_len"])
        return [(label, group == i) for i, label in enumerate(labels)]
    raise BenchError(f"unknown group kind '{kind}' (known: head_tail, length)")
