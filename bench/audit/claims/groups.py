"""Rules inside user groups: head vs long-tail test items (Fig. 8) and history-length groups (Fig. 9)."""
from __future__ import annotations

import numpy as np

from bench import stats
from bench.audit.claims.base import (baselines, headline_test, holm, result, scope, scope_note, user_groups,
                                     with_scope)
from bench.audit.view import METRICS, ResultsView

GROUP_METRICS = ["HR@10", "NDCG@10"]  # the metrics of Figs. 8 and 9


def _group_rows(view: ResultsView, d: str, gname: str, mask: np.ndarray, mats: dict, target: str,
                metrics: list) -> list[dict]:
    """Per metric: the target's group mean against the best baseline's, by the headline test on the
    group's users (seeds within each model, the group's users jointly)."""
    rows = []
    for metric in metrics:
        i = METRICS.index(metric)
        means = {m: float(np.nanmean(x[i, mask])) for m, x in mats.items() if x is not None}
        base_means = {m: v for m, v in means.items() if m != target}
        if not base_means:
            continue
        best = max(base_means, key=lambda m: base_means[m])
        hb = headline_test(view, d, target, best, metric, mask)
        rows.append({"dataset": d, "group": gname, "metric": metric, "n_users": int(mask.sum()),
                     "target": means[target], "best_baseline": best, "baseline": means[best],
                     "hb_p": hb["hb_p"], "p_a_beats_b": hb["p_a_beats_b"],
                     "beats": bool(means[target] > means[best])})
    return rows


def beats_baselines_in_groups(view: ResultsView, rule: dict, cfg: dict) -> dict:
    """Figs. 8 and 9: DiffuRec beats every baseline inside each user group.

    F8-head-and-tail (Section 6.5.1: on head and on long-tail items) and F9-every-length
    (Section 6.5.2: in every sequence-length group).  Each cell: the headline two-level bootstrap on
    the group's users, Holm-adjusted over the claim's cells (its own family: no report tests groups).
    """
    target, kind = rule["target"], rule["groups"]
    metrics = rule.get("metrics", GROUP_METRICS)
    datasets, absent = scope(view, rule)
    rows, notes = [], []
    for d in datasets:
        info = view.info(d)
        bases = baselines(view, d, target, cfg)
        if target not in view.main_models(d) or not bases or info is None:
            notes.append(f"{d}: needs {target}, a baseline and readable ranks")
            continue
        mats = {m: view.per_user(d, m) for m in [target, *bases]}
        if mats[target] is None:
            notes.append(f"{d}: no readable ranks of {target}")
            continue
        for gname, mask in user_groups(info, kind):
            if not mask.any():
                notes.append(f"{d}: group {gname} is empty")
                continue
            rows += _group_rows(view, d, gname, mask, mats, target, metrics)
    cols = ["dataset", "group", "metric", "n_users", "target", "best_baseline", "baseline", "hb_p_holm", "p_a_beats_b",
            "beats"]
    note = scope_note(absent, notes)
    if not rows:
        return result("not testable", note or "no runs", columns=cols)
    holm(rows, "hb_p")
    lost = [f"{r['dataset']} {r['group']} {r['metric']}" for r in rows if not r["beats"]]
    if lost:
        return result("does not hold", with_scope(f"{target} is not above the best baseline in {len(lost)} of "
                                                  f"{len(rows)} group cells: {', '.join(lost[:6])}", note), rows, cols)
    return result("holds", with_scope(f"{target} is above every baseline in all {len(rows)} group cells", note),
                  rows, cols)


def group_order(view: ResultsView, rule: dict, cfg: dict) -> dict:
    """Fig. 8, Section 6.5.1: "for all models, performance on head items is better than on long-tail items".

    F8-head-above-tail: every Table 2 model does better on group ``better`` than on
    ``worse`` (Welch over users: the groups hold different users).
    """
    kind, better, worse = rule["groups"], rule["better"], rule["worse"]
    metrics = rule.get("metrics", GROUP_METRICS)
    datasets, absent = scope(view, rule)
    rows, notes = [], []
    for d in datasets:
        info = view.info(d)
        if info is None:
            notes.append(f"{d}: no readable ranks")
            continue
        groups = dict(user_groups(info, kind))
        if better not in groups or worse not in groups or not groups[better].any() or not groups[worse].any():
            notes.append(f"{d}: group {better} or {worse} empty")
            continue
        for m in view.main_models(d):
            mat = view.per_user(d, m)
            if mat is None:
                continue
            for metric in metrics:
                i = METRICS.index(metric)
                w = stats.welch(mat[i, groups[better]], mat[i, groups[worse]])
                rows.append({"dataset": d, "model": m, "metric": metric, "better_group": w["mean_a"],
                             "worse_group": w["mean_b"], "welch_p": w["p"], "holds": bool(w["mean_a"] > w["mean_b"])})
    cols = ["dataset", "model", "metric", "better_group", "worse_group", "welch_p_holm", "holds"]
    note = scope_note(absent, notes)
    if not rows:
        return result("not testable", note or "no runs", columns=cols)
    holm(rows, "welch_p")
    lost = [f"{r['dataset']} {r['model']} {r['metric']}" for r in rows if not r["holds"]]
    text = (f"{better} above {worse} in {len(rows) - len(lost)} of {len(rows)} (model, metric) cells"
            + (f"; not in: {', '.join(lost[:6])}" if lost else "") + (f"; scope: {note}" if note else "")
            + "; Welch over users (unpaired: the groups hold different users)")
    return result("does not hold" if lost else "holds", text, rows, cols)
