"""Paired tests over users: t-test with its interval, and the Wilcoxon signed-rank test (``PAIRED_NOTE``)."""
from __future__ import annotations

import math
import warnings

import numpy as np
from scipy import stats as sps

from bench.stats.notes import LEVEL

WILCOXON_ZERO_METHOD = "pratt"  # Pratt (1959): zero differences are ranked, then their ranks dropped


def paired(x, y, level: float = LEVEL) -> dict:
    """Paired tests over users of per-user values ``x`` and ``y`` (both (n_users,)).

    Pairs with a non-finite side are dropped.  Returns dict n, mean_diff (x - y),
    ci_low, ci_high (t-interval of the mean difference), t, p_t (ttest_rel),
    w (Wilcoxon statistic), p_w (Wilcoxon, zero differences by Pratt's method, which keeps
    them in the ranking instead of dropping them; p = 1 if all differences are zero).
    Callers pair runs of the same seeds (``compare``: the common seeds).
    """
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    keep = np.isfinite(x) & np.isfinite(y)
    d = x[keep] - y[keep]
    n = int(len(d))
    out = {"n": n, "mean_diff": float(d.mean()) if n else math.nan}
    if n < 2:
        return {**out, "ci_low": math.nan, "ci_high": math.nan, "t": math.nan, "p_t": math.nan,
                "w": math.nan, "p_w": math.nan}
    if not np.any(d):
        return {**out, "ci_low": 0.0, "ci_high": 0.0, "t": 0.0, "p_t": 1.0, "w": 0.0, "p_w": 1.0}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        warnings.simplefilter("ignore", UserWarning)  # scipy: exact distribution unavailable with zeros
        res = sps.ttest_rel(x[keep], y[keep])
        ci = res.confidence_interval(confidence_level=level)
        w = sps.wilcoxon(d, zero_method=WILCOXON_ZERO_METHOD)
    return {**out, "ci_low": float(ci.low), "ci_high": float(ci.high), "t": float(res.statistic),
            "p_t": float(res.pvalue), "w": float(w.statistic), "p_w": float(w.pvalue)}
