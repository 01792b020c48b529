"""Fig. 11: inference time per user against DiffuRec's reverse steps, and training seconds per batch.

The times are the ones the training runs recorded (``timing`` of each record), on whatever machine made
them, shared with the runs beside them: they are not an isolated benchmark, and the figure says so and
names the devices.  ``bench speed`` measures the same quantities in isolation (``reports/speed/``).
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from bench import stats
from bench.fmt import dataset_title
from bench.report.collect import TARGET, Collected, order_models
from bench.report.context import Context, Drawn, Missing
from bench.report.figures.style import colors, errbar_clipped, new_fig


def inference_per_user(r: dict) -> float:
    """Seconds per user of one full ranking pass: validation time / (validations x users)."""
    timing = r.get("timing") or {}
    n = timing.get("n_eval_users") or (r.get("data") or {}).get("n_users")
    n_valid = sum(1 for c in (r.get("curve") or []) if c.get("valid"))
    if n and n_valid and timing.get("eval_s"):
        return timing["eval_s"] / (n_valid * n)
    if n and timing.get("test_eval_s"):
        return timing["test_eval_s"] / n
    return math.nan


def _summary(rows: list, by: str) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=[by, "value"])
    return stats.summarize(frame, by=(by,)) if len(frame) else pd.DataFrame(columns=[by, "n", "mean", "std"])


def _in_paper_order(frame: pd.DataFrame) -> pd.DataFrame:
    if not len(frame):
        return frame
    return frame.set_index("model").loc[order_models(frame["model"], {})].reset_index()


def efficiency_data(col: Collected, dataset: str) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(inference by reverse steps, inference of each baseline, s per training batch by model); seed summaries.

    The inference frame is emptied when it has fewer than two step counts (nothing to plot against).
    """
    inf_rows, base_rows, batch_rows = [], [], []
    main = set(col.main_models.get(dataset, []))
    for r in col.ok_records:
        if r["dataset"] != dataset or r["model"] not in main:
            continue
        timing = r.get("timing") or {}
        if timing.get("s_per_batch") is not None:
            batch_rows.append({"model": r["model"], "value": timing["s_per_batch"]})
        per_user = inference_per_user(r)
        if r.get("base_model") == TARGET:
            own = (r.get("params") or {}).get("reverse_steps")
            if own is not None and np.isfinite(per_user):
                inf_rows.append({"steps": int(own), "value": per_user})
            for ev in (r.get("extra_evals") or {}).values():
                p = ev.get("params") or {}
                if set(p) == {"reverse_steps"} and ev.get("eval_s") is not None and ev.get("n_users"):
                    inf_rows.append({"steps": int(p["reverse_steps"]), "value": ev["eval_s"] / ev["n_users"]})
        elif np.isfinite(per_user):
            base_rows.append({"model": r["model"], "value": per_user})
    inference = _summary(inf_rows, "steps").sort_values("steps") if inf_rows else _summary([], "steps")
    if len(inference) < 2:
        inference = inference.iloc[0:0]
    return inference, _in_paper_order(_summary(base_rows, "model")), _in_paper_order(_summary(batch_rows, "model"))


def _inference_panel(ax, inference: pd.DataFrame, baselines: pd.DataFrame) -> None:
    steps = inference["steps"].to_numpy()
    ax.errorbar(steps, inference["mean"] * 1e3,
                yerr=errbar_clipped(inference["mean"].to_numpy() * 1e3, inference["std"].to_numpy() * 1e3),
                marker="o", color=colors([TARGET])[TARGET], label=TARGET)
    palette = colors(list(baselines["model"]))
    for _, b in baselines.iterrows():
        ax.axhline(b["mean"] * 1e3, color=palette[b["model"]], linestyle="--", linewidth=0.8, label=b["model"])
    ax.set_xscale("log", base=2)
    ax.set_xticks(steps, [str(int(k)) for k in steps])
    ax.set_xlabel("reverse steps")
    ax.set_ylabel("inference ms / user")
    ax.legend(frameon=False, ncol=4, loc="upper center", bbox_to_anchor=(0.5, -0.32))
    ax.grid(linewidth=0.3, alpha=0.5)


def _batch_panel(ax, batch: pd.DataFrame) -> None:
    palette = colors(list(batch["model"]))
    x = np.arange(len(batch))
    ax.bar(x, batch["mean"], yerr=errbar_clipped(batch["mean"].to_numpy(), batch["std"].to_numpy()),
           color=[palette[m] for m in batch["model"]], error_kw={"elinewidth": 0.6})
    ax.set_xticks(x, batch["model"], rotation=45, ha="right")
    ax.set_ylabel("training s / batch")
    ax.grid(axis="y", linewidth=0.3, alpha=0.5)


def timing_source(col: Collected, dataset: str, inference: pd.DataFrame) -> str:
    """Where the times come from: the devices of the dataset's Table 2 records, as a figure footnote
    (which also says when the inference times are not monotonic in the number of reverse steps)."""
    main = set(col.main_models.get(dataset, []))
    devices = sorted({str((r.get("env") or {}).get("device", "unknown")) for r in col.ok_records
                      if r["dataset"] == dataset and r["model"] in main})
    where = "a shared (contended) CPU" if devices == ["cpu"] else "device " + ", ".join(devices)
    means = inference["mean"].to_numpy() if len(inference) else np.array([])
    odd = " (here not even monotonic in the steps)" if np.any(np.diff(means) < 0) else ""
    return (f"Recorded inside the training runs on {where}, beside other runs:\n"
            f"not an isolated benchmark{odd}.\nIsolated timings: reports/speed/. Bars: ± std over seeds, clipped at 0.")


def draw_efficiency(inference: pd.DataFrame, baselines: pd.DataFrame, batch: pd.DataFrame, dataset: str,
                    source: str = ""):
    """Inference ms per user vs reverse steps (top, if any), s per training batch (bottom, if any);
    ``source``: the footnote saying where the times come from."""
    panels = int(len(inference) > 0) + int(len(batch) > 0)
    fig, axes = new_fig(2.2 * panels + 0.8, panels, 1)
    i = 0
    if len(inference):
        _inference_panel(axes[i, 0], inference, baselines)
        i += 1
    if len(batch):
        _batch_panel(axes[i, 0], batch)
    fig.suptitle(f"{dataset_title(dataset)}: efficiency (mean ± std over seeds)")
    if source:
        fig.supxlabel(source, fontsize=5, color="0.3")
    return fig


def fig11_efficiency(ctx: Context, dataset: str) -> list:
    """Fig. 11: efficiency, as inference time against reverse steps and training time per batch."""
    title = dataset_title(dataset)
    inference, baselines, batch = efficiency_data(ctx.col, dataset)
    if len(inference) == 0 and len(batch) == 0:
        return [Missing(f"Fig. 11 ({title}): no timing data")]
    parts = (["inference time per user vs reverse steps (recorded in training runs on a shared machine)"]
             if len(inference) else []) + \
            (["training s per batch"] if len(batch) else [])
    out = [Drawn("11", dataset, f"fig11_efficiency_{dataset}", "; ".join(parts),
                 draw_efficiency(inference, baselines, batch, dataset, timing_source(ctx.col, dataset, inference)))]
    if not len(inference):
        out.append(Missing(f"Fig. 11 left ({title}): needs DiffuRec timing at two or more reverse steps"))
    return out
