"""Welch's unequal-variance t-test over seeds, its interval, and Cohen's d (``WELCH_NOTE``)."""
from __future__ import annotations

import math
import warnings

import numpy as np
from scipy import stats as sps

from bench.stats.notes import LEVEL


def cohens_d(a, b) -> float:
    """Cohen's d of ``a`` over ``b`` (1-D), pooled sd sqrt(((na-1)sa² + (nb-1)sb²)/(na+nb-2)).

    0 when both means and spreads are equal; ±inf for a mean difference with zero spread.
    """
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    na, nb = len(a), len(b)
    if na < 1 or nb < 1 or na + nb < 3:
        return math.nan
    va = a.var(ddof=1) if na > 1 else 0.0
    vb = b.var(ddof=1) if nb > 1 else 0.0
    pooled = math.sqrt(((na - 1) * va + (nb - 1) * vb) / (na + nb - 2))
    diff = float(a.mean() - b.mean())
    if pooled == 0.0:
        return 0.0 if diff == 0.0 else math.copysign(math.inf, diff)
    return diff / pooled



def welch(a, b) -> dict:
    """Two-sided Welch t-test of seed values ``a`` (n_a,) against ``b`` (n_b,).

    Returns dict n_a, n_b, mean_a, mean_b, diff (mean_a - mean_b), t, df, p, cohen_d.
    p is NaN with fewer than two seeds on a side; 1 when both sides are identical constants.
    """
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    a, b = a[np.isfinite(a)], b[np.isfinite(b)]
    out = {"n_a": len(a), "n_b": len(b),
           "mean_a": float(a.mean()) if len(a) else math.nan,
           "mean_b": float(b.mean()) if len(b) else math.nan}
    out["diff"] = out["mean_a"] - out["mean_b"]
    out["cohen_d"] = cohens_d(a, b)
    if len(a) < 2 or len(b) < 2:
        return {**out, "t": math.nan, "df": math.nan, "p": math.nan}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        res = sps.ttest_ind(a, b, equal_var=False)
    t, p, df = float(res.statistic), float(res.pvalue), float(res.df)
    if math.isnan(p) and out["diff"] == 0.0:  # both constant and equal
        t, p = 0.0, 1.0
    return {**out, "t": t, "df": df, "p": p}



def welch_interval(a, b, level: float = LEVEL) -> tuple[float, float]:
    """Welch t-interval of mean(a) - mean(b) for seed values ``a`` (n_a,) and ``b`` (n_b,).

    (nan, nan) with fewer than two values on a side; (d, d) when both sides are constant.
    """
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if len(a) < 2 or len(b) < 2:
        return (math.nan, math.nan)
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    diff = float(a.mean() - b.mean())
    se = math.sqrt(va + vb)
    if se == 0.0:
        return (diff, diff)
    df = (va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1))
    half = float(sps.t.ppf(0.5 + level / 2, df)) * se
    return (diff - half, diff + half)

