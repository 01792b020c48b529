"""The controls table: does DiffuRec win because of diffusion, or because of size and training?

Each control (the profile's ``controls:``, name -> what it isolates) is compared with
DiffuRec on the same users: seed means ± std, the paired difference over users
(control − DiffuRec) with its 95 % interval, and Holm-adjusted p-values (Welch over
seeds; paired t over users), Holm over the whole table.  A control named
``DiffuRec@<extra evaluation>`` is the trained DiffuRec scored another way (collected by
``bench.report.collect``).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from bench import stats
from bench.fmt import cell, dataset_title, md_table, p_value
from bench.report.collect import METRICS, TARGET
from bench.report.context import Context, Table
from bench.report.tuning import stand_in_note, validation_choice

SHOWN = ("HR@10", "NDCG@10", "HR@20", "NDCG@20")


def controls_frame(ctx: Context) -> pd.DataFrame:
    """``stats.versus_reference`` rows (model_a = control, model_b = DiffuRec) with seed stds."""
    names = [n for n in ctx.controls if n in set(ctx.col.values["model"])] if len(ctx.col.values) else []
    if not names:
        return pd.DataFrame()
    values = ctx.col.values[ctx.col.values["model"].isin(names + [TARGET])]
    # stats reads per-user row i as metric i of the list it is given: pick SHOWN's rows out of METRICS'
    rows = [METRICS.index(m) for m in SHOWN]
    per_user = {key: mat[rows] for key, mat in ctx.col.per_user.items()}
    frame = stats.versus_reference(values, per_user, list(SHOWN), TARGET, names)
    std = values.groupby(["dataset", "model", "metric"])["value"].std(ddof=1)
    frame["std_a"] = [std.get((d, m, k), np.nan) for d, m, k in frame[["dataset", "model_a", "metric"]].itertuples(
        index=False)]
    frame["std_b"] = [std.get((d, TARGET, k), np.nan) for d, k in frame[["dataset", "metric"]].itertuples(index=False)]
    return frame


def _md(frame: pd.DataFrame, labels: dict) -> str:
    rows = []
    for _, r in frame.iterrows():
        rows.append([dataset_title(r["dataset"]), f"{r['model_a']}", labels.get(r["model_a"], ""), r["metric"],
                     f"{cell(r['mean_a'], r['std_a'])} (n={int(r['n_seeds_a'])})",
                     f"{cell(r['mean_b'], r['std_b'])} (n={int(r['n_seeds_b'])})",
                     f"{100 * r['paired_diff']:+.3f} [{100 * r['paired_ci_low']:+.3f}, {100 * r['paired_ci_high']:+.3f}]",
                     p_value(r.get("paired_p_holm")), p_value(r.get("welch_p_holm"))])
    return ("# Controls: what DiffuRec's result rests on\n\n"
            "Each control against DiffuRec on the same users (%, mean ± std over seeds). Δ = control − DiffuRec, "
            "averaged over users (each user's value averaged over that model's own seeds: a control with fewer "
            "seeds so far meets DiffuRec's mean over all of its seeds), with its paired 95 % "
            "interval; a negative Δ means DiffuRec is better. p: paired t-test over users and Welch t-test over "
            "seeds, Holm–Bonferroni over every row of this table. See README \"Controls\".\n\n"
            + md_table(["Dataset", "Control", "What it isolates", "Metric", "Control", "DiffuRec",
                        "Δ paired [95 % CI]", "paired p (Holm)", "Welch p (Holm)"], rows) + "\n")


def controls(ctx: Context) -> list[Table]:
    """The controls table (profiles with ``controls:``)."""
    if not ctx.controls:
        return []
    frame = controls_frame(ctx)
    if not len(frame):
        ctx.notes.append("Controls table not written: no control run and DiffuRec run on a common dataset yet")
        return []
    md = _md(frame, ctx.controls)
    copies = ctx.col.lent
    for dataset, name, base in sorted({(r["dataset"], r["model"], r["base_model"]) for r in copies}):
        choice = validation_choice(ctx.col.ok_records, dataset, base)
        md += (f"\n{dataset_title(dataset)}, {name}: validation picks `{choice['setting']}` of the "
               f"{choice['n_settings']} tuning settings with records so far; {stand_in_note(copies, dataset, name)}; "
               f"see `tuning.md`.\n")
    return [Table("Controls (diffusion, capacity, tuning)", "controls", md, frame)]
