"""Rules about DiffuRec against the nine baselines of Table 2."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from bench import stats
from bench.audit.claims.base import (HEADLINE_COLUMNS, best_by_mean, headline, result, scope, scope_note,
                                     target_and_baselines, with_scope)
from bench.audit.view import METRICS, ResultsView
from bench.fmt import REPO_ROOT, finite

PAPER_TABLE2 = "bench/paper_tables/table2.csv"  # relative to the repository: also how the audit names it


def _beats_rows(view: ResultsView, rule: dict, cfg: dict, datasets: list, notes: list) -> list[dict]:
    """One row per (dataset, metric): target vs the best baseline by seed mean, with the headline test's
    p adjusted in Holm family ``table2``, quoted from the report's comparison (significance_table2)."""
    target, metrics = rule["target"], rule.get("metrics", list(METRICS))
    family = view.report.vs_best if target == "DiffuRec" else None  # the report's Table 2 compares DiffuRec
    rows = []
    for d in datasets:
        bases = target_and_baselines(view, d, target, cfg, notes)
        if not bases:
            continue
        missing = [b for b in cfg.get("baselines", []) if b not in bases]
        if missing:
            notes.append(f"{d}: {len(bases)} of {len(cfg.get('baselines', []))} baselines "
                         f"(absent: {', '.join(missing)})")
        for metric in metrics:
            best = best_by_mean({m: view.mean(d, m, metric) for m in bases})
            w = stats.welch(view.seeds(d, target, metric), view.seeds(d, best, metric))
            rows.append({"dataset": d, "metric": metric, "target": w["mean_a"], "best_baseline": best,
                         "baseline": w["mean_b"], "diff": w["diff"],
                         "improv_pct": 100 * (w["mean_a"] / w["mean_b"] - 1) if w["mean_b"] else math.nan,
                         "n_seeds": f"{w['n_a']}/{w['n_b']}", **headline(family, d, metric, target, best),
                         "beats": bool(w["mean_a"] > w["mean_b"])})
    return rows


def beats_baselines(view: ResultsView, rule: dict, cfg: dict) -> dict:
    """Table 2, Section 6.1: "DiffuRec consistently outperforms all nine baselines" (T2-beats-all).

    With ``require_significance`` it tests Table 2's '*': the improvement over the best
    baseline is significant in every cell (T2-significant) by the headline test (two-level
    bootstrap over seeds and users), its p adjusted in Holm family ``table2`` as
    significance_table2.md shows it.
    """
    target, alpha = rule["target"], cfg.get("alpha", 0.05)
    datasets, absent = scope(view, rule)
    notes = []
    rows = _beats_rows(view, rule, cfg, datasets, notes)
    cols = ["dataset", "metric", "target", "best_baseline", "baseline", "improv_pct", "n_seeds", *HEADLINE_COLUMNS,
            "beats"]
    if not rows:
        return result("not testable", scope_note(absent, notes) or f"no {target} and baseline runs", columns=cols)
    note = scope_note(absent, notes)
    lost = [f"{r['dataset']} {r['metric']} ({r['best_baseline']})" for r in rows if not r["beats"]]
    if lost:
        return result("does not hold", with_scope(f"{target} is not above the best baseline in {len(lost)} of "
                                                  f"{len(rows)} cells: {', '.join(lost[:6])}", note), rows, cols)
    if not rule.get("require_significance"):
        return result("holds", with_scope(f"{target} has the highest seed mean in all {len(rows)} cells", note),
                      rows, cols)
    untested = [f"{r['dataset']} {r['metric']}" for r in rows if not finite(r["hb_p_holm"])]
    if untested:
        return result("not testable", with_scope(
            f"no headline test in {len(untested)} of {len(rows)} cells ({', '.join(untested[:6])}): it needs the "
            "per-user values (ranks.npz) of both models, and the cell's best baseline among the claims file's "
            "baselines must be the report's best baseline", note), rows, cols)
    weak = [f"{r['dataset']} {r['metric']}" for r in rows if not r["hb_p_holm"] < alpha]
    if weak:
        return result("does not hold", with_scope(
            f"not significant (headline test, Holm family table2, alpha {alpha}) in {len(weak)} of {len(rows)} "
            f"cells: {', '.join(weak[:6])}", note), rows, cols)
    return result("holds", with_scope(f"significant in all {len(rows)} cells (headline test, Holm family table2)",
                                      note), rows, cols)


def paper_improvements(rule: dict, cfg: dict) -> tuple[dict, str]:
    """({dataset: {metric: percent}}, source): from table2.csv (target over the best baseline), else the YAML's."""
    path = REPO_ROOT / PAPER_TABLE2
    if not path.exists():
        return rule.get("paper_improvement_pct") or {}, "bench/claims.yaml"
    frame = pd.read_csv(path)
    out = {}
    for (d, metric), g in frame.groupby(["dataset", "metric"]):
        target = g.loc[g["model"] == rule["target"], "value_percent"]
        base = g.loc[g["model"].isin(cfg.get("baselines", [])), "value_percent"]
        if len(target) and len(base):
            out.setdefault(d, {})[metric] = round(100 * (float(target.iloc[0]) / float(base.max()) - 1), 2)
    return out, PAPER_TABLE2


def _improvement_row(view: ResultsView, d: str, metric: str, target: str, bases: list, paper: dict,
                     embedded: dict) -> dict:
    """Our improvement over the best baseline with its 95% Welch interval (percent), beside the paper's."""
    best = best_by_mean({m: view.mean(d, m, metric) for m in bases})
    a, b = view.seeds(d, target, metric), view.seeds(d, best, metric)
    mb = float(b.mean()) if len(b) else math.nan
    ours = 100 * (a.mean() / mb - 1) if len(a) and mb else math.nan
    lo, hi = stats.welch_interval(a, b)
    lo, hi = (100 * lo / mb, 100 * hi / mb) if mb else (math.nan, math.nan)
    pv = paper.get(d, {}).get(metric, math.nan)
    return {"dataset": d, "metric": metric, "best_baseline": best, "ours_pct": ours, "ci_low_pct": lo,
            "ci_high_pct": hi, "paper_pct": pv, "paper_column_pct": embedded.get(d, {}).get(metric),
            "paper_in_ci": bool(lo <= pv <= hi) if finite(lo) and finite(pv) else None}


def improvement_matches(view: ResultsView, rule: dict, cfg: dict) -> dict:
    """Table 2's last column, Section 6.1: the improvement over the best baseline is as large as the paper's.

    Holds when the paper's "Improv." lies inside our 95% interval in every cell (T2-improvement-size).
    """
    target, metrics = rule["target"], rule.get("metrics", list(METRICS))
    paper, source = paper_improvements(rule, cfg)
    embedded = rule.get("paper_improvement_pct") or {}
    datasets, absent = scope(view, rule)
    rows, notes = [], []
    for d in datasets:
        if d not in paper:
            notes.append(f"{d}: not in the paper's Table 2")
            continue
        bases = target_and_baselines(view, d, target, cfg, notes)
        if not bases:
            continue
        if len(bases) < len(cfg.get("baselines", [])):
            notes.append(f"{d}: best of {len(bases)} baselines only (the paper's best may be absent)")
        rows += [_improvement_row(view, d, metric, target, bases, paper, embedded) for metric in metrics]
    cols = ["dataset", "metric", "best_baseline", "ours_pct", "ci_low_pct", "ci_high_pct", "paper_pct", "paper_in_ci"]
    note = scope_note(absent, notes)
    if not rows:
        return result("not testable", note or f"no {target} and baseline runs", columns=cols, paper_source=source)
    judged = [r for r in rows if r["paper_in_ci"] is not None]
    if len(judged) < len(rows):
        return result("not testable", with_scope(
            f"no 95% interval of our improvement in {len(rows) - len(judged)} of {len(rows)} cells (it needs at "
            "least two seeds per model and a best baseline above 0); our point estimates are in the evidence", note),
            rows, cols, paper_source=source)
    outside = [r for r in rows if not r["paper_in_ci"]]
    if outside:
        med = float(np.nanmedian([r["ours_pct"] for r in rows]))
        return result("does not hold", with_scope(
            f"the paper's improvement lies outside our 95% interval in {len(outside)} of {len(rows)} cells (our "
            f"median improvement {med:.1f}%)", note), rows, cols, paper_source=source)
    return result("holds", with_scope(f"the paper's improvement lies inside our 95% interval in all {len(rows)} cells",
                                      note), rows, cols, paper_source=source)
