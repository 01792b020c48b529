"""Rules about training: how fast a model reaches its best validation checkpoint (Fig. 10)."""
from __future__ import annotations

import numpy as np

from bench import stats
from bench.audit.claims.base import result
from bench.audit.view import ResultsView
from bench.fmt import finite, p_value_short

COLUMNS = ["model", "seed", "epochs_to_best", "loss_epoch", "epochs_run", "epoch_cap", "censored"]


def loss_epoch(curve: list, frac: float = 0.05) -> int | None:
    """First epoch (1-based) whose training loss is within ``frac`` of the total drop of its minimum."""
    losses = [c.get("train_loss") for c in curve or [] if finite(c.get("train_loss"))]
    if len(losses) < 2:
        return None
    lo, first = min(losses), losses[0]
    if first <= lo:
        return 1
    return next(i + 1 for i, v in enumerate(losses) if v - lo <= frac * (first - lo))


def _epoch_rows(view: ResultsView, d: str, model: str) -> list[dict]:
    """Per seed: epochs to the best checkpoint (best_epoch + 1), whether the run hit the epoch cap."""
    rows = []
    for r in view.by_model[(d, model)]:
        best = (r.get("checkpoint") or {}).get("best_epoch")
        run = (r.get("timing") or {}).get("epochs_run", len(r.get("curve") or []))
        cap = (r.get("params") or {}).get("epochs")
        if best is None:
            continue
        rows.append({"model": model, "seed": r.get("seed"), "epochs_to_best": int(best) + 1,
                     "loss_epoch": loss_epoch(r.get("curve")), "epochs_run": run, "epoch_cap": cap,
                     "censored": bool(cap is not None and run is not None and run >= cap)})
    return rows


def converges_faster(view: ResultsView, rule: dict, cfg: dict) -> dict:
    """Fig. 10, Section 6.6.1: "on Movielens-1M DiffuRec converges faster than SASRec" (F10-convergence-ml1m).

    Compares epochs to the best validation checkpoint; a run that ends at the epoch cap
    is censored, and a censored target makes the claim not testable.
    """
    target, other, d = rule["target"], rule["other"], rule["dataset"]
    if d not in view.datasets:
        return result("not testable", f"no runs on {d}", columns=COLUMNS)
    rows = {}
    for model in (target, other):
        if model not in view.main_models(d):
            return result("not testable", f"no {model} run on {d}", columns=COLUMNS)
        rows[model] = _epoch_rows(view, d, model)
        if not rows[model]:
            return result("not testable", f"{model} records on {d} carry no checkpoint.best_epoch", columns=COLUMNS)
    evidence = rows[target] + rows[other]
    t = np.array([r["epochs_to_best"] for r in rows[target]], float)
    o = np.array([r["epochs_to_best"] for r in rows[other]], float)
    w = stats.welch(t, o)
    summary = (f"epochs to the best validation checkpoint: {target} {t.mean():.1f}, {other} {o.mean():.1f} "
               f"(Welch p {p_value_short(w['p'])})")
    t_cens = sum(r["censored"] for r in rows[target])
    o_cens = sum(r["censored"] for r in rows[other])
    if t_cens:
        return result("not testable", f"{target} ran to the epoch cap in {t_cens} of {len(t)} seeds, so its "
                      f"convergence point is not observed at this budget; {summary}", evidence, COLUMNS, welch_p=w["p"])
    if t.mean() < o.mean():
        note = f"; {other} ran to the epoch cap in {o_cens} seeds (its value is a lower bound)" if o_cens else ""
        return result("holds", summary + note, evidence, COLUMNS, welch_p=w["p"])
    if o_cens:
        return result("not testable", f"{other} ran to the epoch cap in {o_cens} of {len(o)} seeds and {target} "
                      f"needed as many epochs or more; {summary}", evidence, COLUMNS, welch_p=w["p"])
    return result("does not hold", summary, evidence, COLUMNS, welch_p=w["p"])
