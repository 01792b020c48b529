"""Diagnosis: every Table 2 model whose HR@10 or NDCG@10 lies outside [0.8, 1.25] x the paper's.

For each such (dataset, model) the section gives the measured evidence from the records:
ours against the paper with the ratio, the run's convergence (validation NDCG@10 along
the curve, best epoch, why it stopped), and its settings; then the written diagnosis of
``bench/diagnosis.yaml`` (the suspected cause, the run that removes it, what it showed),
or "not yet diagnosed".  The runs a note names under ``runs:`` (profile variants of the
model with the suspected cause removed) are tabled beside the base run, or listed as not
run yet.  Only the explanation is hand-written; every number is read from ``results/``
when the report is rendered.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from bench.fmt import dataset_title, md_table
from bench.report.context import Context, Table
from bench.report.gap import gap_frame
from bench.zoo import load_yaml

NOTES_FILE = Path(__file__).resolve().parent.parent / "diagnosis.yaml"
BAND = (0.8, 1.25)
JUDGED = ("HR@10", "NDCG@10")
SETTINGS = ("hidden_size", "embedding_size", "n_layers", "train_batch_size", "learning_rate", "loss_type",
            "hidden_dropout_prob", "MAX_ITEM_LIST_LENGTH", "epochs", "eval_step", "stopping_step")


def _used(model: str, key: str) -> bool:
    """``loss_type`` is in every record (the harness sets it for RecBole); it is shown only where
    the model's YAML names it, since SVAE, ACVAE and STOSA train their own objectives."""
    if key != "loss_type":
        return True
    from bench.zoo import discover

    spec = discover().get(model.lower())
    return spec is None or "loss_type" in load_yaml(spec.yaml_path)


def out_of_band(gap: pd.DataFrame) -> pd.DataFrame:
    """Table 2 cells (HR@10, NDCG@10) with a run whose ratio ours/paper lies outside ``BAND``."""
    t2 = gap[(gap["table"] == "2") & gap["metric"].isin(JUDGED) & (gap["n_seeds"] > 0)]
    return t2[(t2["ratio"] < BAND[0]) | (t2["ratio"] > BAND[1])]


def _curve_line(record: dict, points: int = 8) -> str:
    """Validation NDCG@10 (%) at up to ``points`` evenly spread validated epochs."""
    vals = [(e["epoch"], e["valid"]["NDCG@10"]) for e in record.get("curve", []) if e.get("valid")]
    if not vals:
        return "no validation recorded"
    idx = sorted(set(np.linspace(0, len(vals) - 1, min(points, len(vals))).round().astype(int)))
    return ", ".join(f"ep {vals[i][0] + 1}: {100 * vals[i][1]:.2f}" for i in idx)


def _section(dataset: str, model: str, cells: pd.DataFrame, paper: dict, records: list, notes: dict,
             all_records: list, planned: set | None) -> list[str]:
    lines = [f"## {model} on {dataset_title(dataset)}", ""]
    rows = [[r["metric"], f"{r['paper_pct']:.2f}", f"{r['ours_pct']:.2f}", f"{r['ratio']:.2f}", str(r["n_seeds"])]
            for _, r in cells.iterrows()]
    lines += [md_table(["Metric", "Paper (%)", "Ours (%)", "Ratio", "Seeds"], rows), ""]
    for r in sorted(records, key=lambda r: r["seed"]):
        ck = r.get("checkpoint") or {}
        stop = ck.get("stopped_by") or "?"
        lines.append(f"- seed {r['seed']}: best epoch {ck.get('best_epoch', 0) + 1} of {r['timing']['epochs_run']} "
                     f"(stopped by {stop}{'; NOT converged' if ck.get('converged') is False else ''}); "
                     f"validation NDCG@10 — {_curve_line(r)}")
    params = records[0].get("params") or {} if records else {}
    shown = ", ".join(f"{k} {params[k]}" for k in SETTINGS if k in params and _used(model, k))
    lines += ["", f"Settings: {shown}.", ""]
    entry = notes.get(model) or {}
    lines += _test_runs(dataset, model, entry.get("runs") or [], paper, all_records, planned)
    # an `all` text was written from the datasets in `all_covers`; elsewhere it could state the wrong direction
    covers = notes.get("all_covers")  # absent: `all` covers every dataset
    note = entry.get(dataset) or (entry.get("all") if covers is None or dataset in covers else None)
    lines += [note.strip() if note else "*Not yet diagnosed.*", ""]
    return lines


def _mean_test(records: list, metric: str) -> float:
    return 100 * float(np.mean([r["metrics"]["test"][metric] for r in records]))


def _test_runs(dataset: str, model: str, names: list, paper: dict, all_records: list,
               planned: set | None) -> list[str]:
    """The runs with the suspected cause removed, beside the base run: test metrics (mean over seeds, %) and
    their ratio to the paper, best epoch and what stopped them. A named run without a record is listed as not
    run yet where the profile's grid has it on this dataset (``planned``: its (dataset, model) pairs; None:
    unknown), else as not in the profile for this dataset."""
    if not names:
        return []
    header = ["Run", "Seeds", *(f"{m} (%)" for m in JUDGED), *(f"{m} / paper" for m in JUDGED), "Best epoch / run"]
    rows, missing, unplanned = [], [], []
    for name in [model, *names]:
        runs = sorted((r for r in all_records if r["dataset"] == dataset and r["model"] == name),
                      key=lambda r: r["seed"])
        if not runs:
            (missing if planned is None or (dataset, name) in planned else unplanned).append(f"`{name}`")
            continue
        values = [_mean_test(runs, m) for m in JUDGED]
        ratios = [f"{v / paper[m]:.2f}" if paper.get(m) else "–" for v, m in zip(values, JUDGED)]
        epochs = "; ".join(f"{(r.get('checkpoint') or {}).get('best_epoch', 0) + 1} / {r['timing']['epochs_run']}"
                           for r in runs)
        label = f"{name} (base)" if name == model else name
        rows.append([label, str(len(runs)), *(f"{v:.2f}" for v in values), *ratios, epochs])
    lines = ["Runs with the suspected cause removed (test, mean over the seeds present; "
             "`bench/profiles/full.yaml` defines each):", "", md_table(header, rows), ""]
    if missing:
        lines += [f"Not run yet: {', '.join(missing)}.", ""]
    if unplanned:
        lines += [f"Not in this profile's grid for {dataset_title(dataset)}: {', '.join(unplanned)}.", ""]
    return lines


def diagnosis(ctx: Context) -> list[Table]:
    """``diagnosis.md``: the models outside the band, with their evidence and written diagnosis."""
    gap = gap_frame(ctx.col)
    bad = out_of_band(gap)
    if not len(gap[(gap["table"] == "2") & (gap["n_seeds"] > 0)]):
        return []
    notes = load_yaml(NOTES_FILE) if NOTES_FILE.exists() else {}
    lines = ["# Diagnosis: models far from the paper", "",
             f"Every Table 2 model whose test HR@10 or NDCG@10 lies below {BAND[0]}x or above {BAND[1]}x the "
             "paper's value, with the evidence the records hold (convergence, settings) and the written diagnosis "
             "(`bench/diagnosis.yaml`). Curves: validation NDCG@10 (%) on the early-stopping users.", ""]
    if not len(bad):
        lines.append("Every model with a run lies inside the band.")
    planned = None if ctx.expected is None else {(d, m) for d, m, _ in ctx.expected}
    # the paper's value of both judged metrics, also the one inside the band, for the ratios of the runs table
    paper_of = {key: dict(zip(g["metric"], g["paper_pct"]))
                for key, g in gap[gap["table"] == "2"].groupby(["dataset", "model"], sort=False)}
    for (dataset, model), cells in bad.groupby(["dataset", "model"], sort=False):
        records = [r for r in ctx.col.ok_records if r["dataset"] == dataset and r["model"] == model]
        lines += _section(dataset, model, cells, paper_of[(dataset, model)], records, notes, ctx.col.ok_records,
                          planned)
    return [Table("Diagnosis (models outside 0.8-1.25x the paper)", "diagnosis", "\n".join(lines) + "\n",
                  bad.reset_index(drop=True))]
