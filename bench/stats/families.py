"""Holm families: each comparison is corrected once, in one declared family, and quoted from it.

A report declares its family (which comparisons, which metrics) in its header; every other
file that shows one of those comparisons quotes the adjusted p of that family, named in a
``family`` column, instead of correcting it again over its own rows.  The families of a
profile's reports (docs/statistics.md "Families"):

* ``table2``: DiffuRec against the best baseline of every Table 2 row (dataset x metric);
* ``pairs-<dataset>``: the other pairs of Table 2 models on one dataset (every metric);
* ``table3``: each ablation against full DiffuRec, every dataset x metric;
* ``controls``: each control against DiffuRec, every dataset x metric of ``controls.md``.

Each test kind (headline, over seeds, over users) is adjusted within the family separately.
"""
from __future__ import annotations

from typing import Sequence

import pandas as pd

from bench.stats.holm import holm

KEY = ["dataset", "metric", "model_a", "model_b"]


def adjust(frame: pd.DataFrame, name: str, columns: Sequence[str]) -> pd.DataFrame:
    """Copy of ``frame`` (one family) with ``<col>_holm`` per p column and ``family`` = name."""
    out = frame.copy()
    for col in columns:
        out[f"{col}_holm"] = holm(out[col].to_numpy(dtype=float)) if len(out) else pd.Series(dtype=float)
    out["family"] = name
    return out


def quote(frame: pd.DataFrame, earlier: Sequence[pd.DataFrame], name: str, columns: Sequence[str]) -> pd.DataFrame:
    """``frame`` with adjusted p: rows already in an ``earlier`` family take its values and name,
    the others are one new family ``name``.  Row order is kept."""
    out = frame.copy().reset_index(drop=True)
    held = [f for f in earlier if f is not None and len(f)]
    quoted = pd.Series(False, index=out.index)
    cols = [f"{c}_holm" for c in columns] + ["family"]
    for col in cols:
        out[col] = pd.Series([None] * len(out), index=out.index, dtype=object)
    for fam in held:
        lookup = fam.set_index(KEY)[cols]
        for i, key in enumerate(out[KEY].itertuples(index=False, name=None)):
            if not quoted[i] and key in lookup.index:
                out.loc[i, cols] = lookup.loc[key].to_numpy()
                quoted[i] = True
    rest = out.index[~quoted]
    if len(rest):
        fresh = adjust(out.loc[rest], name, columns)
        out.loc[rest, cols] = fresh[cols].to_numpy()
    for col in cols[:-1]:
        out[col] = out[col].astype(float)
    return out
