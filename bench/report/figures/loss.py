"""Fig. 10: training loss per epoch of SASRec and DiffuRec (mean ± std band over seeds)."""
from __future__ import annotations

import numpy as np
import pandas as pd

from bench.fmt import dataset_title
from bench.report.collect import TARGET, Collected, is_main
from bench.report.context import Context, Drawn, Missing
from bench.report.figures.style import colors, new_fig

CURVE_MODELS = ("SASRec", TARGET)


def curves(col: Collected, dataset: str) -> dict:
    """{model: frame (seed, epoch, train_loss)} of the base runs of SASRec and DiffuRec."""
    out = {}
    for name in CURVE_MODELS:
        rows = []
        for r in col.ok_records:
            if r["dataset"] == dataset and r["model"] == name and is_main(r):
                for c in r.get("curve") or []:
                    if c.get("train_loss") is not None and np.isfinite(c["train_loss"]):
                        rows.append({"seed": r.get("seed"), "epoch": int(c["epoch"]), "train_loss": c["train_loss"]})
        if rows:
            out[name] = pd.DataFrame(rows)
    return out


def draw_loss(frames: dict, dataset: str):
    """One panel per model: mean training loss per epoch with a ± std band."""
    names = [m for m in CURVE_MODELS if m in frames]
    fig, axes = new_fig(1.8, 1, len(names))
    for ax, name in zip(axes[0], names):
        frame = frames[name]
        g = frame.groupby("epoch")["train_loss"]
        mean, std = g.mean(), g.std(ddof=1).fillna(0.0)
        ax.plot(mean.index + 1, mean.to_numpy(), color=colors([name])[name])
        ax.fill_between(mean.index + 1, mean - std, mean + std, alpha=0.3, color=colors([name])[name], linewidth=0)
        ax.set_title(f"{name} ({frame['seed'].nunique()} seeds)")
        ax.set_xlabel("epoch")
        ax.set_ylabel("training loss")
        ax.grid(linewidth=0.3, alpha=0.5)
    fig.suptitle(f"{dataset_title(dataset)}: training loss (mean ± std over seeds)")
    return fig


def fig10_loss(ctx: Context, dataset: str) -> list:
    """Fig. 10: convergence, as training loss per epoch of SASRec and DiffuRec."""
    frames = curves(ctx.col, dataset)
    if not frames:
        return [Missing(f"Fig. 10 ({dataset_title(dataset)}): no SASRec or DiffuRec training curves")]
    lacking = [m for m in CURVE_MODELS if m not in frames]
    what = "training loss of " + " and ".join(frames) + (f" ({', '.join(lacking)} missing)" if lacking else "")
    return [Drawn("10", dataset, f"fig10_loss_{dataset}", what, draw_loss(frames, dataset))]
