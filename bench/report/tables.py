"""The paper's Tables 1-3: dataset statistics, overall performance, ablation.

Each ``table*`` function takes the :class:`~bench.report.context.Context` and returns
the :class:`~bench.report.context.Table` objects it renders (none when its runs are
missing, with a note for ``index.md``).  Tables 2 and 3 come with their significance
tables, since the stars in them are read from those tests.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

from bench import stats, store
from bench.fmt import cell, dataset_title, md_table, order_datasets, scrub_paths, tex, tex_table
from bench.report.collect import ABLATIONS, METRICS, PAPER_MODELS, TARGET, Collected, order_models
from bench.report.context import Context, Table
from bench.report.significance import sig_md

TABLE1_KEYS = ("sequences", "items", "actions", "avg_len", "sparsity")


# =========================================================================== Table 1
def table1_frame(datasets: Sequence[str], data_dir=None, shown_paths: dict | None = None) -> pd.DataFrame:
    """One row per dataset: status and ours/paper for each Table 1 statistic.

    shown_paths: {absolute folder: shown form} replaced in a status text (an unavailable
    dataset's status names its data file).
    """
    from datasets.prepare import stats_rows

    rows = []
    for name in datasets:
        try:
            got = stats_rows([name], data_dir)
            row = got[0] if got else {"dataset": name, "status": "unavailable: no row"}
        except Exception as err:  # unknown card, unreadable data: listed, not fatal
            row = {"dataset": name, "status": f"unavailable: {type(err).__name__}: {err}"}
        status = row.get("status")
        if isinstance(status, str):
            status = scrub_paths(status, shown_paths or {})
        flat = {"dataset": name, "title": row.get("title", dataset_title(name)), "status": status}
        for k in TABLE1_KEYS:
            flat[f"{k}_ours"] = (row.get("ours") or {}).get(k)
            flat[f"{k}_paper"] = (row.get("paper") or {}).get(k)
        flat["differs"] = ",".join(row.get("differs") or [])
        rows.append(flat)
    return pd.DataFrame(rows)


def _table1_md(frame: pd.DataFrame) -> str:
    fmts = {"sequences": "{:,.0f}", "items": "{:,.0f}", "actions": "{:,.0f}", "avg_len": "{:.2f}",
            "sparsity": "{:.2f}%"}
    rows = []
    for _, r in frame.iterrows():
        cells = [r["title"]]
        for k in TABLE1_KEYS:
            ours, paper = r[f"{k}_ours"], r[f"{k}_paper"]
            o = fmts[k].format(ours) if ours is not None and pd.notna(ours) else "–"
            p = fmts[k].format(paper) if paper is not None and pd.notna(paper) else "–"
            flag = " ≠" if k in str(r["differs"]).split(",") else ""
            cells.append(f"{o} ({p}){flag}")
        cells.append(r["status"] if r["status"] == "ok" else f"**{r['status']}**")
        rows.append(cells)
    text = "# Table 1: dataset statistics — ours (paper)\n\n"
    text += md_table(["Dataset", "# Sequences", "# Items", "# Actions", "Avg_len", "Sparsity", "Status"], rows)
    text += ("\n≠ marks a statistic that differs from the paper's Table 1 (relative tolerance 0.5%). "
             "Statistics describe the whole dataset file, not the users a profile evaluates.\n")
    return text


def table1(ctx: Context) -> list[Table]:
    """Table 1: dataset statistics, ours next to the paper's (``datasets.prepare.stats_rows``)."""
    names = {r["dataset"] for r in ctx.col.records} | {e[0] for e in (ctx.expected or [])}
    frame = table1_frame(order_datasets(names), ctx.data_dir, ctx.shown_paths)
    return [Table("Table 1 (dataset statistics)", "table1", _table1_md(frame), frame)]


# =========================================================================== cell styling
def _styled(text: str, row, kind: str) -> str:
    """Bold best, underline second, star a significant difference (kind 'md' or 'tex')."""
    if text == "–":
        return text
    if kind == "md":
        text = f"**{text}**" if row["best"] else (f"<u>{text}</u>" if row["second"] else text)
        return text + ("\\*" if row.get("star") else "")
    text = text.replace("±", r"$\pm$")
    text = rf"\textbf{{{text}}}" if row["best"] else (rf"\underline{{{text}}}" if row["second"] else text)
    return text + (r"$^{*}$" if row.get("star") else "")


# =========================================================================== Table 2
def not_converged(col: Collected) -> dict:
    """{(dataset, model): seeds whose run stopped at the epoch cap} (``store.converged``: validation
    was still improving, or had not yet run out of patience, when the epochs ran out)."""
    out = {}
    for r in col.ok_records:
        if not store.converged(r):
            out.setdefault((r["dataset"], r["model"]), []).append(int(r["seed"]))
    return out


def table2_cells(col: Collected, vs_best: pd.DataFrame) -> pd.DataFrame:
    """Long frame: one row per (dataset, metric, model) of Table 2 with formatting flags."""
    summary = stats.summarize(col.values)
    capped = not_converged(col)
    rows = []
    for dataset in order_datasets(col.main_models):
        models = col.main_models[dataset]
        for metric in METRICS:
            sel = summary[(summary["dataset"] == dataset) & (summary["metric"] == metric)
                          & summary["model"].isin(models)].set_index("model")
            best, second = stats.best_and_second(sel["mean"])
            vb = vs_best[(vs_best["dataset"] == dataset) & (vs_best["metric"] == metric)]
            vb = vb.iloc[0] if len(vb) else None
            for model in models:
                if model not in sel.index:
                    continue
                s = sel.loc[model]
                is_target = model == TARGET and vb is not None
                rows.append({
                    "dataset": dataset, "metric": metric, "model": model, "n_seeds": int(s["n"]),
                    "mean_pct": 100 * s["mean"], "std_pct": 100 * s["std"],
                    "ci_low_pct": 100 * s["ci_low"], "ci_high_pct": 100 * s["ci_high"],
                    "best": model in best, "second": model in second,
                    "best_baseline": vb["model_b"] if vb is not None else None,
                    "improv_pct": vb["improv_pct"] if is_target else np.nan,
                    "welch_p": vb["welch_p"] if is_target else np.nan,
                    "welch_p_holm": vb["welch_p_holm"] if is_target else np.nan,
                    "star": bool(is_target and np.isfinite(vb["welch_p_holm"])
                                 and vb["welch_p_holm"] < stats.ALPHA),
                    "not_converged": len(capped.get((dataset, model), [])),
                })
    return pd.DataFrame(rows, columns=[
        "dataset", "metric", "model", "n_seeds", "mean_pct", "std_pct", "ci_low_pct", "ci_high_pct", "best",
        "second", "best_baseline", "improv_pct", "welch_p", "welch_p_holm", "star", "not_converged"])


def expected_seeds(expected) -> dict:
    """{(dataset, model): number of seeds the profile's grid expects} (empty without a grid)."""
    out = {}
    for dataset, model, _ in expected or []:
        out[(dataset, model)] = out.get((dataset, model), 0) + 1
    return out


def _partial_marks(r, want: int | None, kind: str) -> str:
    """' (n=k)' when a cell rests on fewer seeds than the grid has, '†' when a run hit the epoch cap."""
    out = ""
    if want and int(r["n_seeds"]) < want:
        out += f" (n={int(r['n_seeds'])})" if kind == "md" else f" ($n={int(r['n_seeds'])}$)"
    if r.get("not_converged"):
        out += "†" if kind == "md" else r"$^{\dagger}$"
    return out


def _table2_grid(cells: pd.DataFrame, kind: str, want: dict | None = None) -> tuple[list, list]:
    models = []
    for m in cells["model"]:
        if m not in models:
            models.append(m)
    models = order_models(models, {})
    header = ["Dataset", "Metric", *models, "Improv."]
    rows = []
    for dataset in order_datasets(cells["dataset"].unique()):
        for i, metric in enumerate(METRICS):
            sel = cells[(cells["dataset"] == dataset) & (cells["metric"] == metric)].set_index("model")
            row = [dataset_title(dataset) if (i == 0 or kind == "md") else "", metric]
            for m in models:
                if m in sel.index:
                    r = sel.loc[m]
                    row.append(_styled(cell(r["mean_pct"] / 100, r["std_pct"] / 100), r, kind)
                               + _partial_marks(r, (want or {}).get((dataset, m)), kind))
                else:
                    row.append("–")
            imp = sel["improv_pct"].dropna() if len(sel) else pd.Series(dtype=float)
            row.append(f"{imp.iloc[0]:.2f}%" if len(imp) else "–")
            rows.append(row)
    return header, rows


def _coverage_md(cells: pd.DataFrame, want: dict) -> str:
    """What the table rests on, when the grid is not complete: runs present and missing per dataset.

    The models are every model of the zoo the grid expects (``bench.zoo.discover``), not only the
    paper's ten, so a model added to ``models/`` is listed here as in ``index.md``.
    """
    if not want:
        return ""
    from bench.zoo import discover

    table2_models = {spec.name for spec in discover().values()}  # base models; variants are not Table 2 columns
    have = {(d, m): n for d, m, n in cells[["dataset", "model", "n_seeds"]].drop_duplicates().itertuples(index=False)}
    lines, present = [], set(cells["dataset"])
    absent = order_datasets({d for d, _ in want} - present)
    for dataset in order_datasets(present):
        models = order_models([m for d, m in want if d == dataset and m in table2_models], {})
        partial = [f"{m} {have.get((dataset, m), 0)}/{want[(dataset, m)]}" for m in models
                   if have.get((dataset, m), 0) < want[(dataset, m)]]
        if partial:
            lines.append(f"- {dataset_title(dataset)}: seeds present/expected — {', '.join(partial)}")
    if absent:
        lines.append(f"- no runs at all: {', '.join(dataset_title(d) for d in absent)}")
    if not lines:
        return ""
    return ("\n**Partial grid.** A cell marked (n=k) rests on k seeds; a model absent from a dataset's rows has no "
            "record yet (its cells show –):\n\n" + "\n".join(lines) + "\n")


def _table2_md(cells: pd.DataFrame, want: dict | None = None) -> str:
    header, rows = _table2_grid(cells, "md", want)
    text = "# Table 2: overall performance (%, mean ± std over seeds)\n\n" + md_table(header, rows)
    text += (
        "\nBold: best mean in the row; underlined: second best. \\* on DiffuRec: its difference to "
        "the best baseline of the row is significant (two-sided Welch t-test over seeds, Holm–Bonferroni "
        "over all rows of this table, adjusted p < 0.05); it marks a difference in either direction. "
        "Improv. = 100 × (DiffuRec / best baseline − 1), the best baseline being the baseline with the "
        "highest mean in the row. " + stats.WELCH_NOTE + " Details: significance_table2.md. "
        "†: at least one run of the cell stopped at the epoch cap, not by early stopping (not shown to "
        "have converged).\n")
    return text + _coverage_md(cells, want or {})


def _table2_tex(cells: pd.DataFrame, want: dict | None = None) -> str:
    header, rows = _table2_grid(cells, "tex", want)
    rows = [[tex(r[0]), tex(r[1]), *r[2:-1], tex(r[-1])] for r in rows]
    caption = (r"Overall performance (\%, mean $\pm$ std over seeds). Bold: best; underlined: second best; "
               r"$^{*}$: DiffuRec differs significantly from the best baseline (two-sided Welch t-test, "
               r"Holm--Bonferroni over the table, $p<0.05$). Improv.: DiffuRec over the best baseline.")
    return tex_table(header, rows, caption, "tab:overall", blocks_of=len(METRICS))


def table2(ctx: Context) -> list[Table]:
    """Table 2: models x metrics x datasets, and DiffuRec against the best baseline of each row."""
    cells = table2_cells(ctx.col, ctx.vs_best)
    if not len(cells):
        ctx.notes.append("Table 2 not written: no ok runs of models without a variant")
        return []
    want = expected_seeds(ctx.expected)
    out = [Table("Table 2 (overall performance)", "table2", _table2_md(cells, want), cells, _table2_tex(cells, want))]
    if len(ctx.vs_best):
        out.append(Table("DiffuRec vs best baseline (Table 2 tests)", "significance_table2",
                         sig_md("DiffuRec vs the best baseline of each Table 2 row", ctx.vs_best,
                                "all rows of Table 2"), ctx.vs_best))
    else:
        ctx.notes.append("No DiffuRec vs best-baseline tests: DiffuRec or every baseline is missing")
    return out


# =========================================================================== Table 3
def table3_cells(col: Collected, vs_ref: pd.DataFrame) -> pd.DataFrame:
    """Long frame: one row per (dataset, ablation label, metric)."""
    summary = stats.summarize(col.values).set_index(["dataset", "model", "metric"])
    rows = []
    for dataset in order_datasets(col.ablation_models):
        labels = col.ablation_models[dataset]
        if set(labels) == {"DiffuRec"}:
            continue
        for label in ABLATIONS:
            model = labels.get(label)
            if model is None:
                continue
            for metric in METRICS:
                if (dataset, model, metric) not in summary.index:
                    continue
                s = summary.loc[(dataset, model, metric)]
                t = vs_ref[(vs_ref["dataset"] == dataset) & (vs_ref["model_a"] == model)
                           & (vs_ref["metric"] == metric)]
                t = t.iloc[0] if len(t) else None
                rows.append({
                    "dataset": dataset, "ablation": label, "model": model, "metric": metric,
                    "n_seeds": int(s["n"]), "mean_pct": 100 * s["mean"], "std_pct": 100 * s["std"],
                    "ci_low_pct": 100 * s["ci_low"], "ci_high_pct": 100 * s["ci_high"],
                    "change_vs_diffurec_pct": t["change_pct"] if t is not None else np.nan,
                    "welch_p": t["welch_p"] if t is not None else np.nan,
                    "welch_p_holm": t["welch_p_holm"] if t is not None else np.nan,
                    "star": bool(t is not None and np.isfinite(t["welch_p_holm"])
                                 and t["welch_p_holm"] < stats.ALPHA),
                    "best": False, "second": False,
                })
    return pd.DataFrame(rows, columns=[
        "dataset", "ablation", "model", "metric", "n_seeds", "mean_pct", "std_pct", "ci_low_pct",
        "ci_high_pct", "change_vs_diffurec_pct", "welch_p", "welch_p_holm", "star", "best", "second"])


def _table3_grid(cells: pd.DataFrame, kind: str) -> tuple[list, list]:
    header = ["Dataset", "Ablation", *METRICS]
    rows = []
    for dataset in order_datasets(cells["dataset"].unique()):
        sub = cells[cells["dataset"] == dataset]
        present = [a for a in ABLATIONS if a in set(sub["ablation"])]
        for i, label in enumerate(present):
            sel = sub[sub["ablation"] == label].set_index("metric")
            name = f"{label} ({sel['model'].iloc[0]})" if label != "DiffuRec" else label
            row = [dataset_title(dataset) if (i == 0 or kind == "md") else "", name]
            for metric in METRICS:
                if metric in sel.index:
                    r = sel.loc[metric]
                    row.append(_styled(cell(r["mean_pct"] / 100, r["std_pct"] / 100), r, kind))
                else:
                    row.append("–")
            rows.append(row)
    return header, rows


def _table3_md(cells: pd.DataFrame) -> str:
    header, rows = _table3_grid(cells, "md")
    return ("# Table 3: ablation (%, mean ± std over seeds)\n\n" + md_table(header, rows)
            + "\nw GRU: DiffuRec with a GRU approximator (params approximator = gru); w R*: rounding by "
              "negative squared distance (params rounding = neg_sq_distance). \\*: different from full "
              "DiffuRec (two-sided Welch t-test over seeds, Holm–Bonferroni over this table, adjusted "
              "p < 0.05). Details: significance_table3.md.\n")


def _table3_tex(cells: pd.DataFrame) -> str:
    header, rows = _table3_grid(cells, "tex")
    rows = [[tex(r[0]), tex(r[1]), *r[2:]] for r in rows]
    caption = (r"Ablation (\%, mean $\pm$ std over seeds). $^{*}$: differs significantly from DiffuRec "
               r"(two-sided Welch t-test, Holm--Bonferroni over the table, $p<0.05$).")
    return tex_table(header, rows, caption, "tab:ablation")


def table3(ctx: Context) -> list[Table]:
    """Table 3: DiffuRec, w GRU (approximator = gru), w R* (rounding = neg_sq_distance), with their tests."""
    cells = table3_cells(ctx.col, ctx.vs_reference)
    if not len(cells):
        ctx.notes.append("Table 3 not written: no DiffuRec ablation runs (approximator = gru or rounding = "
                         "neg_sq_distance) beside a DiffuRec run")
        return []
    return [Table("Table 3 (ablation)", "table3", _table3_md(cells), cells, _table3_tex(cells)),
            Table("Ablations vs DiffuRec (Table 3 tests)", "significance_table3",
                  sig_md("Ablations (A) against full DiffuRec (B)", ctx.vs_reference, "all rows of Table 3"),
                  ctx.vs_reference)]
