"""Significance tables: every pair of Table 2 models per dataset, and the shared layout.

``sig_md`` renders a frame of ``bench.stats`` comparisons (``pairwise``, ``versus_best``,
``versus_reference``: one row per (dataset, metric, A, B), Holm columns and ``family``); Tables
2 and 3 use it for their own tests (``bench.report.tables``).  The headline test is the two-level
bootstrap over seeds and users; Welch over seeds and the paired tests over users are secondary
columns, each labelled with what it conditions on.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from bench import stats
from bench.fmt import dataset_title, md_table, num, order_datasets, p_value, pct
from bench.report.collect import METRICS
from bench.report.context import Context, Table

SIG_HEADER = ["Dataset", "Metric", "A", "B", "Mean A (n)", "Mean B (n)",
              "Δ A−B [95% CI] (seeds+users)", "p (Holm)", "P(A>B)", "Family",
              "Welch p (Holm), users fixed", "Cohen's d",
              "Paired Δ [95% CI], models fixed (seeds)", "t-test p (Holm)", "Wilcoxon p (Holm)", "Note"]


def _ci(d, lo, hi) -> str:
    return f"{pct(d)} [{pct(lo)}, {pct(hi)}]" if np.isfinite(d) and np.isfinite(lo) else (pct(d) if np.isfinite(d) else "–")


def _p_pair(p, adj) -> str:
    return "–" if not np.isfinite(p) else f"{p_value(p)} ({p_value(adj)})"


def sig_row(r) -> list:
    """One comparison as the cells of ``SIG_HEADER``."""
    seeds = r.get("common_seeds") or "–"
    return [dataset_title(r["dataset"]), r["metric"], r["model_a"], r["model_b"],
            f"{pct(r['mean_a'])} ({int(r['n_seeds_a'])})", f"{pct(r['mean_b'])} ({int(r['n_seeds_b'])})",
            _ci(r["diff"], r["hb_ci_low"], r["hb_ci_high"]), _p_pair(r["hb_p"], r["hb_p_holm"]),
            num(r["p_a_beats_b"], "{:.2f}"), r.get("family") or "–",
            _p_pair(r["seeds_p"], r["seeds_p_holm"]) + ("" if r["seeds_test"] in ("Welch", "–") else
                                                         f" {r['seeds_test']}"),
            num(r["cohen_d"], "{:.2f}"),
            _ci(r["paired_diff"], r["paired_ci_low"], r["paired_ci_high"]) + f" (seeds {seeds})",
            _p_pair(r["paired_p"], r["paired_p_holm"]), _p_pair(r["wilcoxon_p"], r["wilcoxon_p_holm"]),
            r.get("hb_note") or ""]


def sig_md(title: str, frame: pd.DataFrame, family: str) -> str:
    """Markdown of a comparison frame; ``family`` declares the report's Holm family in its header."""
    return (f"# {title}\n\n**Holm family of this report:** {family}. Each test kind is adjusted within the "
            "family separately; a row whose Family column names another family quotes that family's adjusted "
            "p, so every file shows one adjusted p per comparison.\n\n"
            + md_table(SIG_HEADER, [sig_row(r) for _, r in frame.iterrows()])
            + f"\nMeans and differences in percent; (n) = seeds. {stats.HEADLINE_NOTE} {stats.WELCH_NOTE} "
              f"{stats.PAIRED_NOTE} {stats.HOLM_NOTE}\n")


def pairs_family_text(dataset: str) -> str:
    return (f"`pairs-{dataset}` = every pair of Table 2 models on {dataset_title(dataset)} × the six metrics "
            f"({', '.join(METRICS)}), except DiffuRec against each row's best baseline (family `table2`)")


def all_pairs(ctx: Context) -> list[Table]:
    """All pairs of Table 2 models, one table (and one Holm family, less the Table 2 rows) per dataset."""
    out = []
    for dataset in order_datasets(ctx.col.main_models):
        sub = ctx.main_values[ctx.main_values["dataset"] == dataset]
        pairs = stats.pairwise(sub, ctx.col.per_seed, METRICS, ctx.col.main_models[dataset], comparer=ctx.comparer)
        if len(pairs):
            pairs = stats.quote_family(pairs, [ctx.vs_best], f"pairs-{dataset}", stats.P_COLUMNS)
            title = dataset_title(dataset)
            out.append(Table(f"All pairs, {title}", f"significance_pairs_{dataset}",
                             sig_md(f"All pairs of Table 2 models, {title}", pairs, pairs_family_text(dataset)),
                             pairs))
    return out
