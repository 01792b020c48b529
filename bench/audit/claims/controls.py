"""Rules about the controls that isolate the diffusion (docs/protocols.md, "Controls"): DiffuRec against a named run."""
from __future__ import annotations

import math

from bench import stats
from bench.audit.claims.base import holm, paired_p, result, scope, scope_note, with_scope
from bench.audit.view import METRICS, ResultsView
from bench.report.tuning import choice_problem, stand_in_note, stand_in_runs


def beats_model(view: ResultsView, rule: dict, cfg: dict) -> dict:
    """Controls: DiffuRec beats a named control run in every cell, significantly over users.

    C1-diffusion-adds-accuracy (DiffuRec over DiffuRec-nodiff, lambda = 0: the approximator
    never sees the diffused target), C2-beats-matched-sasrec (over SASRec at DiffuRec's
    capacity and training settings) and C3-beats-tuned-sasrec (over SASRec tuned on
    validation).  Holds when the target's seed mean is higher in every (dataset, metric)
    and, with ``require_significance``, the paired t-test over users (Holm over the cells)
    is below alpha in every cell.  With ``tuning_settings: n`` the other run must be a tuned
    baseline whose setting validation chose: a cell is judged only once the tuning grid holds
    n settings and every run of ``other`` has the validation-best setting's params
    (``bench.report.tuning.choice_problem``); seeds that setting already ran under its own name
    (the tuning run, or the base runs when it is the default) stand for ``other``'s
    (``stand_in_runs``).
    """
    target, other = rule["target"], rule["other"]
    if rule.get("tuning_settings"):
        view = ResultsView(view.records + stand_in_runs(view.records, [other]))
    metrics = rule.get("metrics", list(METRICS))
    datasets, absent = scope(view, rule)
    rows, notes = [], []
    for d in datasets:
        present = set(view.models(d))
        if target not in present or other not in present:
            notes.append(f"{d}: needs {target} and {other} (have {', '.join(sorted(present & {target, other})) or 'neither'})")
            continue
        problem = choice_problem(view.records, d, other, rule["tuning_settings"]) if rule.get("tuning_settings") else ""
        if problem:
            notes.append(f"{d}: {problem}")
            continue
        lent = stand_in_note([r for r in view.records if r.get("stands_in_from")], d, other)
        if lent:
            notes.append(f"{d}: {other}'s {lent}")
        for metric in metrics:
            w = stats.welch(view.seeds(d, target, metric), view.seeds(d, other, metric))
            pr = paired_p(view, d, other, target, metric)
            rows.append({"dataset": d, "metric": metric, "control": other, "target": w["mean_a"],
                         "other": w["mean_b"], "n_seeds": f"{w['n_a']}/{w['n_b']}",
                         "change_pct": 100 * (w["mean_b"] / w["mean_a"] - 1) if w["mean_a"] else math.nan,
                         "paired_diff": pr["mean_diff"], "welch_p": w["p"], "paired_p": pr["p_t"],
                         "beats": bool(w["mean_a"] > w["mean_b"])})
    cols = ["dataset", "metric", "control", "target", "other", "n_seeds", "change_pct", "paired_p_holm",
            "welch_p_holm", "beats"]
    note = scope_note(absent, notes)
    if not rows:
        return result("not testable", note or "no runs", columns=cols)
    holm(rows, "welch_p")
    holm(rows, "paired_p")
    alpha = float(cfg.get("alpha", 0.05))
    lost = [f"{r['dataset']} {r['metric']}" for r in rows if not r["beats"]]
    weak = [f"{r['dataset']} {r['metric']}" for r in rows
            if r["beats"] and not (r["paired_p_holm"] < alpha)] if rule.get("require_significance") else []
    if lost:
        return result("does not hold", with_scope(f"{other} is not below {target} in {len(lost)} of {len(rows)} "
                                                  f"cells: {', '.join(lost[:6])}", note), rows, cols)
    if weak:
        return result("does not hold", with_scope(f"{target} is above {other} in every cell, but not significantly "
                                                  f"(paired over users, Holm, alpha {alpha}) in {len(weak)}: "
                                                  f"{', '.join(weak[:6])}", note), rows, cols)
    return result("holds", with_scope(f"{target} is above {other} in all {len(rows)} cells"
                                      + (" (paired over users, Holm < alpha)" if rule.get("require_significance")
                                         else ""), note), rows, cols)
