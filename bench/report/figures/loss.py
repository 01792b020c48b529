"""Fig. 10: training loss and validation NDCG@10 per epoch of SASRec and DiffuRec, with the chosen checkpoints.

Each panel: the training loss (mean over the seeds still training at an epoch, ± std band where two or
more seeds are), the validation NDCG@10 on a second axis (the same summary, dashed), and a dotted line
at each seed's chosen checkpoint (``checkpoint.best_epoch``), so convergence and the selection that the
tables rest on are read off one figure.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from bench.fmt import dataset_title
from bench.report.collect import TARGET, Collected, is_main
from bench.report.context import Context, Drawn, Missing
from bench.report.figures.style import colors, new_fig

CURVE_MODELS = ("SASRec", TARGET)
VALID_METRIC = "NDCG@10"  # the clean protocol's checkpoint rule


def curves(col: Collected, dataset: str) -> dict:
    """{model: frame (seed, epoch, train_loss, valid)} of the base runs of SASRec and DiffuRec;
    ``valid`` is the validation NDCG@10 (NaN at epochs without a validation)."""
    out = {}
    for name in CURVE_MODELS:
        rows = []
        for r in col.ok_records:
            if r["dataset"] == dataset and r["model"] == name and is_main(r):
                for c in r.get("curve") or []:
                    if c.get("train_loss") is not None and np.isfinite(c["train_loss"]):
                        valid = (c.get("valid") or {}).get(VALID_METRIC)
                        rows.append({"seed": r.get("seed"), "epoch": int(c["epoch"]), "train_loss": c["train_loss"],
                                     "valid": np.nan if valid is None else float(valid)})
        if rows:
            out[name] = pd.DataFrame(rows)
    return out


def checkpoints(col: Collected, dataset: str) -> dict:
    """{model: [0-based best epoch of each seed]} of the same runs (the checkpoint the tables use)."""
    out = {}
    for r in col.ok_records:
        if r["dataset"] == dataset and r["model"] in CURVE_MODELS and is_main(r):
            best = (r.get("checkpoint") or {}).get("best_epoch")
            if best is not None:
                out.setdefault(r["model"], []).append(int(best))
    return out


def _band(ax, frame_col, color, **line):
    """Mean line with a ± std band (std where >= 2 values at an x): a groupby of one column by epoch."""
    g = frame_col.groupby(level=0)
    mean, std, n = g.mean(), g.std(ddof=1), g.count()
    std = std.where(n >= 2)
    handle, = ax.plot(mean.index + 1, mean.to_numpy(), color=color, **line)
    ax.fill_between(mean.index + 1, mean - std, mean + std, alpha=0.25, color=color, linewidth=0)
    return handle


def draw_loss(frames: dict, dataset: str, best: dict | None = None):
    """One panel per model: training loss (left axis), validation NDCG@10 in % (right axis), checkpoints."""
    best = best or {}
    names = [m for m in CURVE_MODELS if m in frames]
    fig, axes = new_fig(2.3, 1, len(names))
    handles = {}  # legend label -> first handle drawn with it
    for ax, name in zip(axes[0], names):
        frame = frames[name].set_index("epoch")
        color = colors([name])[name]
        h_loss = _band(ax, frame["train_loss"], color, label="training loss")
        twin = ax.twinx()
        valid = frame["valid"].dropna() * 100
        h_valid = _band(twin, valid, "0.35", linestyle="--", label=f"validation {VALID_METRIC} (%)") \
            if len(valid) else None
        h_best = None
        for epoch in best.get(name, []):
            h_best = ax.axvline(epoch + 1, color="0.2", linestyle=":", linewidth=0.8, label="chosen checkpoint")
        ax.set_title(f"{name} (n={frame['seed'].nunique()} seeds)")
        ax.set_xlabel("epoch")
        ax.set_ylabel("training loss")
        twin.tick_params(labelsize=5)
        ax.grid(linewidth=0.3, alpha=0.5)
        for h in (h_loss, h_valid, h_best):
            if h is not None:
                handles.setdefault(h.get_label(), h)
    twin.set_ylabel(f"validation {VALID_METRIC} (%)")  # on the last panel's right axis only
    fig.legend(handles=list(handles.values()), labels=list(handles), loc="outside lower center",
               ncol=3, frameon=False)
    fig.suptitle(f"{dataset_title(dataset)}: training loss and validation\n(mean ± std over seeds; dotted: each "
                 "seed's checkpoint)")
    return fig


def fig10_loss(ctx: Context, dataset: str) -> list:
    """Fig. 10: convergence, as training loss and validation NDCG@10 per epoch of SASRec and DiffuRec."""
    frames = curves(ctx.col, dataset)
    if not frames:
        return [Missing(f"Fig. 10 ({dataset_title(dataset)}): no SASRec or DiffuRec training curves")]
    lacking = [m for m in CURVE_MODELS if m not in frames]
    what = ("training loss, validation NDCG@10 and chosen checkpoints of " + " and ".join(frames)
            + (f" ({', '.join(lacking)} missing)" if lacking else ""))
    return [Drawn("10", dataset, f"fig10_loss_{dataset}", what,
                  draw_loss(frames, dataset, checkpoints(ctx.col, dataset)))]
