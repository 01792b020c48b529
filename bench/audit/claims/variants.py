"""Rules about DiffuRec against its own variants: a best setting (Figs. 3, 5), an ablation (Table 3)."""
from __future__ import annotations

import math

from bench import stats
from bench.audit.claims.base import (HEADLINE_COLUMNS, best_by_mean, comparable, headline, headline_test, holm, result,
                                     same_value, scope, scope_note, with_scope)
from bench.audit.view import METRICS, ResultsView
from bench.fmt import pct


def _runs_by_value(view: ResultsView, d: str, target: str, param: str) -> dict:
    """{param value: model}: per distinct value of ``param`` the target run overriding fewest params."""
    candidates = comparable(view, d, target, {param})
    by_value = {}
    for m in sorted(candidates, key=lambda m: (len(view.variant_keys(d, m)), m)):
        value = candidates[m].get(param)
        if value is not None and not any(same_value(value, v) for v in by_value):
            by_value[value] = m
    return by_value


def _setting_row(view: ResultsView, d: str, metric: str, by_value: dict, best_key) -> dict:
    """The claimed setting's mean against the best other setting's in one (dataset, metric)."""
    means = {v: view.mean(d, m, metric) for v, m in by_value.items()}
    others = {v: x for v, x in means.items() if v is not best_key}
    runner_up = best_by_mean(others)
    winner = best_by_mean(means)
    hb = headline_test(view, d, by_value[best_key], by_value[runner_up], metric)
    return {"dataset": d, "metric": metric, "claimed": means[best_key], "best_other": str(runner_up),
            "other": means[runner_up], "winner": str(winner),
            "values": ", ".join(f"{v}={pct(x)}" for v, x in means.items()),
            "hb_p": hb["hb_p"], "p_a_beats_b": hb["p_a_beats_b"], "claimed_wins": bool(means[best_key] > others[runner_up])}


def best_setting(view: ResultsView, rule: dict, cfg: dict) -> dict:
    """Figs. 3 and 5: one setting of a DiffuRec param "generally performs best".

    F3-truncated-linear (Section 6.2.3: the truncated linear noise schedule on Beauty and
    Toys) and F5-delta-0.001 (Section 6.3: δ = 0.001 on Beauty and ML-1M).  Holds when
    ``best`` has the highest seed mean in at least ``min_share`` of the cells.  Each cell tests the
    claimed setting against the best other by the headline two-level bootstrap, Holm-adjusted over
    the claim's cells (its own family: the settings are compared by no report).
    """
    target, param, best = rule["target"], rule["param"], rule["best"]
    metrics, share_needed = rule.get("metrics", list(METRICS)), float(rule.get("min_share", 1.0))
    datasets, absent = scope(view, rule)
    rows, notes = [], []
    for d in datasets:
        by_value = _runs_by_value(view, d, target, param)
        if "values" in rule:  # only the settings the claim compares (Fig. 5's deltas, not the lambda = 0 control)
            by_value = {v: m for v, m in by_value.items() if any(same_value(v, w) for w in rule["values"])}
        best_key = next((v for v in by_value if same_value(v, best)), None)
        if best_key is None or len(by_value) < 2:
            notes.append(f"{d}: {target} runs with {param} = {best} and another value needed "
                         f"(have: {', '.join(map(str, by_value)) or 'none'})")
            continue
        rows += [_setting_row(view, d, metric, by_value, best_key) for metric in metrics]
    cols = ["dataset", "metric", "values", "winner", "best_other", "hb_p", "hb_p_holm", "p_a_beats_b", "claimed_wins"]
    note = scope_note(absent, notes)
    if not rows:
        return result("not testable", f"no {target} runs differing only in {param}" + (f" ({note})" if note else ""),
                      columns=cols)
    holm(rows, "hb_p")
    wins = sum(r["claimed_wins"] for r in rows)
    share = wins / len(rows)
    text = with_scope(f"{param} = {best} has the highest mean in {wins} of {len(rows)} cells ({100 * share:.0f}%; "
                      f"needed {100 * share_needed:.0f}%)", note)
    return result("holds" if share >= share_needed else "does not hold", text, rows, cols)


def _main_and_variant(view: ResultsView, d: str, target: str, param: str, value) -> tuple[str, str] | None:
    """(target's base run, its variant with ``param`` = ``value``), each the one overriding fewest params."""
    candidates = comparable(view, d, target, {param})
    main = sorted((m for m in candidates if not view.variant_keys(d, m) - {"protocol"}),
                  key=lambda m: (len(view.variant_keys(d, m)), m))
    variants = sorted((m for m, p in candidates.items() if m not in main and same_value(p.get(param), value)),
                      key=lambda m: (len(view.variant_keys(d, m)), m))
    return (main[0], variants[0]) if main and variants else None


def beats_variant(view: ResultsView, rule: dict, cfg: dict) -> dict:
    """Table 3, Section 6.2: DiffuRec beats its ablation with ``param`` = ``value`` in every cell.

    T3-transformer-over-gru (the GRU approximator lowers performance) and
    T3-inner-product-over-rstar (rounding by negative squared distance leads to a drop).
    The evidence quotes the headline test of Table 3 (its p adjusted in Holm family ``table3``, as
    significance_table3.md shows it); a variant that is not Table 3's ablation has none (–).
    """
    target, param, value = rule["target"], rule["param"], rule["value"]
    family = view.report.vs_reference if target == "DiffuRec" else None  # the report's Table 3 is DiffuRec's
    metrics = rule.get("metrics", list(METRICS))
    datasets, absent = scope(view, rule)
    rows, notes = [], []
    for d in datasets:
        pair = _main_and_variant(view, d, target, param, value)
        if pair is None:
            notes.append(f"{d}: needs {target} and a {target} variant with {param} = {value}")
            continue
        a, b = pair
        for metric in metrics:
            w = stats.welch(view.seeds(d, a, metric), view.seeds(d, b, metric))
            rows.append({"dataset": d, "metric": metric, "target": w["mean_a"], "variant": b,
                         "variant_mean": w["mean_b"],
                         "change_pct": 100 * (w["mean_b"] / w["mean_a"] - 1) if w["mean_a"] else math.nan,
                         **headline(family, d, metric, a, b), "beats": bool(w["mean_a"] > w["mean_b"])})
    cols = ["dataset", "metric", "target", "variant", "variant_mean", "change_pct", *HEADLINE_COLUMNS, "beats"]
    note = scope_note(absent, notes)
    if not rows:
        return result("not testable", note or "no runs", columns=cols)
    lost = [f"{r['dataset']} {r['metric']}" for r in rows if not r["beats"]]
    if lost:
        return result("does not hold", with_scope(f"the variant ({param} = {value}) is not below {target} in "
                                                  f"{len(lost)} of {len(rows)} cells: {', '.join(lost[:6])}", note),
                      rows, cols)
    return result("holds", with_scope(f"{target} is above the {param} = {value} variant in all {len(rows)} cells",
                                      note), rows, cols)
