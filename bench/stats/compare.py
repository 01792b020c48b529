"""Model against model per (dataset, metric), Welch over seeds and paired over users, Holm-adjusted:
every pair, DiffuRec against the best baseline (Table 2), variants against a reference (Table 3, controls)."""
from __future__ import annotations

import math
from itertools import combinations
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from bench.stats.holm import add_holm
from bench.stats.paired import paired
from bench.stats.welch import welch


def _seed_lookup(values: pd.DataFrame) -> dict:
    """{(dataset, metric, model): (n_seeds,) values} of a seed-value frame."""
    if values.empty:
        return {}
    return {key: grp.to_numpy(np.float64)
            for key, grp in values.groupby(["dataset", "metric", "model"], sort=False)["value"]}



def _compare(lookup: dict, per_user: Mapping, dataset, metric: str, a: str, b: str,
             metrics: Sequence[str]) -> dict:
    va = lookup.get((dataset, metric, a), np.zeros(0))
    vb = lookup.get((dataset, metric, b), np.zeros(0))
    row = {"dataset": dataset, "metric": metric, "model_a": a, "model_b": b}
    w = welch(va, vb)
    row.update({"n_seeds_a": w["n_a"], "n_seeds_b": w["n_b"], "mean_a": w["mean_a"],
                "mean_b": w["mean_b"], "diff": w["diff"], "welch_t": w["t"], "welch_df": w["df"],
                "welch_p": w["p"], "cohen_d": w["cohen_d"]})
    ua, ub = per_user.get((dataset, a)), per_user.get((dataset, b))
    if ua is not None and ub is not None and metric in metrics:
        i = list(metrics).index(metric)
        pr = paired(ua[i], ub[i])
    else:
        pr = paired([], [])
    row.update({"n_users": pr["n"], "paired_diff": pr["mean_diff"], "paired_ci_low": pr["ci_low"],
                "paired_ci_high": pr["ci_high"], "paired_t": pr["t"], "paired_p": pr["p_t"],
                "wilcoxon_w": pr["w"], "wilcoxon_p": pr["p_w"]})
    return row



P_COLUMNS = ("welch_p", "paired_p", "wilcoxon_p")



def pairwise(values: pd.DataFrame, per_user: Mapping, metrics: Sequence[str],
             models: Sequence[str] | None = None, family: Sequence[str] = ("dataset",)) -> pd.DataFrame:
    """Every model against every other, per (dataset, metric), both tests.

    values:   seed-value frame (dataset, model, seed, metric, value).
    per_user: {(dataset, model): (n_metrics, n_users) seed-averaged per-user matrix},
              rows in the order of ``metrics``; a missing key skips the paired tests.
    models:   models to compare (default: all in ``values``), pairs in this order.
    family:   columns whose groups are one Holm family (default: one table per dataset).
    Returns one row per (dataset, metric, model_a, model_b) with the columns of
    :func:`_compare` plus ``welch_p_holm``, ``paired_p_holm``, ``wilcoxon_p_holm``.
    """
    rows, lookup = [], _seed_lookup(values)
    for dataset in pd.unique(values["dataset"]):
        present = set(values.loc[values["dataset"] == dataset, "model"])
        order = [m for m in (models or pd.unique(values["model"])) if m in present]
        for metric in metrics:
            for a, b in combinations(order, 2):
                rows.append(_compare(lookup, per_user, dataset, metric, a, b, metrics))
    frame = pd.DataFrame(rows, columns=_COMPARE_COLUMNS)
    return add_holm(frame, P_COLUMNS, family)



_COMPARE_COLUMNS = [
    "dataset", "metric", "model_a", "model_b", "n_seeds_a", "n_seeds_b", "mean_a", "mean_b", "diff",
    "welch_t", "welch_df", "welch_p", "cohen_d", "n_users", "paired_diff", "paired_ci_low",
    "paired_ci_high", "paired_t", "paired_p", "wilcoxon_w", "wilcoxon_p",
]



def versus_best(values: pd.DataFrame, per_user: Mapping, metrics: Sequence[str],
                target: str = "DiffuRec", baselines: Sequence[str] | None = None,
                family: Sequence[str] = ()) -> pd.DataFrame:
    """``target`` against the strongest baseline (highest seed mean) of each (dataset, metric).

    values / per_user as in :func:`pairwise`; baselines default to every other model.
    Returns one row per (dataset, metric) where both exist: the :func:`pairwise` columns
    (model_a = target, model_b = best baseline), ``improv_pct`` = 100 (mean_a / mean_b - 1)
    as in the paper's "Improv." column, and Holm columns over the whole frame (one table),
    or per ``family`` group.
    """
    rows, lookup = [], _seed_lookup(values)
    for dataset in pd.unique(values["dataset"]):
        for metric in metrics:
            sel = values[(values["dataset"] == dataset) & (values["metric"] == metric)]
            means = sel.groupby("model", sort=False)["value"].mean()
            if target not in means.index:
                continue
            base = means.drop(target)
            if baselines is not None:
                base = base[base.index.isin(list(baselines))]
            if base.empty:
                continue
            best = base.index[int(np.argmax(base.to_numpy()))]
            row = _compare(lookup, per_user, dataset, metric, target, best, metrics)
            with np.errstate(divide="ignore", invalid="ignore"):
                row["improv_pct"] = 100.0 * (row["mean_a"] / row["mean_b"] - 1.0) if row["mean_b"] else math.nan
            rows.append(row)
    frame = pd.DataFrame(rows, columns=_COMPARE_COLUMNS + ["improv_pct"])
    return add_holm(frame, P_COLUMNS, family)



def versus_reference(values: pd.DataFrame, per_user: Mapping, metrics: Sequence[str],
                     reference: str, others: Sequence[str], family: Sequence[str] = ()) -> pd.DataFrame:
    """Each of ``others`` (model_a) against ``reference`` (model_b) per (dataset, metric).

    Used for the ablation table (variant vs full DiffuRec).  Columns as :func:`pairwise`
    plus ``change_pct`` = 100 (mean_a / mean_b - 1); Holm over the frame or ``family`` groups.
    """
    rows, lookup = [], _seed_lookup(values)
    for dataset in pd.unique(values["dataset"]):
        present = set(values.loc[values["dataset"] == dataset, "model"])
        if reference not in present:
            continue
        for metric in metrics:
            for other in others:
                if other in present and other != reference:
                    row = _compare(lookup, per_user, dataset, metric, other, reference, metrics)
                    with np.errstate(divide="ignore", invalid="ignore"):
                        row["change_pct"] = (100.0 * (row["mean_a"] / row["mean_b"] - 1.0)
                                             if row["mean_b"] else math.nan)
                    rows.append(row)
    frame = pd.DataFrame(rows, columns=_COMPARE_COLUMNS + ["change_pct"])
    return add_holm(frame, P_COLUMNS, family)

