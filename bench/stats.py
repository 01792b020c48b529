"""Statistics over the results store: seed summaries, significance tests, breakdowns.

Every function is pure: it takes pandas DataFrames / numpy arrays (shapes in the
docstrings) and returns new ones; nothing here reads files.  The report layer
(``bench/report``, ``bench/audit``) turns records and ``ranks.npz`` arrays into these inputs.

Conventions
-----------
* A *seed-value frame* is long-form, one row per (dataset, model, seed, metric)
  with a float ``value`` (a fraction in [0, 1], as in the records).
* A *per-user matrix* is a float64 array of shape ``(n_metrics, n_users)``: row i
  is the per-user value of metric ``metrics[i]`` (``bench.store.per_user_metric``),
  averaged over the seeds of one (dataset, model).  All runs of one (profile,
  dataset) evaluate the same users in the same order, so columns line up.
* Tests are two-sided at level ``ALPHA``.

The paper reports a "Student t-test" without saying which; over seeds we use
Welch's unequal-variance t-test (``scipy.stats.ttest_ind(equal_var=False)``), and
over users a paired t-test (``scipy.stats.ttest_rel``) with the Wilcoxon
signed-rank test (``scipy.stats.wilcoxon``) beside it.  Multiple comparisons are
corrected with Holm–Bonferroni within each table (:func:`holm`).
"""
from __future__ import annotations

import math
import warnings
from itertools import combinations
from typing import Mapping, Sequence

import numpy as np
import pandas as pd
from scipy import stats as sps

ALPHA = 0.05
LEVEL = 0.95

WELCH_NOTE = (
    "The paper's significance test is an unspecified \"Student t-test\"; over seeds we use "
    "Welch's two-sided t-test (unequal variances, scipy.stats.ttest_ind(equal_var=False)), "
    "Cohen's d with the pooled standard deviation as its effect size."
)
PAIRED_NOTE = (
    "Paired over users: per-user metric values averaged over each model's seeds, compared "
    "user by user with a two-sided paired t-test (scipy.stats.ttest_rel; effect size = mean "
    "paired difference with its 95% t-interval) and the Wilcoxon signed-rank test "
    "(scipy.stats.wilcoxon, zero differences dropped; p = 1 when every difference is zero)."
)
HOLM_NOTE = (
    "p-values are Holm–Bonferroni adjusted within each table (the family is every test of "
    "the same kind in that table); 'significant' means adjusted p < 0.05."
)
LENGTH_RULE = (
    "Sequence-length groups: q20, q40, q60, q80 = numpy.quantile(hist_len, [.2, .4, .6, .8]) "
    "(default linear interpolation) over the dataset's evaluated users, hist_len = the test-time "
    "history length before truncation. Groups are half-open on the left: G1 = [min, q20], "
    "G2 = (q20, q40], G3 = (q40, q60], G4 = (q60, q80], G5 = (q80, max] (group index = "
    "numpy.searchsorted(q, hist_len, side='left')), so a length equal to a boundary falls in the "
    "lower group. With many ties (short-sequence data) a group can still be empty; it is then "
    "shown as missing."
)


# --------------------------------------------------------------------------- basics
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


def paired(x, y, level: float = LEVEL) -> dict:
    """Paired tests over users of per-user values ``x`` and ``y`` (both (n_users,)).

    Pairs with a non-finite side are dropped.  Returns dict n, mean_diff (x - y),
    ci_low, ci_high (t-interval of the mean difference), t, p_t (ttest_rel),
    w (Wilcoxon statistic), p_w (Wilcoxon; zero differences dropped, p = 1 if all zero).
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
        res = sps.ttest_rel(x[keep], y[keep])
        ci = res.confidence_interval(confidence_level=level)
        w = sps.wilcoxon(d)  # zero_method='wilcox': zero differences are dropped
    return {**out, "ci_low": float(ci.low), "ci_high": float(ci.high), "t": float(res.statistic),
            "p_t": float(res.pvalue), "w": float(w.statistic), "p_w": float(w.pvalue)}


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


# --------------------------------------------------------------------------- comparisons
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


# --------------------------------------------------------------------------- breakdowns
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
