"""Significance tables: every pair of Table 2 models per dataset, and the shared layout.

``sig_md`` renders a frame of ``bench.stats`` comparisons (``pairwise``, ``versus_best``,
``versus_reference``: one row per (dataset, metric, A, B)); Tables 2 and 3 use it for
their own tests (``bench.report.tables``).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from bench import stats
from bench.fmt import dataset_title, md_table, num, order_datasets, p_value, pct
from bench.report.collect import METRICS
from bench.report.context import Context, Table

SIG_HEADER = ["Dataset", "Metric", "A", "B", "Mean A", "Mean B", "Welch p", "Welch p (Holm)", "Cohen's d",
              "Paired Δ (95% CI)", "t-test p", "t-test p (Holm)", "Wilcoxon p", "Wilcoxon p (Holm)"]


def _sig_rows(frame: pd.DataFrame) -> list:
    rows = []
    for _, r in frame.iterrows():
        ci = (f"{pct(r['paired_diff'])} [{pct(r['paired_ci_low'])}, {pct(r['paired_ci_high'])}]"
              if np.isfinite(r["paired_diff"]) else "–")
        rows.append([dataset_title(r["dataset"]), r["metric"], r["model_a"], r["model_b"], pct(r["mean_a"]),
                     pct(r["mean_b"]), p_value(r["welch_p"]), p_value(r["welch_p_holm"]),
                     num(r["cohen_d"], "{:.2f}"), ci, p_value(r["paired_p"]), p_value(r["paired_p_holm"]),
                     p_value(r["wilcoxon_p"]), p_value(r["wilcoxon_p_holm"])])
    return rows


def sig_md(title: str, frame: pd.DataFrame, family: str) -> str:
    """Markdown of a comparison frame; ``family`` names the Holm family in the footnote."""
    return (f"# {title}\n\n" + md_table(SIG_HEADER, _sig_rows(frame))
            + f"\nMeans and paired differences in percent. {stats.WELCH_NOTE} {stats.PAIRED_NOTE} "
              f"Holm–Bonferroni family: {family} (each test kind corrected separately).\n")


def all_pairs(ctx: Context) -> list[Table]:
    """All pairs of Table 2 models, one table (and one Holm family) per dataset."""
    out = []
    for dataset in order_datasets(ctx.col.main_models):
        sub = ctx.main_values[ctx.main_values["dataset"] == dataset]
        pairs = stats.pairwise(sub, ctx.col.per_user, METRICS, ctx.col.main_models[dataset])
        if len(pairs):
            title = dataset_title(dataset)
            out.append(Table(f"All pairs, {title}", f"significance_pairs_{dataset}",
                             sig_md(f"All pairs of Table 2 models, {title}", pairs,
                                    f"all pairs × metrics of {title}"), pairs))
    return out
