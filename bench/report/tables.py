"""The paper's Tables 1-3: dataset statistics, overall performance, ablation.

Each ``table*`` function takes the :class:`~bench.report.context.Context` and returns
the :class:`~bench.report.context.Table` objects it renders (none when its runs are
missing, with a note for ``index.md``).  Tables 2 and 3 come with their significance
tables, since the direction marks in them are read from those tests.
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
UP, DOWN = "▲", "▼"  # significantly better / worse by the headline test (Holm-adjusted)


def direction_mark(diff: float, p_holm: float, alpha: float = stats.ALPHA) -> str:
    """'▲' when the headline test's adjusted p < alpha and diff > 0, '▼' when diff < 0, else ''."""
    if not (np.isfinite(p_holm) and p_holm < alpha and np.isfinite(diff)) or diff == 0:
        return ""
    return UP if diff > 0 else DOWN


def _styled(text: str, row, kind: str) -> str:
    """Bold best, underline second, the direction mark of a significant difference (kind 'md' or 'tex')."""
    if text == "–":
        return text
    mark = row.get("mark") or ""
    if kind == "md":
        text = f"**{text}**" if row["best"] else (f"<u>{text}</u>" if row["second"] else text)
        return text + mark
    text = text.replace("±", r"$\pm$")
    text = rf"\textbf{{{text}}}" if row["best"] else (rf"\underline{{{text}}}" if row["second"] else text)
    tex_mark = {UP: r"$^{\blacktriangle}$", DOWN: r"$^{\blacktriangledown}$"}.get(mark, "")
    return text + tex_mark


def one_seed_mark(r, kind: str) -> str:
    """' (n=1)' on a cell resting on one seed (no spread, no over-seeds test), unless the partial-grid
    mark already gives its n."""
    if int(r["n_seeds"]) != 1:
        return ""
    return " (n=1)" if kind == "md" else r" ($n=1$)"


# =========================================================================== Table 2
def not_converged(col: Collected) -> dict:
    """{(dataset, model): seeds whose run stopped at the epoch cap} (``store.converged``: validation
    was still improving, or had not yet run out of patience, when the epochs ran out)."""
    out = {}
    for r in col.ok_records:
        if not store.converged(r):
            out.setdefault((r["dataset"], r["model"]), []).append(int(r["seed"]))
    return out


def gpu_devices(col: Collected) -> dict:
    """{(dataset, model): sorted names of the non-CPU devices its ok runs trained on} (record
    ``env.device``); cells absent here were trained on the CPU alone."""
    out = {}
    for r in col.ok_records:
        device = str((r.get("env") or {}).get("device") or "cpu")
        if device != "cpu":
            out.setdefault((r["dataset"], r["model"]), set()).add(device)
    return {k: sorted(v) for k, v in out.items()}


def gpu_mark(key, gpu: dict | None, kind: str) -> str:
    """'‡' on a cell with at least one GPU-made run (``gpu``: :func:`gpu_devices`)."""
    if not gpu or key not in gpu:
        return ""
    return "‡" if kind == "md" else r"$^{\ddagger}$"


def gpu_legend_md(gpu: dict | None) -> str:
    """The footnote naming the devices of the ‡ cells; empty when every run trained on the CPU."""
    if not gpu:
        return ""
    devices = sorted({d for names in gpu.values() for d in names})
    return (f"\n‡: at least one seed of the cell trained on {', '.join(devices)} (record `env.device`); GPU kernels "
            "reduce in other orders than the CPU's, so such a cell is comparable with the others within `bench "
            "reproduce`'s equivalence, not bit for bit. bench/gpu_collect.sh admits a GPU sweep's records only after "
            "its equivalence gate passed (gpu-gate.md: a CPU record rerun on the device, judged by that rule).\n")


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
                    "not_converged": len(capped.get((dataset, model), [])),
                    **_table2_test_cells(vb if is_target else None),
                })
    return pd.DataFrame(rows, columns=[
        "dataset", "metric", "model", "n_seeds", "mean_pct", "std_pct", "ci_low_pct", "ci_high_pct", "best",
        "second", "best_baseline", "not_converged", *TABLE2_TEST_COLUMNS])


TABLE2_TEST_COLUMNS = ("improv_pct", "hb_p", "hb_p_holm", "p_a_beats_b", "seeds_p", "seeds_p_holm", "family", "mark")


def _table2_test_cells(vb) -> dict:
    """The Table 2 test of a DiffuRec cell (``vb``: its ``versus_best`` row; None for other cells):
    headline p (Holm family ``table2``), P(DiffuRec > best baseline), Welch over seeds, direction mark."""
    if vb is None:
        return {c: (np.nan if c not in ("family", "mark") else "") for c in TABLE2_TEST_COLUMNS}
    return {"improv_pct": vb["improv_pct"], "hb_p": vb["hb_p"], "hb_p_holm": vb["hb_p_holm"],
            "p_a_beats_b": vb["p_a_beats_b"], "seeds_p": vb["seeds_p"], "seeds_p_holm": vb["seeds_p_holm"],
            "family": vb["family"], "mark": direction_mark(vb["diff"], vb["hb_p_holm"])}


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


def _table2_grid(cells: pd.DataFrame, kind: str, want: dict | None = None, gpu: dict | None = None) -> tuple[list, list]:
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
                    partial = _partial_marks(r, (want or {}).get((dataset, m)), kind)
                    row.append(_styled(cell(r["mean_pct"] / 100, r["std_pct"] / 100), r, kind)
                               + (partial if "n=" in partial else one_seed_mark(r, kind) + partial)
                               + gpu_mark((dataset, m), gpu, kind))
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


def _table2_md(cells: pd.DataFrame, want: dict | None = None, gpu: dict | None = None) -> str:
    header, rows = _table2_grid(cells, "md", want, gpu)
    text = ("# Table 2: overall performance (%, mean ± sample std over seeds)\n\n" + TABLE2_FAMILY_MD + "\n\n"
            + md_table(header, rows) + table2_legend_md() + gpu_legend_md(gpu))
    return text + _coverage_md(cells, want or {})


TABLE2_FAMILY_MD = ("**Holm family of this report (`table2`):** DiffuRec against the best baseline of every row, "
                    "every dataset × the six metrics (" + ", ".join(METRICS) + "); headline test, Welch over seeds "
                    "and the tests over users each adjusted within it. significance_table2.md, the all-pairs "
                    "tables and the audit quote these adjusted p.")


def table2_legend_md() -> str:
    """The legend under Table 2: what the marks, (n=1), std and Improv. mean."""
    return (
        f"\nBold: best mean in the row; underlined: second best. Marks on DiffuRec, by the headline test "
        f"(two-level bootstrap over seeds and test users, Holm family `table2`, adjusted p < {stats.ALPHA}): "
        f"{UP} DiffuRec significantly better than the row's best baseline, {DOWN} significantly worse; no mark: "
        "not significant. ± is the sample standard deviation over seeds (ddof = 1). (n=1): the cell rests on "
        "one seed, so it has no spread, no over-seeds test and no effect size; its comparisons take the other "
        "model's seed variance (significance_table2.md, Note). Improv. = 100 × (DiffuRec / best baseline − 1), "
        "the best baseline being the baseline with the highest mean in the row. "
        + stats.HEADLINE_NOTE + " Details, with Welch over seeds and the paired tests over users: "
        "significance_table2.md. †: at least one run of the cell stopped at the epoch cap, not by early "
        "stopping (not shown to have converged).\n")


def _table2_tex(cells: pd.DataFrame, want: dict | None = None, gpu: dict | None = None) -> str:
    header, rows = _table2_grid(cells, "tex", want, gpu)
    rows = [[tex(r[0]), tex(r[1]), *r[2:-1], tex(r[-1])] for r in rows]
    caption = (r"Overall performance (\%, mean $\pm$ sample std over seeds). Bold: best; underlined: second best; "
               r"$^{\blacktriangle}$/$^{\blacktriangledown}$: DiffuRec significantly better/worse than the best "
               r"baseline (two-level bootstrap over seeds and users, Holm--Bonferroni over the table, $p<0.05$); "
               r"$n=1$: one seed. Improv.: DiffuRec over the best baseline.")
    if gpu:
        caption += (r" $^{\ddagger}$: trained on " + tex(", ".join(sorted({d for v in gpu.values() for d in v})))
                    + " (at least one seed), after the CPU-equivalence gate.")
    return tex_table(header, rows, caption, "tab:overall", blocks_of=len(METRICS))


def table2(ctx: Context) -> list[Table]:
    """Table 2: models x metrics x datasets, and DiffuRec against the best baseline of each row."""
    cells = table2_cells(ctx.col, ctx.vs_best)
    if not len(cells):
        ctx.notes.append("Table 2 not written: no ok runs of models without a variant")
        return []
    want, gpu = expected_seeds(ctx.expected), gpu_devices(ctx.col)
    out = [Table("Table 2 (overall performance)", "table2", _table2_md(cells, want, gpu), cells,
                 _table2_tex(cells, want, gpu))]
    if len(ctx.vs_best):
        out.append(Table("DiffuRec vs best baseline (Table 2 tests)", "significance_table2",
                         sig_md("DiffuRec vs the best baseline of each Table 2 row", ctx.vs_best,
                                "`table2` = DiffuRec against the best baseline of every Table 2 row, every "
                                "dataset × the six metrics (" + ", ".join(METRICS) + ")"), ctx.vs_best))
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
                    "hb_p": t["hb_p"] if t is not None else np.nan,
                    "hb_p_holm": t["hb_p_holm"] if t is not None else np.nan,
                    "seeds_p_holm": t["seeds_p_holm"] if t is not None else np.nan,
                    "mark": direction_mark(t["diff"], t["hb_p_holm"]) if t is not None else "",
                    "best": False, "second": False,
                })
    return pd.DataFrame(rows, columns=[
        "dataset", "ablation", "model", "metric", "n_seeds", "mean_pct", "std_pct", "ci_low_pct",
        "ci_high_pct", "change_vs_diffurec_pct", "hb_p", "hb_p_holm", "seeds_p_holm", "mark", "best", "second"])


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
                    row.append(_styled(cell(r["mean_pct"] / 100, r["std_pct"] / 100), r, kind) + one_seed_mark(r, kind))
                else:
                    row.append("–")
            rows.append(row)
    return header, rows


def _table3_md(cells: pd.DataFrame) -> str:
    header, rows = _table3_grid(cells, "md")
    return ("# Table 3: ablation (%, mean ± sample std over seeds)\n\n" + TABLE3_FAMILY_MD + "\n\n"
            + md_table(header, rows)
            + "\nw GRU: DiffuRec with a GRU approximator (params approximator = gru); w R*: rounding by "
              f"negative squared distance (params rounding = neg_sq_distance). {UP} / {DOWN}: the ablation is "
              "significantly better / worse than full DiffuRec by the headline test (two-level bootstrap over "
              "seeds and test users, Holm family `table3`, adjusted p < 0.05). ± is the sample standard "
              "deviation over seeds (ddof = 1); (n=1): one seed. Details: significance_table3.md.\n")


TABLE3_FAMILY = ("`table3` = each ablation against full DiffuRec, every dataset × the six metrics ("
                 + ", ".join(METRICS) + ")")
TABLE3_FAMILY_MD = f"**Holm family of this report:** {TABLE3_FAMILY}; significance_table3.md and the audit quote it."


def _table3_tex(cells: pd.DataFrame) -> str:
    header, rows = _table3_grid(cells, "tex")
    rows = [[tex(r[0]), tex(r[1]), *r[2:]] for r in rows]
    caption = (r"Ablation (\%, mean $\pm$ sample std over seeds). $^{\blacktriangle}$/$^{\blacktriangledown}$: "
               r"significantly better/worse than DiffuRec (two-level bootstrap over seeds and users, "
               r"Holm--Bonferroni over the table, $p<0.05$).")
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
                  sig_md("Ablations (A) against full DiffuRec (B)", ctx.vs_reference, TABLE3_FAMILY),
                  ctx.vs_reference)]
