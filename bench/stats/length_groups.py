"""Sequence-length groups of users (Fig. 9; ``LENGTH_RULE``) and per-group means."""
from __future__ import annotations

import numpy as np


def length_groups(hist_len, n_groups: int = 5) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Sequence-length group of every user (see ``LENGTH_RULE``).

    hist_len: (n_users,) ints.  Returns (group (n_users,) int in [0, n_groups),
    edges (n_groups - 1,) float quantile boundaries, labels (n_groups,) like "(5, 7]").
    """
    h = np.asarray(hist_len, dtype=np.float64)
    if len(h) == 0:
        return np.zeros(0, np.int64), np.full(n_groups - 1, np.nan), [f"G{i + 1}" for i in range(n_groups)]
    edges = np.quantile(h, np.arange(1, n_groups) / n_groups)
    group = assign_length_groups(h, edges)
    bounds = [h.min(), *edges, h.max()]
    fmt = lambda v: f"{v:g}"  # noqa: E731
    labels = [f"[{fmt(bounds[0])}, {fmt(bounds[1])}]"]
    labels += [f"({fmt(bounds[i])}, {fmt(bounds[i + 1])}]" for i in range(1, n_groups)]
    return group, edges, labels



def assign_length_groups(hist_len, edges) -> np.ndarray:
    """(n_users,) group index of each length for boundaries ``edges`` (see ``LENGTH_RULE``)."""
    return np.searchsorted(np.asarray(edges, np.float64), np.asarray(hist_len, np.float64), side="left")



def group_means(per_user: np.ndarray, group: np.ndarray, n_groups: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean of each row of ``per_user`` within each group.

    per_user: (n_metrics, n_users); group: (n_users,) ints in [0, n_groups).
    Returns (means (n_metrics, n_groups), NaN for an empty group; counts (n_groups,)).
    """
    per_user = np.atleast_2d(np.asarray(per_user, np.float64))
    group = np.asarray(group, np.int64)
    counts = np.bincount(group, minlength=n_groups).astype(np.float64)
    sums = np.stack([np.bincount(group, weights=row, minlength=n_groups) for row in per_user])
    with np.errstate(invalid="ignore", divide="ignore"):
        means = np.where(counts > 0, sums / counts, np.nan)
    return means, counts

