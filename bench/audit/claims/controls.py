"""Rules about the controls that isolate the diffusion (docs/protocols.md, "Controls"): DiffuRec against a named run."""
from __future__ import annotations

import math

from bench import stats
from bench.audit.claims.base import HEADLINE_COLUMNS, headline, result, scope, scope_note, with_scope
from bench.audit.view import METRICS, ResultsView
from bench.report.tuning import choice_problem, stand_in_note, stand_in_runs


def controls_family(view: ResultsView, other: str):
    """The report's comparisons of the controls with DiffuRec (``controls.md``, Holm family ``controls``).

    When the profile does not declare ``other`` as a control (a view made without the profile), the
    family is ``other`` alone, and its name says so.
    """
    from bench.report.controls import controls_frame

    if other in view.controls:
        return controls_frame(view.report)
    frame = controls_frame(view.report_with({other: ""}))
    if len(frame):
        frame["family"] = f"controls ({other} alone: not a control of the profile)"
    return frame


def beats_model(view: ResultsView, rule: dict, cfg: dict) -> dict:
    """Controls: DiffuRec beats a named control run in every cell, significantly over users.

    C1-diffusion-adds-accuracy (DiffuRec over DiffuRec-nodiff, lambda = 0: the approximator
    never sees the diffused target), C2-beats-matched-sasrec (over SASRec at DiffuRec's
    capacity and training settings) and C3-beats-tuned-sasrec (over SASRec tuned on
    validation).  Holds when the target's seed mean is higher in every (dataset, metric)
    and, with ``require_significance``, the headline test (two-level bootstrap over seeds and
    users) is significant in every cell, its p adjusted in the Holm family ``controls`` as
    ``controls.md`` shows it (:func:`controls_family`).  With ``tuning_settings: n`` the other run must be a tuned
    baseline whose setting validation chose: a cell is judged only once the tuning grid holds
    n settings and every run of ``other`` has the validation-best setting's params
    (``bench.report.tuning.choice_problem``); seeds that setting already ran under its own name
    (the tuning run, or the base runs when it is the default) stand for ``other``'s
    (``stand_in_runs``).
    """
    target, other = rule["target"], rule["other"]
    family = controls_family(view, other) if rule.get("require_significance") else None
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
            rows.append({"dataset": d, "metric": metric, "control": other, "target": w["mean_a"],
                         "other": w["mean_b"], "n_seeds": f"{w['n_a']}/{w['n_b']}",
                         "change_pct": 100 * (w["mean_b"] / w["mean_a"] - 1) if w["mean_a"] else math.nan,
                         **headline(family, d, metric, target, other), "beats": bool(w["mean_a"] > w["mean_b"])})
    cols = ["dataset", "metric", "control", "target", "other", "n_seeds", "change_pct", *HEADLINE_COLUMNS, "beats"]
    note = scope_note(absent, notes)
    if not rows:
        return result("not testable", note or "no runs", columns=cols)
    alpha = float(cfg.get("alpha", 0.05))
    lost = [f"{r['dataset']} {r['metric']}" for r in rows if not r["beats"]]
    weak = [f"{r['dataset']} {r['metric']}" for r in rows
            if r["beats"] and not (r["hb_p_holm"] < alpha)] if rule.get("require_significance") else []
    if lost:
        return result("does not hold", with_scope(f"{other} is not below {target} in {len(lost)} of {len(rows)} "
                                                  f"cells: {', '.join(lost[:6])}", note), rows, cols)
    if weak:
        return result("does not hold", with_scope(f"{target} is above {other} in every cell, but not significantly "
                                                  f"(headline test, Holm family {rows[0]['family']}, alpha {alpha}) in {len(weak)}: "
                                                  f"{', '.join(weak[:6])}", note), rows, cols)
    return result("holds", with_scope(f"{target} is above {other} in all {len(rows)} cells"
                                      + (f" (headline test, Holm family {rows[0]['family']}, adjusted p < alpha)" if rule.get("require_significance")
                                         else ""), note), rows, cols)
