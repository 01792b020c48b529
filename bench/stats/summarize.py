"""Seed summaries: mean, sample std and Student-t interval over seeds; best and second best of a row."""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import pandas as pd
from scipy import stats as sps

from bench.stats.notes import LEVEL


def t_interval(values, level: float = LEVEL) -> tuple[float, float]:
    """Student-t confidence interval for the mean of ``values`` (1-D, NaNs dropped).

    Returns (nan, nan) with fewer than two values; (m, m) when they are all equal.
    """
    x = np.asarray(values, dtype=np.float64)
    x = x[np.isfinite(x)]
    n = len(x)
    if n < 2:
        return (math.nan, math.nan)
    mean, sem = float(x.mean()), float(x.std(ddof=1)) / math.sqrt(n)
    half = float(sps.t.ppf(0.5 + level / 2, n - 1)) * sem
    return (mean - half, mean + half)



def summarize(values: pd.DataFrame, by: Sequence[str] = ("dataset", "model", "metric"),
              value: str = "value", level: float = LEVEL) -> pd.DataFrame:
    """Mean ± sample std (ddof=1) and t-interval over seeds.

    values: long frame with the ``by`` columns and ``value`` (one row per seed).
    Returns one row per ``by`` group with columns ``by`` + n, mean, std, ci_low, ci_high
    (std, ci_* are NaN for a single seed).
    """
    by = list(by)
    if values.empty:
        return pd.DataFrame(columns=by + ["n", "mean", "std", "ci_low", "ci_high"])
    grouped = values.groupby(by, sort=False, dropna=False)[value]
    out = grouped.agg(n="count", mean="mean", std=lambda s: s.std(ddof=1)).reset_index()
    n = out["n"].to_numpy(dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        half = sps.t.ppf(0.5 + level / 2, np.maximum(n - 1, 1)) * out["std"].to_numpy() / np.sqrt(n)
    half = np.where(n >= 2, half, np.nan)
    out["ci_low"] = out["mean"] - half
    out["ci_high"] = out["mean"] + half
    return out



def summarize_breakdown(rows: pd.DataFrame, level: float = LEVEL) -> pd.DataFrame:
    """Seed summary of a breakdown.

    rows: one row per (dataset, model, seed, kind, group, metric) with ``value`` and
    ``n_users``.  Returns per (dataset, model, kind, group, metric): n (seeds), mean,
    std, ci_low, ci_high, n_users (mean users per seed in the group).
    """
    by = ["dataset", "model", "kind", "group", "metric"]
    if rows.empty:
        return pd.DataFrame(columns=by + ["n", "mean", "std", "ci_low", "ci_high", "n_users"])
    out = summarize(rows, by=by, level=level)
    users = rows.groupby(by, sort=False, dropna=False)["n_users"].mean().reset_index()
    return out.merge(users, on=by, how="left")



def best_and_second(means: pd.Series) -> tuple[set, set]:
    """Labels with the highest mean (ties all best) and the next distinct mean."""
    m = means.dropna()
    if m.empty:
        return set(), set()
    levels = np.unique(m.to_numpy())[::-1]
    best = set(m.index[m == levels[0]])
    second = set(m.index[m == levels[1]]) if len(levels) > 1 else set()
    return best, second

