"""Holm-Bonferroni adjustment of a family of p-values (``HOLM_NOTE``)."""
from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd


def holm(pvalues) -> np.ndarray:
    """Holm–Bonferroni adjusted p-values (step-down), NaNs ignored and kept.

    For the m finite p-values sorted ascending p(1) <= ... <= p(m):
    adj(i) = min(1, max_{j<=i} (m - j + 1) p(j)), mapped back to input order.
    Example: [0.01, 0.04, 0.03, 0.005] -> [0.03, 0.06, 0.06, 0.02].
    (statsmodels' multipletests(method='holm') gives the same; it is not a dependency.)
    """
    p = np.asarray(pvalues, dtype=np.float64)
    out = np.full(p.shape, np.nan)
    finite = np.flatnonzero(np.isfinite(p))
    m = len(finite)
    if m == 0:
        return out
    order = finite[np.argsort(p[finite], kind="stable")]
    scaled = (m - np.arange(m)) * p[order]
    out[order] = np.minimum(np.maximum.accumulate(scaled), 1.0)
    return out



def add_holm(frame: pd.DataFrame, columns: Sequence[str], family: Sequence[str] = ()) -> pd.DataFrame:
    """Copy of ``frame`` with ``<col>_holm`` for each p-value column in ``columns``.

    The family is the whole frame, or each group of ``family`` columns if given.
    """
    out = frame.copy()
    for col in columns:
        if out.empty:
            out[f"{col}_holm"] = pd.Series(dtype=float)
            continue
        if family:
            out[f"{col}_holm"] = out.groupby(list(family), sort=False)[col].transform(
                lambda s: pd.Series(holm(s.to_numpy()), index=s.index))
        else:
            out[f"{col}_holm"] = holm(out[col].to_numpy())
    return out

