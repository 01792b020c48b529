"""Summaries of every run: all (dataset, model, metric) cells, and the head/long-tail and length breakdowns."""
from __future__ import annotations

from bench import stats
from bench.fmt import cell, dataset_title, md_table, pct
from bench.report.context import Context, Table

BREAKDOWN_METRICS = ("HR@10", "NDCG@10")
BREAKDOWNS = (("head_tail", "breakdown_head_tail", "Head vs long-tail (Fig. 8 data)"),
              ("length", "breakdown_length", "Sequence-length groups (Fig. 9 data)"))


def all_runs(ctx: Context) -> list[Table]:
    """Every (dataset, model, metric) of the profile, variants included: mean ± std and 95% t-interval."""
    summary = stats.summarize(ctx.col.values)
    if not len(summary):
        return []
    summary = summary.merge(ctx.col.runs[["dataset", "model", "base_model", "variant", "role"]]
                            .drop_duplicates(["dataset", "model"]), on=["dataset", "model"], how="left")
    rows = [[dataset_title(r["dataset"]), r["model"], r["metric"], cell(r["mean"], r["std"]), str(int(r["n"])),
             f"[{pct(r['ci_low'])}, {pct(r['ci_high'])}]"] for _, r in summary.iterrows()]
    md = ("# All runs: test metrics (%, mean ± std over seeds, 95% t-interval)\n\n"
          + md_table(["Dataset", "Model", "Metric", "Mean ± std", "Seeds", "95% CI"], rows))
    return [Table("All runs (variants included), mean ± std over seeds", "summary_all_runs", md, summary)]


def _breakdown_footnote(ctx: Context, kind: str) -> str:
    if kind == "length":
        return "\n" + stats.LENGTH_RULE + "\n"
    rules = sorted({str((r.get("data") or {}).get("head_rule")) for r in ctx.col.ok_records})
    return "\nHead: " + "; ".join(rules) + "\n"


def breakdowns(ctx: Context) -> list[Table]:
    """Head vs long-tail and sequence-length groups of the Table 2/3 runs (the data of Figs. 8 and 9)."""
    if not len(ctx.breakdown):
        return []
    out = []
    for kind, stem, title in BREAKDOWNS:
        sub = ctx.breakdown[ctx.breakdown["kind"] == kind]
        if not len(sub):
            continue
        rows = [[dataset_title(r["dataset"]), r["model"], r["group"], r["metric"], cell(r["mean"], r["std"]),
                 str(int(r["n"])), f"{r['n_users']:.0f}"] for _, r in sub.iterrows()
                if r["metric"] in BREAKDOWN_METRICS]
        md = (f"# {title}\n\n" + md_table(["Dataset", "Model", "Group", "Metric", "% (mean ± std)", "Seeds",
                                            "Users"], rows) + _breakdown_footnote(ctx, kind))
        out.append(Table(title, stem, md, sub))
    return out
