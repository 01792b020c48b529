"""Render a profile's results store into tables, figures and an index.

``render(results_dir, reports_dir, profile)`` reads every record of the profile
(``bench.store.load_records``) and every needed ``ranks.npz`` exactly once, and writes
under ``<reports_dir>/<profile>/``:

* ``table1``  dataset statistics, ours next to the paper's (``datasets.prepare.stats_rows``)
* ``table2``  models x metrics x datasets, mean ± std over seeds (percent), best bold,
  second underlined, ``*`` = DiffuRec vs the best baseline significant (Welch, Holm over
  the table), "Improv." = DiffuRec over the best baseline in percent, as in the paper
* ``table3``  the ablation: DiffuRec, w GRU (approximator = gru), w R* (rounding =
  neg_sq_distance); ``*`` = different from full DiffuRec (Welch, Holm over the table)
* ``gap_to_paper``  every cell of the paper's Tables 2-3 next to ours with our 95% CI
* ``significance_*``  all pairs per dataset, DiffuRec vs best baseline, ablations
* ``breakdown_*``  head/long-tail and sequence-length groups (the data of Figs. 8-9)
* ``figures/``  Figs. 3, 5, 8, 9, 10, 11, 12 per dataset, PNG and PDF
* ``index.md``  links, budget, protocol, environment, missing / failed runs

Tables come as Markdown, CSV and (Tables 2-3) LaTeX with booktabs.  A figure or table
whose runs do not exist is listed as missing in ``index.md``, never an error.
"""
from __future__ import annotations

import datetime as dt
import json
import math
import re
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import pandas as pd

from bench import stats, store

METRICS = store.METRICS
PAPER_MODELS = ("GRU4Rec", "Caser", "SASRec", "BERT4Rec", "ComiRec", "TiMiRec", "SVAE", "ACVAE",
                "STOSA", "DiffuRec")
TARGET = "DiffuRec"
DATASET_ORDER = ("beauty", "toys", "ml-1m", "steam")
DATASET_TITLES = {"beauty": "Beauty", "toys": "Toys", "ml-1m": "ML-1M", "steam": "Steam"}
ABLATIONS = ("w GRU", "w R*", "DiffuRec")  # the paper's row order in Table 3
PAPER_TABLES = Path(__file__).resolve().parent / "paper_tables"
SCHEDULES = ("truncated_linear", "linear", "cosine", "sqrt")
DELTAS = (0.001, 0.01, 0.1, 1.0)
BREAKDOWN_METRICS = ("HR@10", "NDCG@10")
COLUMN_IN = 3.5  # single-column figure width, inches
FIG_RC = {
    "font.size": 7, "axes.titlesize": 7, "axes.labelsize": 7, "xtick.labelsize": 6,
    "ytick.labelsize": 6, "legend.fontsize": 6, "legend.title_fontsize": 6, "lines.linewidth": 1.0,
    "lines.markersize": 3, "axes.linewidth": 0.6, "errorbar.capsize": 1.5, "pdf.fonttype": 42,
    "savefig.dpi": 200,
}


# =========================================================================== collection
@dataclass
class Collected:
    """Everything the tables and figures need, read from the store once.

    runs:      one row per ok record: dataset, model, base_model, variant (name or None),
               seed, protocol, dir, role ('main' = Table 2 model, 'ablation:<label>', 'other')
    values:    seed-value frame (dataset, model, seed, metric, value) of the test metrics
    per_user:  {(dataset, model): (len(METRICS), n_users) seed-averaged per-user values}
    breakdown: per-run breakdown rows (dataset, model, seed, kind, group, metric, value, n_users)
    """

    records: list
    failed: list
    failed_reruns: list
    runs: pd.DataFrame
    values: pd.DataFrame
    per_user: dict
    breakdown: pd.DataFrame
    length_labels: dict
    main_models: dict            # dataset -> [model names of Table 2, paper order]
    ablation_models: dict        # dataset -> {label: model name}
    problems: list = field(default_factory=list)


def _order_datasets(names: Iterable[str]) -> list[str]:
    names = set(names)
    return [d for d in DATASET_ORDER if d in names] + sorted(names - set(DATASET_ORDER))


def _order_models(names: Iterable[str], base_of: dict) -> list[str]:
    rank = {m: i for i, m in enumerate(PAPER_MODELS)}
    return sorted(set(names), key=lambda m: (rank.get(base_of.get(m, m), len(rank)), m))


def _variant_keys(record: dict) -> set:
    variant = record.get("variant") or {}
    return set((variant.get("params") or {}).keys())


def _is_main(record: dict) -> bool:
    return not record.get("variant")


def _ablation_label(record: dict) -> str | None:
    """'w GRU' / 'w R*' for a DiffuRec variant that is one of the paper's ablations."""
    if record.get("base_model") != TARGET or _is_main(record):
        return None
    params = record.get("params") or {}
    gru = str(params.get("approximator", "")).lower() == "gru"
    rstar = str(params.get("rounding", "")).lower() == "neg_sq_distance"
    if gru and not rstar:
        return "w GRU"
    if rstar and not gru:
        return "w R*"
    return None


def _choose(models_by_label: dict, variant_sizes: dict) -> dict:
    """One model per ablation label: the one overriding fewest params, then by name."""
    return {label: sorted(names, key=lambda m: (variant_sizes.get(m, 0), m))[0]
            for label, names in models_by_label.items() if names}


def _per_metric_ranks(ranks: dict, metric: str) -> np.ndarray:
    """Ranks behind ``metric``: the paper protocol's ``test@<metric>`` checkpoint if stored."""
    return ranks.get(f"test@{metric}", ranks["test"])


def collect(results_dir, profile: str) -> Collected:
    """Read the profile's records and needed ranks (each ``ranks.npz`` once)."""
    every = store.load_records(results_dir, profile, status=None)
    ok = [r for r in every if r.get("status") == "ok"]
    failed = [r for r in every if r.get("status") != "ok"]
    failed_reruns = []
    for path in sorted((Path(results_dir) / profile).glob("*/*/seed-*/failed.json")):
        try:
            rec = json.loads(path.read_text())
        except (OSError, ValueError):
            rec = {"error": {"message": f"unreadable {path}"}}
        rec["_dir"] = str(path.parent)
        failed_reruns.append(rec)

    base_of = {r["model"]: r.get("base_model", r["model"]) for r in ok}
    rows, value_rows = [], []
    main_models, ablation_candidates, variant_sizes = defaultdict(set), defaultdict(lambda: defaultdict(set)), {}
    for r in ok:
        label = _ablation_label(r)
        role = "main" if _is_main(r) else (f"ablation:{label}" if label else "other")
        if role == "main":
            main_models[r["dataset"]].add(r["model"])
        elif label:
            ablation_candidates[r["dataset"]][label].add(r["model"])
            variant_sizes[r["model"]] = len(_variant_keys(r))
        rows.append({"dataset": r["dataset"], "model": r["model"], "base_model": r.get("base_model"),
                     "variant": (r.get("variant") or {}).get("name"), "seed": r.get("seed"),
                     "protocol": r.get("protocol"), "dir": r["_dir"], "role": role})
        test = ((r.get("metrics") or {}).get("test")) or {}
        for metric in METRICS:
            if metric in test and test[metric] is not None:
                value_rows.append((r["dataset"], r["model"], r.get("seed"), metric, float(test[metric])))
    runs = pd.DataFrame(rows, columns=["dataset", "model", "base_model", "variant", "seed", "protocol",
                                       "dir", "role"])
    values = pd.DataFrame(value_rows, columns=["dataset", "model", "seed", "metric", "value"])
    main = {d: _order_models(ms, base_of) for d, ms in main_models.items()}
    ablation = {d: _choose(c, variant_sizes) for d, c in ablation_candidates.items()}
    for d in main:
        if TARGET in main[d]:
            ablation.setdefault(d, {})["DiffuRec"] = TARGET
    col = Collected(every, failed, failed_reruns, runs, values, {}, pd.DataFrame(), {}, main, ablation)
    _read_ranks(col, ok)
    return col


def _read_ranks(col: Collected, ok: list) -> None:
    """Per-user seed averages and breakdown rows from the ranks of Table 2/3 runs."""
    needed = {(d, m) for d, ms in col.main_models.items() for m in ms}
    needed |= {(d, m) for d, labels in col.ablation_models.items() for m in labels.values()}
    ref_users, edges, sums, counts = {}, {}, {}, {}
    breakdown_rows = []
    nm = len(METRICS)
    for r in ok:
        key = (r["dataset"], r["model"])
        if key not in needed:
            continue
        try:
            ranks = store.read_ranks(r["_dir"])
        except (OSError, ValueError, KeyError) as err:
            col.problems.append(f"{r['dataset']}/{r['model']}/seed-{r.get('seed')}: no readable ranks.npz ({err})")
            continue
        if "test" not in ranks or "users" not in ranks:
            col.problems.append(f"{r['dataset']}/{r['model']}/seed-{r.get('seed')}: ranks.npz lacks test/users")
            continue
        dataset = r["dataset"]
        users = ranks["users"]
        mat = np.stack([store.per_user_metric(_per_metric_ranks(ranks, m), m) for m in METRICS])
        hist = ranks.get("hist_len")
        if dataset not in ref_users:
            ref_users[dataset] = users
            if hist is not None:
                _, edges[dataset], col.length_labels[dataset] = stats.length_groups(hist)
        ref = ref_users[dataset]
        if len(users) == len(ref) and np.array_equal(users, ref):
            aligned = mat
        else:  # should not happen: all runs of a (profile, dataset) rank the same users
            col.problems.append(f"{dataset}/{r['model']}/seed-{r.get('seed')}: evaluated users differ from "
                                "the dataset's first run; paired tests use the common users")
            sorter = np.argsort(ref)
            pos = np.clip(np.searchsorted(ref, users, sorter=sorter), 0, len(ref) - 1)
            hit = ref[sorter[pos]] == users
            aligned = np.full((nm, len(ref)), np.nan)
            aligned[:, sorter[pos[hit]]] = mat[:, hit]
        if key not in sums:
            sums[key], counts[key] = np.zeros((nm, len(ref))), np.zeros((nm, len(ref)))
        finite = np.isfinite(aligned)
        sums[key] += np.where(finite, aligned, 0.0)
        counts[key] += finite
        seed = r.get("seed")
        if "test_is_head" in ranks:
            group = np.where(ranks["test_is_head"].astype(bool), 0, 1)
            means, n = stats.group_means(mat, group, 2)
            for gi, gname in enumerate(("head", "long-tail")):
                for mi, metric in enumerate(METRICS):
                    breakdown_rows.append((dataset, r["model"], seed, "head_tail", gname, metric,
                                           means[mi, gi], n[gi]))
        if hist is not None and dataset in edges:
            group = stats.assign_length_groups(hist, edges[dataset])
            means, n = stats.group_means(mat, group, len(edges[dataset]) + 1)
            labels = col.length_labels[dataset]
            for gi, gname in enumerate(labels):
                for mi, metric in enumerate(METRICS):
                    breakdown_rows.append((dataset, r["model"], seed, "length", gname, metric,
                                           means[mi, gi], n[gi]))
    with np.errstate(invalid="ignore", divide="ignore"):
        col.per_user = {k: sums[k] / counts[k] for k in sums}
    col.breakdown = pd.DataFrame(breakdown_rows, columns=["dataset", "model", "seed", "kind", "group",
                                                          "metric", "value", "n_users"])


# =========================================================================== formatting
def _pct(x, digits=3) -> str:
    return "–" if x is None or not np.isfinite(x) else f"{100 * x:.{digits}f}"


def _cell(mean, std, digits=3) -> str:
    if mean is None or not np.isfinite(mean):
        return "–"
    if std is None or not np.isfinite(std):
        return f"{100 * mean:.{digits}f}"
    return f"{100 * mean:.{digits}f} ± {100 * std:.{digits}f}"


def _p(x) -> str:
    if x is None or not np.isfinite(x):
        return "–"
    return f"{x:.2e}" if x < 1e-3 else f"{x:.3f}"


def _num(x, fmt="{:.3f}") -> str:
    return "–" if x is None or (isinstance(x, float) and not np.isfinite(x)) else fmt.format(x)


def _md_table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c).replace("|", "\\|") for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


_TEX_ESCAPE = {"&": r"\&", "%": r"\%", "_": r"\_", "#": r"\#", "$": r"\$", "{": r"\{", "}": r"\}",
               "~": r"\textasciitilde{}", "^": r"\^{}"}


def _tex(text: str) -> str:
    return re.sub(r"[&%_#${}~^]", lambda m: _TEX_ESCAPE[m.group()], str(text))


def _title(dataset: str) -> str:
    return DATASET_TITLES.get(dataset, dataset)


def _write(path: Path, text: str, written: list) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    written.append(path)


def _write_csv(path: Path, frame: pd.DataFrame, written: list) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(path, index=False, float_format="%.10g")
    written.append(path)


# =========================================================================== Table 1
def table1(datasets: Sequence[str], data_dir=None) -> pd.DataFrame:
    """One row per dataset: status and ours/paper for each Table 1 statistic."""
    from datasets.prepare import stats_rows

    keys = ("sequences", "items", "actions", "avg_len", "sparsity")
    rows = []
    for name in datasets:
        try:
            got = stats_rows([name], data_dir)
            row = got[0] if got else {"dataset": name, "status": "unavailable: no row"}
        except Exception as err:  # unknown card, unreadable data: listed, not fatal
            row = {"dataset": name, "status": f"unavailable: {type(err).__name__}: {err}"}
        flat = {"dataset": name, "title": row.get("title", _title(name)), "status": row.get("status")}
        for k in keys:
            flat[f"{k}_ours"] = (row.get("ours") or {}).get(k)
            flat[f"{k}_paper"] = (row.get("paper") or {}).get(k)
        flat["differs"] = ",".join(row.get("differs") or [])
        rows.append(flat)
    return pd.DataFrame(rows)


def _table1_md(frame: pd.DataFrame) -> str:
    keys = ("sequences", "items", "actions", "avg_len", "sparsity")
    fmts = {"sequences": "{:,.0f}", "items": "{:,.0f}", "actions": "{:,.0f}", "avg_len": "{:.2f}",
            "sparsity": "{:.2f}%"}
    rows = []
    for _, r in frame.iterrows():
        cells = [r["title"]]
        for k in keys:
            ours, paper = r[f"{k}_ours"], r[f"{k}_paper"]
            o = fmts[k].format(ours) if ours is not None and pd.notna(ours) else "–"
            p = fmts[k].format(paper) if paper is not None and pd.notna(paper) else "–"
            flag = " ≠" if k in str(r["differs"]).split(",") else ""
            cells.append(f"{o} ({p}){flag}")
        cells.append(r["status"] if r["status"] == "ok" else f"**{r['status']}**")
        rows.append(cells)
    text = "# Table 1: dataset statistics — ours (paper)\n\n"
    text += _md_table(["Dataset", "# Sequences", "# Items", "# Actions", "Avg_len", "Sparsity", "Status"], rows)
    text += ("\n≠ marks a statistic that differs from the paper's Table 1 (relative tolerance 0.5%). "
             "Statistics describe the whole dataset file, not the users a profile evaluates.\n")
    return text


# =========================================================================== Table 2
def table2_cells(col: Collected, vs_best: pd.DataFrame) -> pd.DataFrame:
    """Long frame: one row per (dataset, metric, model) of Table 2 with formatting flags."""
    summary = stats.summarize(col.values)
    rows = []
    for dataset in _order_datasets(col.main_models):
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
                })
    return pd.DataFrame(rows, columns=[
        "dataset", "metric", "model", "n_seeds", "mean_pct", "std_pct", "ci_low_pct", "ci_high_pct", "best",
        "second", "best_baseline", "improv_pct", "welch_p", "welch_p_holm", "star"])


def _styled(cell: str, row, kind: str) -> str:
    if cell == "–":
        return cell
    if kind == "md":
        cell = f"**{cell}**" if row["best"] else (f"<u>{cell}</u>" if row["second"] else cell)
        return cell + ("\\*" if row.get("star") else "")
    cell = cell.replace("±", r"$\pm$")
    cell = rf"\textbf{{{cell}}}" if row["best"] else (rf"\underline{{{cell}}}" if row["second"] else cell)
    return cell + (r"$^{*}$" if row.get("star") else "")


def _table2_grid(cells: pd.DataFrame, kind: str) -> tuple[list, list]:
    models = []
    for m in cells["model"]:
        if m not in models:
            models.append(m)
    models = _order_models(models, {})
    header = ["Dataset", "Metric", *models, "Improv."]
    rows = []
    for dataset in _order_datasets(cells["dataset"].unique()):
        for i, metric in enumerate(METRICS):
            sel = cells[(cells["dataset"] == dataset) & (cells["metric"] == metric)].set_index("model")
            title = _title(dataset) if (i == 0 or kind == "md") else ""
            row = [title, metric]
            for m in models:
                if m in sel.index:
                    r = sel.loc[m]
                    row.append(_styled(_cell(r["mean_pct"] / 100, r["std_pct"] / 100), r, kind))
                else:
                    row.append("–")
            imp = sel["improv_pct"].dropna() if len(sel) else pd.Series(dtype=float)
            row.append(f"{imp.iloc[0]:.2f}%" if len(imp) else "–")
            rows.append(row)
    return header, rows


def _table2_md(cells: pd.DataFrame) -> str:
    header, rows = _table2_grid(cells, "md")
    text = "# Table 2: overall performance (%, mean ± std over seeds)\n\n" + _md_table(header, rows)
    text += (
        "\nBold: best mean in the row; underlined: second best. \\* on DiffuRec: its difference to "
        "the best baseline of the row is significant (two-sided Welch t-test over seeds, Holm–Bonferroni "
        "over all rows of this table, adjusted p < 0.05); it marks a difference in either direction. "
        "Improv. = 100 × (DiffuRec / best baseline − 1), the best baseline being the baseline with the "
        "highest mean in the row. " + stats.WELCH_NOTE + " Details: significance_table2.md.\n")
    return text


def _tex_table(header, rows, caption, label, blocks_of: int | None = None, align=None) -> str:
    align = align or ("ll" + "c" * (len(header) - 2))
    lines = [r"% requires \usepackage{booktabs}", r"\begin{table*}[t]", r"\centering", r"\scriptsize",
             rf"\caption{{{caption}}}", rf"\label{{{label}}}", r"\setlength{\tabcolsep}{2pt}",
             rf"\begin{{tabular}}{{{align}}}", r"\toprule",
             " & ".join(_tex(h) for h in header) + r" \\", r"\midrule"]
    for i, row in enumerate(rows):
        if blocks_of and i and i % blocks_of == 0:
            lines.append(r"\midrule")
        lines.append(" & ".join(row) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}", r"\end{table*}", ""]
    return "\n".join(lines)


def _table2_tex(cells: pd.DataFrame) -> str:
    header, rows = _table2_grid(cells, "tex")
    rows = [[_tex(r[0]), _tex(r[1]), *r[2:-1], _tex(r[-1])] for r in rows]
    caption = (r"Overall performance (\%, mean $\pm$ std over seeds). Bold: best; underlined: second best; "
               r"$^{*}$: DiffuRec differs significantly from the best baseline (two-sided Welch t-test, "
               r"Holm--Bonferroni over the table, $p<0.05$). Improv.: DiffuRec over the best baseline.")
    return _tex_table(header, rows, caption, "tab:overall", blocks_of=len(METRICS))


# =========================================================================== Table 3
def table3_cells(col: Collected, vs_ref: pd.DataFrame) -> pd.DataFrame:
    """Long frame: one row per (dataset, ablation label, metric)."""
    summary = stats.summarize(col.values).set_index(["dataset", "model", "metric"])
    rows = []
    for dataset in _order_datasets(col.ablation_models):
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
    for dataset in _order_datasets(cells["dataset"].unique()):
        sub = cells[cells["dataset"] == dataset]
        present = [a for a in ABLATIONS if a in set(sub["ablation"])]
        for i, label in enumerate(present):
            sel = sub[sub["ablation"] == label].set_index("metric")
            name = f"{label} ({sel['model'].iloc[0]})" if label != "DiffuRec" else label
            row = [_title(dataset) if (i == 0 or kind == "md") else "", name]
            for metric in METRICS:
                if metric in sel.index:
                    r = sel.loc[metric]
                    row.append(_styled(_cell(r["mean_pct"] / 100, r["std_pct"] / 100), r, kind))
                else:
                    row.append("–")
            rows.append(row)
    return header, rows


def _table3_md(cells: pd.DataFrame) -> str:
    header, rows = _table3_grid(cells, "md")
    return ("# Table 3: ablation (%, mean ± std over seeds)\n\n" + _md_table(header, rows)
            + "\nw GRU: DiffuRec with a GRU approximator (params approximator = gru); w R*: rounding by "
              "negative squared distance (params rounding = neg_sq_distance). \\*: different from full "
              "DiffuRec (two-sided Welch t-test over seeds, Holm–Bonferroni over this table, adjusted "
              "p < 0.05). Details: significance_table3.md.\n")


def _table3_tex(cells: pd.DataFrame) -> str:
    header, rows = _table3_grid(cells, "tex")
    rows = [[_tex(r[0]), _tex(r[1]), *r[2:]] for r in rows]
    caption = (r"Ablation (\%, mean $\pm$ std over seeds). $^{*}$: differs significantly from DiffuRec "
               r"(two-sided Welch t-test, Holm--Bonferroni over the table, $p<0.05$).")
    return _tex_table(header, rows, caption, "tab:ablation")


# =========================================================================== tuning
TUNE_TAG = "-tune-"


def tuning_table(records: list) -> pd.DataFrame:
    """Validation (and test) NDCG@10 of every tuning setting beside the model's default.

    One row per (dataset, model, setting); ``best`` marks the highest validation mean
    within (dataset, model).  Defaults are the base runs on the seeds the tuning used.
    """
    tuned = [r for r in records if TUNE_TAG in r["model"]]
    if not tuned:
        return pd.DataFrame()
    seeds = {(r["dataset"], r["base_model"]): set() for r in tuned}
    for r in tuned:
        seeds[(r["dataset"], r["base_model"])].add(r["seed"])
    rows = []
    for r in records:
        key = (r["dataset"], r["base_model"])
        is_default = r["model"] == r["base_model"] and key in seeds and r["seed"] in seeds[key]
        if TUNE_TAG in r["model"] or is_default:
            setting = "default" if is_default else r["model"].split(TUNE_TAG, 1)[1]
            rows.append({"dataset": r["dataset"], "model": r["base_model"], "setting": setting, "seed": r["seed"],
                         "valid_NDCG@10": r["metrics"]["valid"]["NDCG@10"],
                         "test_NDCG@10": r["metrics"]["test"]["NDCG@10"]})
    frame = (pd.DataFrame(rows).groupby(["dataset", "model", "setting"], as_index=False)
             .agg(seeds=("seed", "count"), valid_NDCG10=("valid_NDCG@10", "mean"),
                  test_NDCG10=("test_NDCG@10", "mean")))
    frame["best"] = frame["valid_NDCG10"] == frame.groupby(["dataset", "model"])["valid_NDCG10"].transform("max")
    return frame


def _tuning_md(frame: pd.DataFrame) -> str:
    rows = [[_title(r["dataset"]), r["model"], ("**%s**" % r["setting"]) if r["best"] else r["setting"],
             str(r["seeds"]), _pct(r["valid_NDCG10"]), _pct(r["test_NDCG10"])] for _, r in frame.iterrows()]
    return ("# Baseline tuning on the validation split\n\n"
            "Each setting a model's YAML lists under `tuning` (left open by its paper), varied one at a time "
            "around the YAML default. Bold: the best validation NDCG@10 of that model and dataset. A bold "
            "setting other than `default` means the default in `models/<model>.yaml` should change.\n\n"
            + _md_table(["Dataset", "Model", "Setting", "Seeds", "valid NDCG@10 (%)", "test NDCG@10 (%)"], rows))


# =========================================================================== gap to paper
def paper_table(name: str) -> pd.DataFrame:
    """The transcribed paper table ``table2`` or ``table3`` (percent)."""
    return pd.read_csv(PAPER_TABLES / f"{name}.csv")


def gap_to_paper(col: Collected) -> pd.DataFrame:
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
    rows = [[r["table"], _title(r["dataset"]), r["model"], r["metric"], f"{r['paper_pct']:.4f}",
             f"{r['ours_pct']:.4f}", _num(r["ratio"], "{:.3f}"),
             f"[{r['ci95_low_pct']:.4f}, {r['ci95_high_pct']:.4f}]" if np.isfinite(r["ci95_low_pct"]) else "–",
             {True: "yes", False: "no"}.get(r["paper_in_ci95"], "–")] for _, r in have.iterrows()]
    text = "# Gap to the paper (Tables 2 and 3, percent)\n\n"
    judged = have[have["paper_in_ci95"].notna()]
    if len(judged):
        text += (f"The paper's value lies inside our 95% CI in {int(judged['paper_in_ci95'].sum())} of "
                 f"{len(judged)} cells with at least two seeds; median ratio ours/paper "
                 f"{have['ratio'].median():.3f}.\n\n")
    text += _md_table(header, rows)
    text += (f"\n{int((gap['n_seeds'] == 0).sum())} of {len(gap)} paper cells have no run in this profile "
             "(listed in gap_to_paper.csv). 95% CI: Student t-interval over seeds of our mean. "
             "Ratio: ours / paper.\n")
    return text


# =========================================================================== significance tables
_SIG_HEADER = ["Dataset", "Metric", "A", "B", "Mean A", "Mean B", "Welch p", "Welch p (Holm)", "Cohen's d",
               "Paired Δ (95% CI)", "t-test p", "t-test p (Holm)", "Wilcoxon p", "Wilcoxon p (Holm)"]


def _sig_rows(frame: pd.DataFrame) -> list:
    rows = []
    for _, r in frame.iterrows():
        ci = (f"{_pct(r['paired_diff'])} [{_pct(r['paired_ci_low'])}, {_pct(r['paired_ci_high'])}]"
              if np.isfinite(r["paired_diff"]) else "–")
        rows.append([_title(r["dataset"]), r["metric"], r["model_a"], r["model_b"], _pct(r["mean_a"]),
                     _pct(r["mean_b"]), _p(r["welch_p"]), _p(r["welch_p_holm"]), _num(r["cohen_d"], "{:.2f}"),
                     ci, _p(r["paired_p"]), _p(r["paired_p_holm"]), _p(r["wilcoxon_p"]),
                     _p(r["wilcoxon_p_holm"])])
    return rows


def _sig_md(title: str, frame: pd.DataFrame, family: str) -> str:
    return (f"# {title}\n\n" + _md_table(_SIG_HEADER, _sig_rows(frame))
            + f"\nMeans and paired differences in percent. {stats.WELCH_NOTE} {stats.PAIRED_NOTE} "
              f"Holm–Bonferroni family: {family} (each test kind corrected separately).\n")


# =========================================================================== figures
def _fig_env():
    import matplotlib

    return matplotlib.rc_context(FIG_RC)


def _new_fig(height: float, nrows=1, ncols=1, **kw):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(COLUMN_IN, height), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False, **kw)
    return fig, axes


def _save(fig, folder: Path, stem: str, written: list) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    fig.draw_without_rendering()  # lay out once, then keep those positions for both formats
    fig.set_layout_engine("none")
    for ext in ("png", "pdf"):
        path = folder / f"{stem}.{ext}"
        fig.savefig(path)
        written.append(path)


def _colors(models: Sequence[str]) -> dict:
    import matplotlib

    cmap = matplotlib.colormaps["tab10"]
    rank = {m: i for i, m in enumerate(PAPER_MODELS)}
    out, extra = {}, len(PAPER_MODELS)
    for m in models:
        i = rank.get(m)
        if i is None:
            i, extra = extra, extra + 1
        out[m] = cmap(i % 10)
    return out


def _errbar(std):
    return np.where(np.isfinite(std), std, 0.0)


def fig_breakdown(summary: pd.DataFrame, dataset: str, kind: str, models: Sequence[str], groups: Sequence[str],
                  folder: Path, stem: str, written: list) -> None:
    """Fig. 8 (kind head_tail, grouped bars) or Fig. 9 (kind length, lines over groups)."""
    sub = summary[(summary["dataset"] == dataset) & (summary["kind"] == kind)]
    with _fig_env():
        fig, axes = _new_fig(3.6 if kind == "head_tail" else 3.4, 2, 1)
        colors = _colors(models)
        for ax, metric in zip(axes[:, 0], BREAKDOWN_METRICS):
            s = sub[sub["metric"] == metric].set_index(["model", "group"])
            if kind == "head_tail":
                x = np.arange(len(models))
                width = 0.38
                for gi, (group, hatch) in enumerate(zip(groups, ("", "///"))):
                    mean = np.array([s["mean"].get((m, group), np.nan) for m in models]) * 100
                    std = np.array([s["std"].get((m, group), np.nan) for m in models]) * 100
                    ax.bar(x + (gi - 0.5) * width, np.nan_to_num(mean), width, yerr=_errbar(std),
                           color=[colors[m] for m in models], edgecolor="black", linewidth=0.3,
                           hatch=hatch, label=group, error_kw={"elinewidth": 0.6})
                ax.set_xticks(x, models, rotation=45, ha="right")
            else:
                x = np.arange(len(groups))
                for m in models:
                    mean = np.array([s["mean"].get((m, g), np.nan) for g in groups]) * 100
                    std = np.array([s["std"].get((m, g), np.nan) for g in groups]) * 100
                    ax.errorbar(x, mean, yerr=_errbar(std), marker="o", color=colors[m], label=m,
                                linewidth=1.4 if m == TARGET else 0.9)
                ax.set_xticks(x, groups)
                ax.set_xlabel("history length group")
            ax.set_ylabel(f"{metric} (%)")
            ax.grid(axis="y", linewidth=0.3, alpha=0.5)
        if kind == "length":
            fig.legend(*axes[0, 0].get_legend_handles_labels(), loc="outside lower center",
                       ncol=min(4, len(models)), frameon=False)
        else:
            from matplotlib.patches import Patch

            fig.legend(handles=[Patch(facecolor="white", edgecolor="black", hatch=h, label=g)
                                for g, h in zip(groups, ("", "///"))], loc="outside lower center", ncol=2,
                       frameon=False)
        what = "head vs long-tail test items" if kind == "head_tail" else "sequence-length groups"
        fig.suptitle(f"{_title(dataset)}: {what} (mean ± std over seeds)")
        _save(fig, folder, stem, written)


def fig_settings(points: pd.DataFrame, dataset: str, order: Sequence, label: str, folder: Path, stem: str,
                 written: list) -> None:
    """Figs. 3 / 5: grouped bars of HR@K and NDCG@K, one bar per setting (mean ± std)."""
    with _fig_env():
        fig, axes = _new_fig(3.0, 2, 1)
        import matplotlib
        cmap = matplotlib.colormaps["viridis"]
        for ax, kind in zip(axes[:, 0], ("HR", "NDCG")):
            metrics = [m for m in METRICS if m.startswith(kind + "@")]
            x = np.arange(len(metrics))
            width = 0.8 / len(order)
            for i, setting in enumerate(order):
                s = points[points["setting"] == setting].set_index("metric")
                mean = np.array([s["mean"].get(m, np.nan) for m in metrics]) * 100
                std = np.array([s["std"].get(m, np.nan) for m in metrics]) * 100
                ax.bar(x + (i - (len(order) - 1) / 2) * width, np.nan_to_num(mean), width, yerr=_errbar(std),
                       color=cmap(i / max(len(order) - 1, 1)), label=str(setting), error_kw={"elinewidth": 0.6})
            ax.set_xticks(x, metrics)
            ax.set_ylabel(f"{kind}@K (%)")
            ax.grid(axis="y", linewidth=0.3, alpha=0.5)
        fig.legend(*axes[0, 0].get_legend_handles_labels(), loc="outside lower center", ncol=len(order),
                   title=label, frameon=False)
        fig.suptitle(f"{_title(dataset)}: DiffuRec by {label} (mean ± std over seeds)")
        _save(fig, folder, stem, written)


def fig_reverse_steps(points: pd.DataFrame, dataset: str, folder: Path, stem: str, written: list) -> None:
    """Fig. 12: HR@K and NDCG@K against the number of reverse steps."""
    steps = sorted(points["setting"].unique())
    with _fig_env():
        fig, axes = _new_fig(2.2, 1, 2)
        for ax, kind in zip(axes[0], ("HR", "NDCG")):
            for metric, marker in zip([m for m in METRICS if m.startswith(kind + "@")], "osd"):
                s = points[points["metric"] == metric].set_index("setting")
                mean = np.array([s["mean"].get(k, np.nan) for k in steps]) * 100
                std = np.array([s["std"].get(k, np.nan) for k in steps]) * 100
                ax.errorbar(steps, mean, yerr=_errbar(std), marker=marker, label="K = " + metric.split("@")[1])
            ax.set_xscale("log", base=2)
            ax.set_xticks(steps, [str(int(k)) for k in steps])
            ax.set_xlabel("reverse steps")
            ax.set_ylabel(f"{kind}@K (%)")
            ax.grid(linewidth=0.3, alpha=0.5)
        fig.legend(*axes[0, 0].get_legend_handles_labels(), loc="outside lower center", ncol=3, frameon=False)
        fig.suptitle(f"{_title(dataset)}: DiffuRec vs reverse steps (mean ± std over seeds)")
        _save(fig, folder, stem, written)


def fig_loss(curves: dict, dataset: str, folder: Path, stem: str, written: list) -> None:
    """Fig. 10: training loss per epoch, mean ± std band over seeds, one panel per model."""
    names = [m for m in ("SASRec", TARGET) if m in curves]
    with _fig_env():
        fig, axes = _new_fig(1.8, 1, len(names))
        for ax, name in zip(axes[0], names):
            frame = curves[name]
            g = frame.groupby("epoch")["train_loss"]
            mean, std = g.mean(), g.std(ddof=1).fillna(0.0)
            ax.plot(mean.index + 1, mean.to_numpy(), color=_colors([name])[name])
            ax.fill_between(mean.index + 1, mean - std, mean + std, alpha=0.3, color=_colors([name])[name],
                            linewidth=0)
            ax.set_title(f"{name} ({frame['seed'].nunique()} seeds)")
            ax.set_xlabel("epoch")
            ax.set_ylabel("training loss")
            ax.grid(linewidth=0.3, alpha=0.5)
        fig.suptitle(f"{_title(dataset)}: training loss (mean ± std over seeds)")
        _save(fig, folder, stem, written)


def fig_efficiency(inference: pd.DataFrame, baselines: pd.DataFrame, batch: pd.DataFrame, dataset: str,
                   folder: Path, stem: str, written: list) -> None:
    """Fig. 11: inference seconds per user vs reverse steps (left), s per training batch (right)."""
    panels = int(len(inference) > 0) + int(len(batch) > 0)
    with _fig_env():
        fig, axes = _new_fig(2.2 * panels + 0.4, panels, 1)
        i = 0
        if len(inference):
            ax = axes[i, 0]
            i += 1
            steps = inference["steps"].to_numpy()
            ax.errorbar(steps, inference["mean"] * 1e3, yerr=_errbar(inference["std"].to_numpy() * 1e3),
                        marker="o", color=_colors([TARGET])[TARGET], label=TARGET)
            colors = _colors(list(baselines["model"]))
            for _, b in baselines.iterrows():
                ax.axhline(b["mean"] * 1e3, color=colors[b["model"]], linestyle="--", linewidth=0.8,
                           label=b["model"])
            ax.set_xscale("log", base=2)
            ax.set_xticks(steps, [str(int(k)) for k in steps])
            ax.set_xlabel("reverse steps")
            ax.set_ylabel("inference ms / user")
            ax.legend(frameon=False, ncol=4, loc="upper center", bbox_to_anchor=(0.5, -0.32))
            ax.grid(linewidth=0.3, alpha=0.5)
        if len(batch):
            ax = axes[i, 0]
            colors = _colors(list(batch["model"]))
            x = np.arange(len(batch))
            ax.bar(x, batch["mean"], yerr=_errbar(batch["std"].to_numpy()),
                   color=[colors[m] for m in batch["model"]], error_kw={"elinewidth": 0.6})
            ax.set_xticks(x, batch["model"], rotation=45, ha="right")
            ax.set_ylabel("training s / batch")
            ax.grid(axis="y", linewidth=0.3, alpha=0.5)
        fig.suptitle(f"{_title(dataset)}: efficiency (mean ± std over seeds)")
        _save(fig, folder, stem, written)


# --------------------------------------------------------------------------- figure data
def _ok_records(col: Collected) -> list:
    return [r for r in col.records if r.get("status") == "ok"]


def _setting_points(col: Collected, dataset: str, key: str, normalise=lambda v: v) -> pd.DataFrame:
    """DiffuRec runs differing from the base run only in ``key``: seed summary per setting."""
    rows = []
    for r in _ok_records(col):
        if r["dataset"] != dataset or r.get("base_model") != TARGET:
            continue
        if not (_is_main(r) or _variant_keys(r) == {key}):
            continue
        value = (r.get("params") or {}).get(key)
        if value is None:
            continue
        for metric, v in (((r.get("metrics") or {}).get("test")) or {}).items():
            if metric in METRICS:
                rows.append({"dataset": dataset, "model": "DiffuRec", "setting": normalise(value),
                             "metric": metric, "value": v})
    frame = pd.DataFrame(rows, columns=["dataset", "model", "setting", "metric", "value"])
    return stats.summarize(frame, by=("setting", "metric")) if len(frame) else frame


def _reverse_step_points(col: Collected, dataset: str) -> pd.DataFrame:
    rows = []
    for r in _ok_records(col):
        if r["dataset"] != dataset or r.get("base_model") != TARGET or not _is_main(r):
            continue
        own = (r.get("params") or {}).get("reverse_steps")
        if own is not None:
            for metric, v in (r.get("metrics", {}).get("test") or {}).items():
                rows.append({"setting": int(own), "metric": metric, "value": v})
        for ev in (r.get("extra_evals") or {}).values():
            p = ev.get("params") or {}
            if set(p) != {"reverse_steps"}:
                continue
            for metric, v in ((ev.get("metrics") or {}).get("test") or {}).items():
                rows.append({"setting": int(p["reverse_steps"]), "metric": metric, "value": v})
    frame = pd.DataFrame(rows, columns=["setting", "metric", "value"])
    frame = frame[frame["metric"].isin(METRICS)]
    return stats.summarize(frame, by=("setting", "metric")) if len(frame) else frame


def _inference_per_user(r: dict) -> float:
    """Seconds per user of one full ranking pass: validation time / (validations x users)."""
    timing = r.get("timing") or {}
    n = timing.get("n_eval_users") or (r.get("data") or {}).get("n_users")
    n_valid = sum(1 for c in (r.get("curve") or []) if c.get("valid"))
    if n and n_valid and timing.get("eval_s"):
        return timing["eval_s"] / (n_valid * n)
    if n and timing.get("test_eval_s"):
        return timing["test_eval_s"] / n
    return math.nan


def _efficiency_data(col: Collected, dataset: str):
    inf_rows, base_rows, batch_rows = [], [], []
    main = set(col.main_models.get(dataset, []))
    for r in _ok_records(col):
        if r["dataset"] != dataset or r["model"] not in main:
            continue
        timing = r.get("timing") or {}
        if timing.get("s_per_batch") is not None:
            batch_rows.append({"model": r["model"], "value": timing["s_per_batch"]})
        per_user = _inference_per_user(r)
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

    def summ(rows, by):
        f = pd.DataFrame(rows, columns=[by, "value"])
        return stats.summarize(f, by=(by,)) if len(f) else pd.DataFrame(columns=[by, "n", "mean", "std"])

    inference = summ(inf_rows, "steps").sort_values("steps") if inf_rows else summ([], "steps")
    if len(inference) < 2:
        inference = inference.iloc[0:0]
    baselines = summ(base_rows, "model")
    batch = summ(batch_rows, "model")
    if len(batch):
        batch = batch.set_index("model").loc[_order_models(batch["model"], {})].reset_index()
    if len(baselines):
        baselines = baselines.set_index("model").loc[_order_models(baselines["model"], {})].reset_index()
    return inference, baselines, batch


def _curves(col: Collected, dataset: str) -> dict:
    out = {}
    for name in ("SASRec", TARGET):
        rows = []
        for r in _ok_records(col):
            if r["dataset"] == dataset and r["model"] == name and _is_main(r):
                for c in r.get("curve") or []:
                    if c.get("train_loss") is not None and np.isfinite(c["train_loss"]):
                        rows.append({"seed": r.get("seed"), "epoch": int(c["epoch"]), "train_loss": c["train_loss"]})
        if rows:
            out[name] = pd.DataFrame(rows)
    return out


def _figures(col: Collected, breakdown: pd.DataFrame, folder: Path, written: list, missing: list,
             figures: list) -> None:
    datasets = _order_datasets(set(col.runs["dataset"]) if len(col.runs) else set())

    def note(fig_id, dataset, stem, what):
        figures.append((fig_id, dataset, stem, what))

    for dataset in datasets:
        models = col.main_models.get(dataset, [])
        t = _title(dataset)
        # Fig. 8 and 9
        for fig_id, kind, stem in (("8", "head_tail", f"fig8_head_tail_{dataset}"),
                                   ("9", "length", f"fig9_seq_length_{dataset}")):
            sub = breakdown[(breakdown["dataset"] == dataset) & (breakdown["kind"] == kind)] if len(breakdown) else breakdown
            if not models or len(sub) == 0:
                missing.append(f"Fig. {fig_id} ({t}): no ranks of Table 2 models")
                continue
            groups = ["head", "long-tail"] if kind == "head_tail" else col.length_labels.get(dataset, [])
            fig_breakdown(sub, dataset, kind, [m for m in models if m in set(sub["model"])], groups, folder, stem,
                          written)
            note(fig_id, dataset, stem, "head vs long-tail HR@10/NDCG@10" if kind == "head_tail"
                 else "five sequence-length groups, HR@10/NDCG@10")
        # Fig. 3 and 5
        for fig_id, key, order, label, norm in (
                ("3", "noise_schedule", SCHEDULES, "noise schedule", str),
                ("5", "lambda_scale", DELTAS, "δ (lambda_scale)", float)):
            pts = _setting_points(col, dataset, key, norm)
            present = list(pd.unique(pts["setting"])) if len(pts) else []
            ordered = [v for v in order if v in present] + sorted(v for v in present if v not in order)
            if len(ordered) < 2:
                missing.append(f"Fig. {fig_id} ({t}): needs DiffuRec runs differing only in {key} "
                               f"(found {len(ordered)} setting{'s' if len(ordered) != 1 else ''})")
                continue
            stem = f"fig{fig_id}_{'schedules' if fig_id == '3' else 'delta'}_{dataset}"
            fig_settings(pts, dataset, ordered, label, folder, stem, written)
            note(fig_id, dataset, stem, f"DiffuRec under {', '.join(map(str, ordered))}")
        # Fig. 12
        pts = _reverse_step_points(col, dataset)
        if len(pts) == 0 or pts["setting"].nunique() < 2:
            missing.append(f"Fig. 12 ({t}): needs DiffuRec extra_evals over reverse_steps")
        else:
            stem = f"fig12_reverse_steps_{dataset}"
            fig_reverse_steps(pts, dataset, folder, stem, written)
            note("12", dataset, stem, "HR@K/NDCG@K vs reverse steps "
                 f"({', '.join(str(int(s)) for s in sorted(pts['setting'].unique()))})")
        # Fig. 10
        curves = _curves(col, dataset)
        if not curves:
            missing.append(f"Fig. 10 ({t}): no SASRec or DiffuRec training curves")
        else:
            stem = f"fig10_loss_{dataset}"
            fig_loss(curves, dataset, folder, stem, written)
            lacking = [m for m in ("SASRec", TARGET) if m not in curves]
            note("10", dataset, stem, "training loss of " + " and ".join(curves)
                 + (f" ({', '.join(lacking)} missing)" if lacking else ""))
        # Fig. 11
        inference, baselines, batch = _efficiency_data(col, dataset)
        if len(inference) == 0 and len(batch) == 0:
            missing.append(f"Fig. 11 ({t}): no timing data")
        else:
            stem = f"fig11_efficiency_{dataset}"
            fig_efficiency(inference, baselines, batch, dataset, folder, stem, written)
            parts = (["inference time per user vs reverse steps"] if len(inference) else []) + \
                    (["training s per batch"] if len(batch) else [])
            if not len(inference):
                missing.append(f"Fig. 11 left ({t}): needs DiffuRec timing at two or more reverse steps")
            note("11", dataset, stem, "; ".join(parts))


# =========================================================================== index
def _budget(col: Collected) -> pd.DataFrame:
    rows = []
    for dataset in _order_datasets({r["dataset"] for r in col.records}):
        recs = [r for r in col.records if r["dataset"] == dataset and r.get("status") == "ok"]
        fails = [r for r in col.records if r["dataset"] == dataset and r.get("status") != "ok"]
        data = next((r.get("data") for r in recs if r.get("data")), {}) or {}
        epochs = sorted({(r.get("params") or {}).get("epochs") for r in recs} - {None})
        run = [(r.get("timing") or {}).get("epochs_run") for r in recs]
        run = [e for e in run if e is not None]
        n_eval = sorted({(r.get("timing") or {}).get("n_eval_users") for r in recs} - {None})
        budget = next((r.get("budget") for r in recs if r.get("budget")), {}) or {}
        rows.append({
            "dataset": dataset, "runs_ok": len(recs), "runs_failed": len(fails),
            "models": len({r["model"] for r in recs}),
            "seeds": ", ".join(str(s) for s in sorted({r.get("seed") for r in recs} - {None})),
            "users_evaluated": ", ".join(map(str, n_eval)) or str(data.get("n_users", "–")),
            "users_in_data": data.get("n_users_full", data.get("n_users", "–")),
            "items": data.get("n_items", "–"),
            "max_epochs": ", ".join(map(str, epochs)) or "–",
            "epochs_run": f"{min(run)}–{max(run)}" if run else "–",
            "max_users": budget.get("max_users", "–"), "max_train_prefixes": budget.get("max_train_prefixes", "–"),
            "head_rule": data.get("head_rule", "–"),
        })
    return pd.DataFrame(rows)


def _env_table(records: list) -> pd.DataFrame:
    keys = ("python", "torch", "recbole", "numpy", "platform", "cpu", "device", "git_revision", "git_dirty")
    rows = [{k: str((r.get("env") or {}).get(k, "–")) for k in keys} for r in records if r.get("status") == "ok"]
    if not rows:
        return pd.DataFrame(columns=[*keys, "runs"])
    frame = pd.DataFrame(rows)
    return frame.groupby(list(keys), sort=False).size().reset_index(name="runs")


def _error_text(r: dict) -> str:
    err = r.get("error")
    if isinstance(err, dict):
        text = f"{err.get('type', 'Error')}: {err.get('message', '')}"
    else:
        text = str(err or "unknown error")
    text = " ".join(text.split())
    return text[:300] + ("…" if len(text) > 300 else "")


def _index(profile: str, col: Collected, links: dict, figures: list, missing_figs: list,
           missing_runs: list, budget: pd.DataFrame, env: pd.DataFrame, extra_notes: list) -> str:
    protocols = sorted({str(r.get("protocol")) for r in col.records if r.get("status") == "ok"})
    lines = [f"# Report — profile `{profile}`", "",
             f"Generated {dt.datetime.now(dt.timezone.utc).isoformat(timespec='seconds')} from "
             f"{len(col.records)} records ({len(col.records) - len(col.failed)} ok, {len(col.failed)} failed).", "",
             f"Protocol: {', '.join(protocols) or '–'}.", ""]
    lines += ["## Budget", ""]
    if len(budget):
        cols = ["dataset", "runs_ok", "runs_failed", "models", "seeds", "users_evaluated", "users_in_data",
                "items", "max_epochs", "epochs_run", "max_users", "max_train_prefixes"]
        lines.append(_md_table(["Dataset", "Runs ok", "Failed", "Models", "Seeds", "Users evaluated",
                                "Users in data", "Items", "Max epochs", "Epochs run", "max_users",
                                "max_train_prefixes"],
                               [[str(r[c]) for c in cols] for _, r in budget.iterrows()]))
        rules = sorted(set(budget["head_rule"]) - {"–"})
        if rules:
            lines += ["Head items: " + " / ".join(rules) + ".", ""]
    else:
        lines += ["No records.", ""]
    lines += ["## Environment", ""]
    if len(env):
        lines.append(_md_table(list(env.columns), env.astype(str).to_numpy().tolist()))
    lines += ["## Tables", ""]
    for title, paths in links.items():
        lines.append(f"- {title}: " + ", ".join(f"[{p.suffix[1:]}]({p.name})" for p in paths))
    lines += ["", "## Figures", ""]
    for fig_id, dataset, stem, what in figures:
        lines.append(f"- Fig. {fig_id} ({_title(dataset)}): {what} — [png](figures/{stem}.png), "
                     f"[pdf](figures/{stem}.pdf)")
    if missing_figs:
        lines += ["", "Not drawn (runs missing):", ""] + [f"- {m}" for m in missing_figs]
    lines += ["", "## Statistical method", "", f"- {stats.WELCH_NOTE}", f"- {stats.PAIRED_NOTE}",
              f"- {stats.HOLM_NOTE}", "- Means ± sample standard deviation (ddof = 1) over seeds; 95% CIs are "
              "Student t-intervals over seeds.", f"- {stats.LENGTH_RULE}",
              "- Per-user values come from ranks.npz (under the paper protocol, the `test@<metric>` ranks of "
              "each metric's checkpoint); table values from the records' test metrics.",
              "- Inference time per user (Fig. 11): a DiffuRec extra evaluation's eval_s / n_users; for a run "
              "itself, timing.eval_s / (number of validations × n_eval_users).", ""]
    lines += ["## Missing and failed runs", ""]
    if missing_runs:
        lines += [f"Missing (expected, no record) — {len(missing_runs)}:", ""]
        lines.append(_md_table(["Dataset", "Model", "Seed"], [[d, m, str(s)] for d, m, s in missing_runs]))
    else:
        lines += ["Missing: none" + ("" if missing_runs is not None else " known (no expected list given)") + ".", ""]
    if col.failed:
        lines += [f"Failed — {len(col.failed)}:", ""]
        lines.append(_md_table(["Dataset", "Model", "Seed", "Error"],
                               [[r.get("dataset"), r.get("model"), str(r.get("seed")), _error_text(r)]
                                for r in col.failed]))
    else:
        lines += ["Failed: none.", ""]
    if col.failed_reruns:
        lines += ["Failed re-runs (an earlier ok record is kept and used):", ""]
        lines.append(_md_table(["Dataset", "Model", "Seed", "Error"],
                               [[r.get("dataset"), r.get("model"), str(r.get("seed")), _error_text(r)]
                                for r in col.failed_reruns]))
    if col.problems or extra_notes:
        lines += ["## Warnings", ""] + [f"- {p}" for p in [*col.problems, *extra_notes]] + [""]
    return "\n".join(lines) + "\n"


# =========================================================================== render
def render(results_dir, reports_dir, profile: str, data_dir=None,
           expected: Sequence[tuple[str, str, int]] | None = None) -> list[Path]:
    """Write every table, figure and ``index.md`` of ``profile``; returns the written paths.

    expected: (dataset, model, seed) triples the profile should hold; those without any
    record are listed as missing in ``index.md``.  ``data_dir`` is passed to Table 1.
    """
    out = Path(reports_dir) / profile
    figs_dir = out / "figures"
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    links: dict[str, list[Path]] = {}
    col = collect(results_dir, profile)
    notes: list[str] = []

    def table(title, stem, md=None, csv=None, tex=None):
        paths = []
        if md is not None:
            _write(out / f"{stem}.md", md, written)
            paths.append(out / f"{stem}.md")
        if tex is not None:
            _write(out / f"{stem}.tex", tex, written)
            paths.append(out / f"{stem}.tex")
        if csv is not None:
            _write_csv(out / f"{stem}.csv", csv, written)
            paths.append(out / f"{stem}.csv")
        links[title] = paths

    # Table 1
    datasets = _order_datasets({r["dataset"] for r in col.records} | {e[0] for e in (expected or [])})
    t1 = table1(datasets, data_dir)
    table("Table 1 (dataset statistics)", "table1", _table1_md(t1), t1)

    # Table 2 + its significance
    main_values = col.values.merge(
        pd.DataFrame([(d, m) for d, ms in col.main_models.items() for m in ms], columns=["dataset", "model"]),
        on=["dataset", "model"]) if len(col.values) else col.values
    baselines = [m for ms in col.main_models.values() for m in ms if m != TARGET]
    vs_best = stats.versus_best(main_values, col.per_user, METRICS, TARGET, baselines)
    cells2 = table2_cells(col, vs_best)
    if len(cells2):
        table("Table 2 (overall performance)", "table2", _table2_md(cells2), cells2, _table2_tex(cells2))
        if len(vs_best):
            table("DiffuRec vs best baseline (Table 2 tests)", "significance_table2",
                  _sig_md("DiffuRec vs the best baseline of each Table 2 row", vs_best, "all rows of Table 2"),
                  vs_best)
        else:
            notes.append("No DiffuRec vs best-baseline tests: DiffuRec or every baseline is missing")
    else:
        notes.append("Table 2 not written: no ok runs of models without a variant")

    # Table 3
    abl_values = col.values.merge(
        pd.DataFrame([(d, m) for d, ls in col.ablation_models.items() for m in ls.values()],
                     columns=["dataset", "model"]), on=["dataset", "model"]) if len(col.values) else col.values
    others = sorted({m for ls in col.ablation_models.values() for lbl, m in ls.items() if lbl != "DiffuRec"})
    vs_ref = stats.versus_reference(abl_values, col.per_user, METRICS, TARGET, others)
    cells3 = table3_cells(col, vs_ref)
    if len(cells3):
        table("Table 3 (ablation)", "table3", _table3_md(cells3), cells3, _table3_tex(cells3))
        table("Ablations vs DiffuRec (Table 3 tests)", "significance_table3",
              _sig_md("Ablations (A) against full DiffuRec (B)", vs_ref, "all rows of Table 3"), vs_ref)
    else:
        notes.append("Table 3 not written: no DiffuRec ablation runs (approximator = gru or rounding = "
                     "neg_sq_distance) beside a DiffuRec run")

    # Baseline tuning (profiles with `tuning:`)
    tuning = tuning_table(col.records)
    if len(tuning):
        table("Baseline tuning (validation)", "tuning", _tuning_md(tuning), tuning)

    # Every (dataset, model, metric) of the profile, variants included
    summary = stats.summarize(col.values)
    if len(summary):
        summary = summary.merge(col.runs[["dataset", "model", "base_model", "variant", "role"]]
                                .drop_duplicates(["dataset", "model"]), on=["dataset", "model"], how="left")
        rows = [[_title(r["dataset"]), r["model"], r["metric"], _cell(r["mean"], r["std"]), str(int(r["n"])),
                 f"[{_pct(r['ci_low'])}, {_pct(r['ci_high'])}]"] for _, r in summary.iterrows()]
        table("All runs (variants included), mean ± std over seeds", "summary_all_runs",
              "# All runs: test metrics (%, mean ± std over seeds, 95% t-interval)\n\n"
              + _md_table(["Dataset", "Model", "Metric", "Mean ± std", "Seeds", "95% CI"], rows), summary)

    # Gap to the paper
    gap = gap_to_paper(col)
    table("Gap to the paper (Tables 2-3)", "gap_to_paper", _gap_md(gap), gap)

    # All pairs, one table (and one Holm family) per dataset
    for dataset in _order_datasets(col.main_models):
        sub = main_values[main_values["dataset"] == dataset]
        pairs = stats.pairwise(sub, col.per_user, METRICS, col.main_models[dataset])
        if len(pairs):
            table(f"All pairs, {_title(dataset)}", f"significance_pairs_{dataset}",
                  _sig_md(f"All pairs of Table 2 models, {_title(dataset)}", pairs,
                          f"all pairs × metrics of {_title(dataset)}"), pairs)

    # Breakdowns (data of Figs. 8 and 9)
    breakdown = stats.summarize_breakdown(col.breakdown)
    if len(breakdown):
        for kind, stem, title in (("head_tail", "breakdown_head_tail", "Head vs long-tail (Fig. 8 data)"),
                                  ("length", "breakdown_length", "Sequence-length groups (Fig. 9 data)")):
            sub = breakdown[breakdown["kind"] == kind]
            if not len(sub):
                continue
            rows = [[_title(r["dataset"]), r["model"], r["group"], r["metric"], _cell(r["mean"], r["std"]),
                     str(int(r["n"])), f"{r['n_users']:.0f}"] for _, r in sub.iterrows()
                    if r["metric"] in BREAKDOWN_METRICS]
            md = (f"# {title}\n\n" + _md_table(["Dataset", "Model", "Group", "Metric", "% (mean ± std)", "Seeds",
                                                 "Users"], rows)
                  + ("\n" + stats.LENGTH_RULE + "\n" if kind == "length" else
                     "\nHead: " + "; ".join(sorted({str((r.get('data') or {}).get('head_rule'))
                                                     for r in _ok_records(col)})) + "\n"))
            table(title, stem, md, sub)

    # Figures
    missing_figs, figures = [], []
    _figures(col, col.breakdown if len(col.breakdown) == 0 else breakdown, figs_dir, written, missing_figs, figures)

    # Index
    present = {(r.get("dataset"), r.get("model"), r.get("seed")) for r in col.records}
    missing_runs = None if expected is None else [tuple(e) for e in expected
                                                  if (e[0], e[1], e[2]) not in present]
    index = _index(profile, col, links, figures, missing_figs, missing_runs, _budget(col),
                   _env_table(col.records), notes)
    _write(out / "index.md", index, written)
    return written
