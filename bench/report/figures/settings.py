"""Figs. 3 and 5: DiffuRec under each noise schedule, and under each δ of λ ~ N(δ, δ)."""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import pandas as pd

from bench import stats
from bench.fmt import dataset_title
from bench.report.collect import METRICS, TARGET, Collected, is_main, variant_keys
from bench.report.context import Context, Drawn, Missing
from bench.report.figures.style import errbar_clipped, new_fig

SCHEDULES = ("truncated_linear", "linear", "cosine", "sqrt")
DELTAS = (0.0, 0.001, 0.01, 0.1, 1.0)  # 0: the no-diffusion control (DiffuRec-nodiff), beside the paper's four
# settings that are the suite's controls, not points of the paper's sweep: drawn grey and hatched
CONTROL_SETTINGS = {"lambda_scale": {0.0: "0 (control: no diffusion)"}}


def setting_points(col: Collected, dataset: str, key: str, normalise: Callable = lambda v: v) -> pd.DataFrame:
    """DiffuRec runs differing from the base run only in ``key``: seed summary per (setting, metric)."""
    rows = []
    for r in col.ok_records:
        if r["dataset"] != dataset or r.get("base_model") != TARGET:
            continue
        if not (is_main(r) or variant_keys(r) == {key}):
            continue
        value = (r.get("params") or {}).get(key)
        if value is None:
            continue
        for metric, v in (((r.get("metrics") or {}).get("test")) or {}).items():
            if metric in METRICS:
                rows.append({"dataset": dataset, "model": "DiffuRec", "setting": normalise(value),
                             "metric": metric, "value": v})
    frame = pd.DataFrame(rows, columns=["dataset", "model", "setting", "metric", "value"])
    return stats.summarize(frame, by=("setting", "metric")) if len(frame) else frame


def draw_settings(points: pd.DataFrame, dataset: str, order: Sequence, label: str, controls: dict | None = None):
    """Grouped bars of HR@K (top) and NDCG@K (bottom), one bar per setting (mean ± std, n seeds in the legend).

    controls: {setting: legend text} of settings that are controls rather than points of the paper's
    sweep; their bars are grey and hatched, the sweep's coloured."""
    import matplotlib

    controls = controls or {}
    fig, axes = new_fig(3.2, 2, 1)
    cmap = matplotlib.colormaps["viridis"]
    sweep = [v for v in order if v not in controls]
    for ax, kind in zip(axes[:, 0], ("HR", "NDCG")):
        metrics = [m for m in METRICS if m.startswith(kind + "@")]
        x = np.arange(len(metrics))
        width = 0.8 / len(order)
        for i, setting in enumerate(order):
            s = points[points["setting"] == setting].set_index("metric")
            mean = np.array([s["mean"].get(m, np.nan) for m in metrics]) * 100
            std = np.array([s["std"].get(m, np.nan) for m in metrics]) * 100
            seeds = int(s["n"].max()) if len(s) else 0
            if setting in controls:
                style = {"color": "0.8", "edgecolor": "0.3", "hatch": "////", "linewidth": 0.4,
                         "label": f"{controls[setting]}, n={seeds}"}
            else:
                j = sweep.index(setting)
                style = {"color": cmap(0.15 + 0.7 * j / max(len(sweep) - 1, 1)), "label": f"{setting}, n={seeds}"}
            ax.bar(x + (i - (len(order) - 1) / 2) * width, np.nan_to_num(mean), width,
                   yerr=errbar_clipped(mean, std), error_kw={"elinewidth": 0.6}, **style)
        ax.set_xticks(x, metrics)
        ax.set_ylabel(f"{kind}@K (%)")
        ax.grid(axis="y", linewidth=0.3, alpha=0.5)
    fig.legend(*axes[0, 0].get_legend_handles_labels(), loc="outside lower center", ncol=min(len(order), 3),
               title=f"{label} (n = seeds)", frameon=False)
    fig.suptitle(f"{dataset_title(dataset)}: DiffuRec by {label}\n(mean ± std over seeds)")
    return fig


def _settings_figure(ctx: Context, dataset: str, fig_id: str, key: str, order: Sequence, label: str,
                     normalise: Callable, stem: str) -> list:
    pts = setting_points(ctx.col, dataset, key, normalise)
    present = list(pd.unique(pts["setting"])) if len(pts) else []
    ordered = [v for v in order if v in present] + sorted(v for v in present if v not in order)
    if len(ordered) < 2:
        return [Missing(f"Fig. {fig_id} ({dataset_title(dataset)}): needs DiffuRec runs differing only in {key} "
                        f"(found {len(ordered)} setting{'s' if len(ordered) != 1 else ''})")]
    controls = {v: text for v, text in CONTROL_SETTINGS.get(key, {}).items() if v in ordered}
    fig = draw_settings(pts, dataset, ordered, label, controls)
    shown = [controls.get(v, str(v)) for v in ordered]
    return [Drawn(fig_id, dataset, stem, f"DiffuRec under {key} = {', '.join(shown)}", fig)]


def fig3_schedules(ctx: Context, dataset: str) -> list:
    """Fig. 3: DiffuRec under the truncated linear, linear, cosine and sqrt noise schedules."""
    return _settings_figure(ctx, dataset, "3", "noise_schedule", SCHEDULES, "noise schedule", str,
                            f"fig3_schedules_{dataset}")


def fig5_delta(ctx: Context, dataset: str) -> list:
    """Fig. 5: DiffuRec under δ = 0.001, 0.01, 0.1, 1 (``lambda_scale``), and δ = 0 where the control ran."""
    return _settings_figure(ctx, dataset, "5", "lambda_scale", DELTAS, "δ of λ ~ N(δ, δ)", float,
                            f"fig5_delta_{dataset}")
