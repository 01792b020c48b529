"""Figs. 8 and 9: Table 2 models on head vs long-tail test items, and by history-length group."""
from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

from bench.fmt import dataset_title
from bench.report.collect import TARGET
from bench.report.context import Context, Drawn, Missing
from bench.report.figures.style import colors, errbar_clipped, new_fig, seed_label
from bench.report.summaries import BREAKDOWN_METRICS

HATCHES = ("", "///")


def _bars(ax, s: pd.DataFrame, models: Sequence[str], groups: Sequence[str], palette: dict) -> None:
    """Fig. 8 panel: per model, one bar per group (hatched for the second)."""
    x = np.arange(len(models))
    width = 0.38
    for gi, (group, hatch) in enumerate(zip(groups, HATCHES)):
        mean = np.array([s["mean"].get((m, group), np.nan) for m in models]) * 100
        std = np.array([s["std"].get((m, group), np.nan) for m in models]) * 100
        ax.bar(x + (gi - 0.5) * width, np.nan_to_num(mean), width, yerr=errbar_clipped(mean, std),
               color=[palette[m] for m in models], edgecolor="black", linewidth=0.3,
               hatch=hatch, label=group, error_kw={"elinewidth": 0.6})
    ax.set_xticks(x, [seed_label(m, _seeds(s, m)) for m in models], rotation=45, ha="right")


def _seeds(s: pd.DataFrame, model: str) -> int:
    """Seeds a model's bars or line rest on (the most over its groups)."""
    n = s["n"][s.index.get_level_values(0) == model]
    return int(n.max()) if len(n) else 0


def _lines(ax, s: pd.DataFrame, models: Sequence[str], groups: Sequence[str], palette: dict) -> None:
    """Fig. 9 panel: one line per model over the length groups."""
    x = np.arange(len(groups))
    for m in models:
        mean = np.array([s["mean"].get((m, g), np.nan) for g in groups]) * 100
        std = np.array([s["std"].get((m, g), np.nan) for g in groups]) * 100
        ax.errorbar(x, mean, yerr=errbar_clipped(mean, std), marker="o", color=palette[m],
                    label=seed_label(m, _seeds(s, m)),
                    linewidth=1.4 if m == TARGET else 0.9)
    ax.set_xticks(x, groups)
    ax.set_xlabel("history length group")


def draw_breakdown(summary: pd.DataFrame, dataset: str, kind: str, models: Sequence[str], groups: Sequence[str]):
    """Fig. 8 (kind head_tail, grouped bars) or Fig. 9 (kind length, lines over groups); two metric panels."""
    from matplotlib.patches import Patch

    sub = summary[(summary["dataset"] == dataset) & (summary["kind"] == kind)]
    fig, axes = new_fig(3.6 if kind == "head_tail" else 3.4 + 0.12 * max(len(models) - 8, 0), 2, 1)
    palette = colors(models)
    for ax, metric in zip(axes[:, 0], BREAKDOWN_METRICS):
        s = sub[sub["metric"] == metric].set_index(["model", "group"])
        (_bars if kind == "head_tail" else _lines)(ax, s, models, groups, palette)
        ax.set_ylabel(f"{metric} (%)")
        ax.grid(axis="y", linewidth=0.3, alpha=0.5)
    if kind == "length":
        fig.legend(*axes[0, 0].get_legend_handles_labels(), loc="outside lower center",
                   ncol=min(3, len(models)), frameon=False)  # three '<Model> (n=k)' labels fit a column
    else:
        fig.legend(handles=[Patch(facecolor="white", edgecolor="black", hatch=h, label=g)
                            for g, h in zip(groups, HATCHES)], loc="outside lower center", ncol=2, frameon=False)
    what = "head vs long-tail test items" if kind == "head_tail" else "sequence-length groups"
    fig.suptitle(f"{dataset_title(dataset)}: {what}\n(mean ± std over n seeds per model; n=1: no bar)")
    return fig


def _breakdown_figure(ctx: Context, dataset: str, fig_id: str, kind: str, stem: str, what: str) -> list:
    models = ctx.col.main_models.get(dataset, [])
    summary = ctx.breakdown
    sub = summary[(summary["dataset"] == dataset) & (summary["kind"] == kind)] if len(summary) else summary
    if not models or len(sub) == 0:
        return [Missing(f"Fig. {fig_id} ({dataset_title(dataset)}): no ranks of Table 2 models")]
    groups = ["head", "long-tail"] if kind == "head_tail" else ctx.col.length_labels.get(dataset, [])
    fig = draw_breakdown(sub, dataset, kind, [m for m in models if m in set(sub["model"])], groups)
    return [Drawn(fig_id, dataset, stem, what, fig)]


def fig8_head_tail(ctx: Context, dataset: str) -> list:
    """Fig. 8: HR@10 / NDCG@10 of each Table 2 model on head and on long-tail test items."""
    return _breakdown_figure(ctx, dataset, "8", "head_tail", f"fig8_head_tail_{dataset}",
                             "head vs long-tail HR@10/NDCG@10")


def fig9_seq_length(ctx: Context, dataset: str) -> list:
    """Fig. 9: HR@10 / NDCG@10 of each Table 2 model in five history-length groups."""
    return _breakdown_figure(ctx, dataset, "9", "length", f"fig9_seq_length_{dataset}",
                             "five sequence-length groups, HR@10/NDCG@10")
