"""Gap to the paper: every cell of the paper's Tables 2-3 beside ours, with our 95% interval."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from bench import stats
from bench.fmt import dataset_title, md_table, num
from bench.report.collect import Collected
from bench.report.context import Context, Table

PAPER_TABLES = Path(__file__).resolve().parent.parent / "paper_tables"


def paper_table(name: str) -> pd.DataFrame:
    """The transcribed paper table ``table2`` or ``table3`` (percent)."""
    return pd.read_csv(PAPER_TABLES / f"{name}.csv")


def gap_frame(col: Collected) -> pd.DataFrame:
    """Every paper cell of Tables 2-3 beside ours (percent), ratio and CI coverage."""
    summary = stats.summarize(col.values).set_index(["dataset", "model", "metric"])
    rows = []
    for table, frame in (("2", paper_table("table2")), ("3", paper_table("table3"))):
        label_col = "model" if table == "2" else "ablation"
        for _, p in frame.iterrows():
            dataset, label, metric = p["dataset"], p[label_col], p["metric"]
            if table == "2":
                model = label if label in col.main_models.get(dataset, []) else None
            else:
                model = col.ablation_models.get(dataset, {}).get(label)
            s = summary.loc[(dataset, model, metric)] if model and (dataset, model, metric) in summary.index else None
            ours = 100 * s["mean"] if s is not None else np.nan
            lo = 100 * s["ci_low"] if s is not None else np.nan
            hi = 100 * s["ci_high"] if s is not None else np.nan
            inside = (bool(lo <= p["value_percent"] <= hi) if np.isfinite(lo) and np.isfinite(hi) else None)
            rows.append({"table": table, "dataset": dataset, "model": label, "our_model": model, "metric": metric,
                         "paper_pct": p["value_percent"], "ours_pct": ours,
                         "ours_std_pct": 100 * s["std"] if s is not None else np.nan,
                         "n_seeds": int(s["n"]) if s is not None else 0,
                         "ratio": ours / p["value_percent"] if p["value_percent"] else np.nan,
                         "ci95_low_pct": lo, "ci95_high_pct": hi, "paper_in_ci95": inside})
    return pd.DataFrame(rows)


def _gap_md(gap: pd.DataFrame) -> str:
    have = gap[gap["n_seeds"] > 0]
    header = ["Table", "Dataset", "Model", "Metric", "Paper", "Ours", "Ratio", "95% CI", "Paper in CI"]
    rows = [[r["table"], dataset_title(r["dataset"]), r["model"], r["metric"], f"{r['paper_pct']:.4f}",
             f"{r['ours_pct']:.4f}", num(r["ratio"], "{:.3f}"),
             f"[{r['ci95_low_pct']:.4f}, {r['ci95_high_pct']:.4f}]" if np.isfinite(r["ci95_low_pct"]) else "–",
             {True: "yes", False: "no"}.get(r["paper_in_ci95"], "–")] for _, r in have.iterrows()]
    text = "# Gap to the paper (Tables 2 and 3, percent)\n\n"
    judged = have[have["paper_in_ci95"].notna()]
    if len(judged):
        text += (f"The paper's value lies inside our 95% CI in {int(judged['paper_in_ci95'].sum())} of "
                 f"{len(judged)} cells with at least two seeds; median ratio ours/paper "
                 f"{have['ratio'].median():.3f}.\n\n")
    text += md_table(header, rows)
    text += (f"\n{int((gap['n_seeds'] == 0).sum())} of {len(gap)} paper cells have no run in this profile "
             "(listed in gap_to_paper.csv). 95% CI: Student t-interval over seeds of our mean. "
             "Ratio: ours / paper.\n")
    return text


def gap_to_paper(ctx: Context) -> list[Table]:
    """Every cell of the paper's Tables 2-3 next to ours, written even when no run matches."""
    gap = gap_frame(ctx.col)
    return [Table("Gap to the paper (Tables 2-3)", "gap_to_paper", _gap_md(gap), gap)]
