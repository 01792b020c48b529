"""Model against model per (dataset, metric): the headline two-level bootstrap, Welch over seeds and
paired tests over users on the common seeds; every pair, DiffuRec against the best baseline
(Table 2), variants against a reference (Table 3, controls).  Holm adjustment: ``families``.

Inputs
------
values:   seed-value frame (dataset, model, seed, metric, value).
per_seed: {(dataset, model): {seed: (len(store.METRICS), n_users) per-user values}}, rows in
          the order of ``bench.store.METRICS``, the same users in the same order for every run
          of a dataset; a missing key leaves the tests over users (and the headline test) NaN.
"""
from __future__ import annotations

import math
import warnings
from itertools import combinations
from typing import Mapping, Sequence

import numpy as np
import pandas as pd
from scipy import stats as sps

from bench.stats.families import adjust
from bench.stats.hierarchical_bootstrap import (BOOT_SEED, EMPTY, N_BOOT, UserDraws, compare_replicates,
                                                compare_runs, interaction_variance, interaction_ab)
from bench.stats.paired import paired
from bench.stats.welch import welch
from bench.store import METRICS as STORE_METRICS

P_COLUMNS = ("hb_p", "seeds_p", "paired_p", "wilcoxon_p")

COLUMNS = [
    "dataset", "metric", "model_a", "model_b", "n_seeds_a", "n_seeds_b", "mean_a", "mean_b", "diff",
    "hb_ci_low", "hb_ci_high", "hb_p", "p_a_beats_b", "hb_note",
    "seeds_test", "seeds_t", "seeds_df", "seeds_p", "cohen_d",
    "common_seeds", "n_users", "paired_diff", "paired_ci_low", "paired_ci_high", "paired_t", "paired_p",
    "wilcoxon_w", "wilcoxon_p",
]


def _seed_key(s):
    return (0, int(s)) if isinstance(s, (int, np.integer)) or str(s).isdigit() else (1, str(s))


class Comparer:
    """Every test of a comparison; the bootstrap's user draws and replicate means are made once
    per dataset and model and shared by all comparisons (so a comparison shown in two files has
    the same headline p)."""

    def __init__(self, values: pd.DataFrame, per_seed: Mapping, n_boot: int = N_BOOT, seed: int = BOOT_SEED):
        self.per_seed, self.n_boot, self.seed = per_seed, n_boot, seed
        self.lookup = ({} if values.empty else
                       {key: grp.to_numpy(np.float64)
                        for key, grp in values.groupby(["dataset", "metric", "model"], sort=False)["value"]})
        self._draws, self._reps, self._stacks = {}, {}, {}

    # ------------------------------------------------------------------ per-user data
    def _stack(self, dataset, model):
        """(seeds, (n_seeds, n_metrics, n_users) float32) of a model, or None without per-user values."""
        key = (dataset, model)
        if key not in self._stacks:
            mats = self.per_seed.get(key) or {}
            seeds = sorted(mats, key=_seed_key)
            self._stacks[key] = (seeds, np.stack([np.asarray(mats[s], np.float32) for s in seeds])) if seeds else None
        return self._stacks[key]

    def _replicates(self, dataset, model):
        """(n_boot, n_seeds, n_metrics) replicate means over the dataset's shared user draws."""
        key = (dataset, model)
        if key not in self._reps:
            seeds, x = self._stack(dataset, model)
            u = x.shape[2]
            draws = self._draws.setdefault((dataset, u), UserDraws(u, self.n_boot, self.seed, keep=True))
            self._reps[key] = draws.means(x.reshape(-1, u)).reshape(self.n_boot, x.shape[0], x.shape[1])
        return self._reps[key]

    def headline(self, dataset, metric, a, b, same_training=False):
        """:class:`BootstrapResult` of a - b (EMPTY without per-user values on a side)."""
        sa, sb = self._stack(dataset, a), self._stack(dataset, b)
        if sa is None or sb is None:
            return EMPTY
        i = STORE_METRICS.index(metric)
        (seeds_a, xa), (seeds_b, xb) = sa, sb
        xa, xb = xa[:, i, :].astype(np.float64), xb[:, i, :].astype(np.float64)
        if same_training:
            common = [s for s in seeds_a if s in set(seeds_b)]
            ia, ib = [seeds_a.index(s) for s in common], [seeds_b.index(s) for s in common]
            if not common:
                return EMPTY
            xa, xb = xa[ia], xb[ib]
        else:
            ia, ib = list(range(len(seeds_a))), list(range(len(seeds_b)))
        if xa.shape[1] != xb.shape[1] or not (np.isfinite(xa).all() and np.isfinite(xb).all()):
            keep = np.isfinite(xa).all(axis=0) & np.isfinite(xb).all(axis=0) if xa.shape[1] == xb.shape[1] else None
            if keep is None or not keep.any():
                return EMPTY  # users differ between runs: collect() has noted it
            return compare_runs(dict(enumerate(xa[:, keep])), dict(enumerate(xb[:, keep])), n_boot=self.n_boot,
                                seed=self.seed, same_training=same_training)
        ma = self._replicates(dataset, a)[:, ia, i]
        mb = self._replicates(dataset, b)[:, ib, i]
        inter = interaction_variance(xa - xb) if same_training else interaction_ab(xa, xb)
        return compare_replicates(ma, mb, xa.mean(axis=1), xb.mean(axis=1), xa.shape[1], same_training,
                                  seed=self.seed, interaction=inter)

    def over_users(self, dataset, metric, a, b) -> tuple[str, dict]:
        """Paired tests over users of per-user values averaged over the seeds both runs have."""
        sa, sb = self._stack(dataset, a), self._stack(dataset, b)
        if sa is None or sb is None:
            return "", paired([], [])
        common = [s for s in sa[0] if s in set(sb[0])]
        if not common:
            return "none", paired([], [])
        i = STORE_METRICS.index(metric)
        ua = sa[1][[sa[0].index(s) for s in common], i, :].astype(np.float64).mean(axis=0)
        ub = sb[1][[sb[0].index(s) for s in common], i, :].astype(np.float64).mean(axis=0)
        return ",".join(str(s) for s in common), paired(ua, ub)

    # ------------------------------------------------------------------ one row
    def row(self, dataset, metric: str, a: str, b: str, same_training: bool = False) -> dict:
        """Every column of ``COLUMNS`` for a - b (see ``bench.stats.notes`` for each test)."""
        va = self.lookup.get((dataset, metric, a), np.zeros(0))
        vb = self.lookup.get((dataset, metric, b), np.zeros(0))
        w = welch(va, vb)
        row = {"dataset": dataset, "metric": metric, "model_a": a, "model_b": b, "n_seeds_a": w["n_a"],
               "n_seeds_b": w["n_b"], "mean_a": w["mean_a"], "mean_b": w["mean_b"], "diff": w["diff"]}
        hb = self.headline(dataset, metric, a, b, same_training)
        row.update({"hb_ci_low": hb.ci_low, "hb_ci_high": hb.ci_high, "hb_p": hb.p, "p_a_beats_b": hb.p_a_beats_b,
                    "hb_note": hb.note})
        row.update(_over_seeds(va, vb, w, same_training, self._stack(dataset, a), self._stack(dataset, b),
                               self.lookup, dataset, metric, a, b))
        common, pr = self.over_users(dataset, metric, a, b)
        row.update({"common_seeds": common, "n_users": pr["n"], "paired_diff": pr["mean_diff"],
                    "paired_ci_low": pr["ci_low"], "paired_ci_high": pr["ci_high"], "paired_t": pr["t"],
                    "paired_p": pr["p_t"], "wilcoxon_w": pr["w"], "wilcoxon_p": pr["p_w"]})
        return row


def _over_seeds(va, vb, w, same_training, sa, sb, lookup, dataset, metric, a, b) -> dict:
    """Welch over seeds for independent models; a paired t over the common seeds for two evaluations
    of one trained model.  No statistic and no effect size with one seed on a side."""
    if not same_training:
        if w["n_a"] < 2 or w["n_b"] < 2:
            return {"seeds_test": "–", "seeds_t": math.nan, "seeds_df": math.nan, "seeds_p": math.nan,
                    "cohen_d": math.nan}
        return {"seeds_test": "Welch", "seeds_t": w["t"], "seeds_df": w["df"], "seeds_p": w["p"],
                "cohen_d": w["cohen_d"]}
    # seed values in the per-seed order, matched by seed
    if sa is None or sb is None:
        return {"seeds_test": "–", "seeds_t": math.nan, "seeds_df": math.nan, "seeds_p": math.nan, "cohen_d": math.nan}
    i = STORE_METRICS.index(metric)
    common = [s for s in sa[0] if s in set(sb[0])]
    x = np.array([float(np.nanmean(sa[1][sa[0].index(s), i])) for s in common])
    y = np.array([float(np.nanmean(sb[1][sb[0].index(s), i])) for s in common])
    if len(common) < 2:
        return {"seeds_test": "–", "seeds_t": math.nan, "seeds_df": math.nan, "seeds_p": math.nan, "cohen_d": math.nan}
    d = x - y
    if not np.any(d - d.mean()):
        t, p = (0.0, 1.0) if not d.any() else (math.copysign(math.inf, d.mean()), 0.0)
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            res = sps.ttest_rel(x, y)
        t, p = float(res.statistic), float(res.pvalue)
    return {"seeds_test": "paired t (same runs)", "seeds_t": t, "seeds_df": float(len(common) - 1), "seeds_p": p,
            "cohen_d": math.nan}


def _frame(rows: list, extra: Sequence[str] = ()) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=COLUMNS + list(extra))


def pairwise(values: pd.DataFrame, per_seed: Mapping, metrics: Sequence[str],
             models: Sequence[str] | None = None, comparer: Comparer | None = None) -> pd.DataFrame:
    """Every model against every other, per (dataset, metric), in ``models`` order (default: all).

    Returns one row per (dataset, metric, model_a, model_b) with ``COLUMNS`` (no Holm: see
    ``families.quote``)."""
    comparer = comparer or Comparer(values, per_seed)
    rows = []
    for dataset in pd.unique(values["dataset"]):
        present = set(values.loc[values["dataset"] == dataset, "model"])
        order = [m for m in (models or pd.unique(values["model"])) if m in present]
        for metric in metrics:
            for a, b in combinations(order, 2):
                rows.append(comparer.row(dataset, metric, a, b))
    return _frame(rows)


def versus_best(values: pd.DataFrame, per_seed: Mapping, metrics: Sequence[str],
                target: str = "DiffuRec", baselines: Sequence[str] | None = None,
                comparer: Comparer | None = None, family: str = "table2") -> pd.DataFrame:
    """``target`` against the strongest baseline (highest seed mean) of each (dataset, metric).

    Returns one row per (dataset, metric) where both exist: ``COLUMNS`` (model_a = target, model_b
    = best baseline), ``improv_pct`` = 100 (mean_a / mean_b - 1) as in the paper's "Improv."
    column, and Holm columns over the frame, one family named ``family``.
    """
    comparer = comparer or Comparer(values, per_seed)
    rows = []
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
            row = comparer.row(dataset, metric, target, best)
            row["improv_pct"] = 100.0 * (row["mean_a"] / row["mean_b"] - 1.0) if row["mean_b"] else math.nan
            rows.append(row)
    return adjust(_frame(rows, ["improv_pct"]), family, P_COLUMNS)


def versus_reference(values: pd.DataFrame, per_seed: Mapping, metrics: Sequence[str],
                     reference: str, others: Sequence[str], comparer: Comparer | None = None,
                     same_training: Sequence[str] = (), family: str = "table3") -> pd.DataFrame:
    """Each of ``others`` (model_a) against ``reference`` (model_b) per (dataset, metric).

    ``same_training``: the others that are evaluations of the reference's own trained runs
    (``DiffuRec@x_T=0``): compared paired within each seed.  Columns as :func:`pairwise` plus
    ``change_pct`` = 100 (mean_a / mean_b - 1); Holm over the frame, one family ``family``.
    """
    comparer = comparer or Comparer(values, per_seed)
    rows = []
    for dataset in pd.unique(values["dataset"]):
        present = set(values.loc[values["dataset"] == dataset, "model"])
        if reference not in present:
            continue
        for metric in metrics:
            for other in others:
                if other in present and other != reference:
                    row = comparer.row(dataset, metric, other, reference, same_training=other in set(same_training))
                    row["change_pct"] = 100.0 * (row["mean_a"] / row["mean_b"] - 1.0) if row["mean_b"] else math.nan
                    rows.append(row)
    return adjust(_frame(rows, ["change_pct"]), family, P_COLUMNS)
