"""The controls table: does DiffuRec win because of diffusion, or because of size and training?

Each control (the profile's ``controls:``, name -> what it isolates) is compared with
DiffuRec on the same users by the headline test (two-level bootstrap over seeds and users,
``bench.stats.hierarchical_bootstrap``): the difference control − DiffuRec with its 95 %
interval, p and P(control > DiffuRec); beside it the over-seeds test and the paired t over
users on the common seeds; one Holm family ``controls`` over the whole table.  A control
named ``DiffuRec@<extra evaluation>`` is the trained DiffuRec scored another way (collected
by ``bench.report.collect``): it is compared paired within each seed (same trained model),
never as an independent model.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from bench import stats
from bench.fmt import cell, dataset_title, md_table, num, p_value
from bench.report.collect import METRICS, TARGET, extra_eval_of
from bench.report.context import Context, Table
from bench.report.tuning import stand_in_note, validation_choice

SHOWN = ("HR@10", "NDCG@10", "HR@20", "NDCG@20")


def controls_frame(ctx: Context) -> pd.DataFrame:
    """``stats.versus_reference`` rows (model_a = control, model_b = DiffuRec) with seed stds."""
    names = [n for n in ctx.controls if n in set(ctx.col.values["model"])] if len(ctx.col.values) else []
    if not names:
        return pd.DataFrame()
    values = ctx.col.values[ctx.col.values["model"].isin(names + [TARGET])]
    derived = [n for n in names if extra_eval_of(n) and extra_eval_of(n)[0] == TARGET]
    frame = stats.versus_reference(values, ctx.col.per_seed, list(SHOWN), TARGET, names, comparer=ctx.comparer,
                                   same_training=derived, family="controls")
    std = values.groupby(["dataset", "model", "metric"])["value"].std(ddof=1)
    frame["std_a"] = [std.get((d, m, k), np.nan) for d, m, k in frame[["dataset", "model_a", "metric"]].itertuples(
        index=False)]
    frame["std_b"] = [std.get((d, TARGET, k), np.nan) for d, k in frame[["dataset", "metric"]].itertuples(index=False)]
    return frame


def _ci(r, d, lo, hi) -> str:
    return (f"{100 * r[d]:+.3f} [{100 * r[lo]:+.3f}, {100 * r[hi]:+.3f}]" if np.isfinite(r[lo])
            else (f"{100 * r[d]:+.3f}" if np.isfinite(r[d]) else "–"))


def _md(frame: pd.DataFrame, labels: dict) -> str:
    rows = []
    for _, r in frame.iterrows():
        seeds_test = "" if r["seeds_test"] in ("Welch", "–") else f" ({r['seeds_test']})"
        rows.append([dataset_title(r["dataset"]), f"{r['model_a']}", labels.get(r["model_a"], ""), r["metric"],
                     f"{cell(r['mean_a'], r['std_a'])} (n={int(r['n_seeds_a'])})",
                     f"{cell(r['mean_b'], r['std_b'])} (n={int(r['n_seeds_b'])})",
                     _ci(r, "diff", "hb_ci_low", "hb_ci_high"), p_value(r.get("hb_p_holm")),
                     num(r.get("p_a_beats_b"), "{:.2f}"),
                     p_value(r.get("seeds_p_holm")) + seeds_test,
                     _ci(r, "paired_diff", "paired_ci_low", "paired_ci_high") + f" (seeds {r['common_seeds'] or '–'})",
                     p_value(r.get("paired_p_holm")), r.get("hb_note") or ""])
    return ("# Controls: what DiffuRec's result rests on\n\n"
            "**Holm family of this report (`controls`):** every row of this table (each control against DiffuRec, "
            "every dataset × " + ", ".join(SHOWN) + "); each test kind adjusted within it; the audit's control "
            "claims quote it.\n\n"
            "Each control against DiffuRec on the same users (%, mean ± sample std over seeds). Δ = control − "
            "DiffuRec; a negative Δ means DiffuRec is better. Headline: the two-level bootstrap over seeds and "
            "test users, its 95 % interval, Holm-adjusted p and P(control > DiffuRec) for one new run of each. "
            "A `DiffuRec@…` control is the trained DiffuRec scored another way: it is paired within each seed "
            "(same trained model; over seeds a paired t-test, not Welch). Secondary: over seeds (conditional on "
            "these users) and the paired t over users on the common seeds (conditional on the trained models). "
            "See docs/statistics.md.\n\n"
            + md_table(["Dataset", "Control", "What it isolates", "Metric", "Control", "DiffuRec",
                        "Δ [95 % CI] (seeds+users)", "p (Holm)", "P(control>DiffuRec)", "over seeds p (Holm)",
                        "paired Δ over users [95 % CI]", "paired p (Holm)", "Note"], rows) + "\n")


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
