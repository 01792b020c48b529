"""How many seeds: the smallest difference each Table 2 comparison could detect (``power.md``, ``power.csv``).

For DiffuRec against each baseline of every Table 2 row (dataset x metric), the measured seed
variances and the test users' variance (``bench.stats.power``) give the difference the headline
test detects with 80 % power at two-sided 5 % with 3 and with 5 seeds per model, beside the
paper's margin for that comparison (its DiffuRec minus its baseline, ``bench/paper_tables/table2.csv``).
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from bench.fmt import dataset_title, md_table, order_datasets, pct
from bench.report.collect import METRICS, TARGET
from bench.report.context import Context, Table
from bench.report.gap import paper_table
from bench.stats import ALPHA
from bench.stats.power import POWER, detectable_difference, variance_terms
from bench.store import METRICS as STORE_METRICS

SEEDS = (3, 5)  # the seed counts the report projects to (issue 26)

COLUMNS = ["dataset", "metric", "model_a", "model_b", "n_seeds_a", "n_seeds_b", "seed_sd_a", "seed_sd_b",
           "user_se", "diff", *(f"mdd_{n}" for n in SEEDS), "paper_margin", "paper_detectable_3", "note"]


def _stack(per_seed: dict, dataset: str, model: str) -> np.ndarray | None:
    """(n_seeds, n_metrics, n_users) per-user values of a model, or None without them."""
    mats = per_seed.get((dataset, model)) or {}
    return np.stack([np.asarray(m, np.float64) for m in mats.values()]) if mats else None


def paper_margins() -> dict:
    """{(dataset, metric, baseline): the paper's DiffuRec minus that baseline (fraction)}."""
    frame = paper_table("table2")
    out = {}
    for (dataset, metric), g in frame.groupby(["dataset", "metric"]):
        vals = dict(zip(g["model"], g["value_percent"] / 100.0))
        if TARGET in vals:
            out.update({(dataset, metric, m): vals[TARGET] - v for m, v in vals.items() if m != TARGET})
    return out


def _row(dataset: str, metric: str, base: str, xa: np.ndarray, xb: np.ndarray, margin: float) -> dict:
    """One comparison DiffuRec − ``base``: xa (n_seeds_a, n_users), xb (n_seeds_b, n_users) of ``metric``."""
    keep = np.isfinite(xa).all(axis=0) & np.isfinite(xb).all(axis=0)  # users both ranked, as the headline test
    terms = variance_terms(xa[:, keep], xb[:, keep])
    mdd = {n: detectable_difference(terms, n) for n in SEEDS}
    note = terms.note.replace("A has", f"{TARGET} has").replace("A's", f"{TARGET}'s")
    note = note.replace("B has", f"{base} has").replace("B's", f"{base}'s")
    return {"dataset": dataset, "metric": metric, "model_a": TARGET, "model_b": base,
            "n_seeds_a": terms.n_seeds_a, "n_seeds_b": terms.n_seeds_b,
            "seed_sd_a": math.sqrt(terms.seed_var_a) if np.isfinite(terms.seed_var_a) else math.nan,
            "seed_sd_b": math.sqrt(terms.seed_var_b) if np.isfinite(terms.seed_var_b) else math.nan,
            "user_se": math.sqrt(terms.user_var) if np.isfinite(terms.user_var) else math.nan,
            "diff": float(xa[:, keep].mean() - xb[:, keep].mean()), **{f"mdd_{n}": v for n, v in mdd.items()},
            "paper_margin": margin,
            "paper_detectable_3": (bool(abs(margin) >= mdd[3]) if np.isfinite(margin) and np.isfinite(mdd[3])
                                   else None),
            "note": note}


def power_frame(per_seed: dict, main_models: dict, margins: dict | None = None) -> pd.DataFrame:
    """One row per (dataset, metric, baseline) of Table 2: ``COLUMNS`` (fractions; mdd_n = detectable
    difference with n seeds per model)."""
    margins = paper_margins() if margins is None else margins
    rows = []
    for dataset in order_datasets(main_models):
        models = main_models[dataset]
        a = _stack(per_seed, dataset, TARGET) if TARGET in models else None
        if a is None:
            continue
        for metric in METRICS:
            i = STORE_METRICS.index(metric)
            for base in (m for m in models if m != TARGET):
                b = _stack(per_seed, dataset, base)
                if b is None or b.shape[2] != a.shape[2]:
                    continue
                rows.append(_row(dataset, metric, base, a[:, i, :], b[:, i, :],
                                 margins.get((dataset, metric, base), math.nan)))
    return pd.DataFrame(rows, columns=COLUMNS)


def _pts(x) -> str:
    return pct(x, 2)


POWER_HEADER = ("**Test of this report:** the headline test (two-level bootstrap over seeds and test users, "
                "bench/stats/hierarchical_bootstrap.py) for each comparison on its own, two-sided α = "
                f"{ALPHA}, power {POWER:.0%}; no Holm family (the family-adjusted threshold of "
                "significance_table2.md is stricter, so these differences are lower bounds for it). "
                "Comparisons: DiffuRec against every baseline of every Table 2 row (dataset × the six metrics).")


def _md(frame: pd.DataFrame) -> str:
    header = ["Dataset", "Metric", "Baseline", "Seeds (DiffuRec/B)", "Seed SD DiffuRec / B", "User SE",
              "Ours Δ", *(f"Detectable Δ, {n} seeds" for n in SEEDS), "Paper Δ", "Paper Δ detectable (3 seeds)",
              "Note"]
    rows = [[dataset_title(r["dataset"]), r["metric"], r["model_b"], f"{r['n_seeds_a']}/{r['n_seeds_b']}",
             f"{_pts(r['seed_sd_a'])} / {_pts(r['seed_sd_b'])}", _pts(r["user_se"]), _pts(r["diff"]),
             *(_pts(r[f"mdd_{n}"]) for n in SEEDS), _pts(r["paper_margin"]),
             {True: "yes", False: "no"}.get(r["paper_detectable_3"], "–"), r["note"]]
            for _, r in frame.iterrows()]
    judged = frame[frame["paper_detectable_3"].notna()]
    summary = ""
    if len(judged):
        summary = (f"The paper's margin is at least the difference detectable with 3 seeds in "
                   f"{int(judged['paper_detectable_3'].astype(bool).sum())} of {len(judged)} comparisons.\n\n")
    return ("# How many seeds: detectable differences of the Table 2 comparisons (percentage points)\n\n"
            + POWER_HEADER + "\n\n" + summary + md_table(header, rows)
            + "\nDetectable Δ: the smallest |DiffuRec − baseline| the headline test finds at "
              f"{POWER:.0%} power, two-sided α = {ALPHA}, with n seeds per model, from SE² = σ²_DiffuRec/n + σ²_B/n "
              "+ (user SE)² and the noncentral t with Welch–Satterthwaite df (Cohen 1988, ch. 2; "
              "bench/stats/power.py). Seed SD: sample SD (ddof = 1) of the seed means; user SE: the test users' "
              "share of the standard error of the paired difference, the seed × user interaction removed, as in "
              "the headline test. The measured variances are taken as the true ones, an approximation that with "
              "2–3 seeds is itself uncertain. A model with one seed takes the other model's seed variance (the "
              "headline test's pooled-variance assumption; Note); with one seed on both sides the cell is not "
              "estimated (–). Paper Δ: the paper's DiffuRec minus the paper's baseline (Table 2, "
              "bench/paper_tables/table2.csv).\n")


def power(ctx: Context) -> list[Table]:
    """How many seeds: detectable differences of DiffuRec against each Table 2 baseline with 3 and 5 seeds."""
    frame = power_frame(ctx.col.per_seed, ctx.col.main_models)
    if not len(frame):
        ctx.notes.append("power.md not written: no DiffuRec and baseline runs with per-user values")
        return []
    return [Table("How many seeds (power of the Table 2 comparisons)", "power", _md(frame), frame)]
