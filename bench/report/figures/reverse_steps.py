"""Fig. 12: DiffuRec's HR@K and NDCG@K against the number of reverse steps (its extra evaluations)."""
from __future__ import annotations

import numpy as np
import pandas as pd

from bench import stats
from bench.fmt import dataset_title
from bench.report.collect import METRICS, TARGET, Collected, is_main
from bench.report.context import Context, Drawn, Missing
from bench.report.figures.style import errbar, new_fig


def reverse_step_points(col: Collected, dataset: str) -> pd.DataFrame:
    """Seed summary per (reverse steps, metric): DiffuRec's own steps and each ``reverse_steps`` extra eval."""
    rows = []
    for r in col.ok_records:
        if r["dataset"] != dataset or r.get("base_model") != TARGET or not is_main(r):
            continue
        own = (r.get("params") or {}).get("reverse_steps")
        if own is not None:
            for metric, v in (r.get("metrics", {}).get("test") or {}).items():
                rows.append({"setting": int(own), "metric": metric, "value": v})
        for ev in (r.get("extra_evals") or {}).values():
            p = ev.get("params") or {}
            if set(p) != {"reverse_steps"}:
                continue
            for metric, v in ((ev.get("metrics") or {}).get("test") or {}).items():
                rows.append({"setting": int(p["reverse_steps"]), "metric": metric, "value": v})
    frame = pd.DataFrame(rows, columns=["setting", "metric", "value"])
    frame = frame[frame["metric"].isin(METRICS)]
    return stats.summarize(frame, by=("setting", "metric")) if len(frame) else frame


def draw_reverse_steps(points: pd.DataFrame, dataset: str):
    """Two panels (HR@K, NDCG@K), one line per K, over log2-spaced step counts."""
    steps = sorted(points["setting"].unique())
    fig, axes = new_fig(2.2, 1, 2)
    for ax, kind in zip(axes[0], ("HR", "NDCG")):
        for metric, marker in zip([m for m in METRICS if m.startswith(kind + "@")], "osd"):
            s = points[points["metric"] == metric].set_index("setting")
            mean = np.array([s["mean"].get(k, np.nan) for k in steps]) * 100
            std = np.array([s["std"].get(k, np.nan) for k in steps]) * 100
            ax.errorbar(steps, mean, yerr=errbar(std), marker=marker, label="K = " + metric.split("@")[1])
        ax.set_xscale("log", base=2)
        ax.set_xticks(steps, [str(int(k)) for k in steps])
        ax.set_xlabel("reverse steps")
        ax.set_ylabel(f"{kind}@K (%)")
        ax.grid(linewidth=0.3, alpha=0.5)
    fig.legend(*axes[0, 0].get_legend_handles_labels(), loc="outside lower center", ncol=3, frameon=False)
    fig.suptitle(f"{dataset_title(dataset)}: DiffuRec vs reverse steps (mean ± std over seeds)")
    return fig


def fig12_reverse_steps(ctx: Context, dataset: str) -> list:
    """Fig. 12: the effect of the number of reverse steps at inference."""
    pts = reverse_step_points(ctx.col, dataset)
    if len(pts) == 0 or pts["setting"].nunique() < 2:
        return [Missing(f"Fig. 12 ({dataset_title(dataset)}): needs DiffuRec extra_evals over reverse_steps")]
    steps = ", ".join(str(int(s)) for s in sorted(pts["setting"].unique()))
    return [Drawn("12", dataset, f"fig12_reverse_steps_{dataset}", f"HR@K/NDCG@K vs reverse steps ({steps})",
                  draw_reverse_steps(pts, dataset))]
