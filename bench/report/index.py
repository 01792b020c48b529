"""``index.md``: links to every table and figure, the budget, the environment, missing and failed runs.

Everything in it is derived from the records (the newest record's ``created`` stands
for when the report's data was made), so re-rendering unchanged records rewrites the
same bytes.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from bench import stats, store
from bench.fmt import dataset_title, error_text, md_table, order_datasets
from bench.report.collect import Collected
from bench.report.context import Drawn

ENV_KEYS = ("python", "torch", "recbole", "numpy", "platform", "cpu", "device", "git_revision", "git_dirty")
BUDGET_COLUMNS = {"dataset": "Dataset", "runs_ok": "Runs ok", "runs_failed": "Failed", "models": "Models",
                  "seeds": "Seed numbers", "users_evaluated": "Users evaluated", "users_in_data": "Users in data",
                  "items": "Items", "max_epochs": "Max epochs", "epochs_run": "Epochs run",
                  "max_users": "max_users", "max_train_prefixes": "max_train_prefixes"}


def budget_table(col: Collected) -> pd.DataFrame:
    """One row per dataset: runs, models, seeds, users, items, epochs and the profile's budget keys."""
    rows = []
    for dataset in order_datasets({r["dataset"] for r in col.records}):
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


def env_table(records: list) -> pd.DataFrame:
    """Distinct environments of the ok records (``ENV_KEYS``) with their number of runs."""
    rows = [{k: str((r.get("env") or {}).get(k, "–")) for k in ENV_KEYS} for r in records if r.get("status") == "ok"]
    if not rows:
        return pd.DataFrame(columns=[*ENV_KEYS, "runs"])
    frame = pd.DataFrame(rows)
    return frame.groupby(list(ENV_KEYS), sort=False).size().reset_index(name="runs")


def newest_record(records: list) -> str | None:
    """The latest ``created`` stamp of the records (ISO 8601 UTC), None without any."""
    stamps = [str(r["created"]) for r in records if r.get("created")]
    return max(stamps) if stamps else None


def _header(profile: str, col: Collected) -> list[str]:
    protocols = sorted({str(r.get("protocol")) for r in col.records if r.get("status") == "ok"})
    newest = newest_record(col.records)
    return [f"# Report — profile `{profile}`", "",
            f"Generated from {len(col.records)} records ({len(col.records) - len(col.failed)} ok, "
            f"{len(col.failed)} failed)" + (f"; the newest made {newest}." if newest else "."), "",
            f"Protocol: {', '.join(protocols) or '–'}.", ""]


def _budget_section(budget: pd.DataFrame) -> list[str]:
    lines = ["## Budget", ""]
    if not len(budget):
        return lines + ["No records.", ""]
    lines.append(md_table(list(BUDGET_COLUMNS.values()),
                          [[str(r[c]) for c in BUDGET_COLUMNS] for _, r in budget.iterrows()]))
    rules = sorted(set(budget["head_rule"]) - {"–"})
    if rules:
        lines += ["Head items: " + " / ".join(rules) + ".", ""]
    return lines


def _links_section(links: dict, figures: list[Drawn], missing_figs: list[str]) -> list[str]:
    lines = ["## Tables", ""]
    for title, paths in links.items():
        lines.append(f"- {title}: " + ", ".join(f"[{p.suffix[1:]}]({p.name})" for p in paths))
    lines += ["", "## Figures", ""]
    for f in figures:
        lines.append(f"- Fig. {f.fig_id} ({dataset_title(f.dataset)}): {f.what} — [png](figures/{f.stem}.png), "
                     f"[pdf](figures/{f.stem}.pdf)")
    if missing_figs:
        lines += ["", "Not drawn (runs missing):", ""] + [f"- {m}" for m in missing_figs]
    return lines


METHOD_NOTES = [
    stats.WELCH_NOTE, stats.PAIRED_NOTE, stats.HOLM_NOTE,
    "Means ± sample standard deviation (ddof = 1) over seeds; 95% CIs are Student t-intervals over seeds.",
    stats.LENGTH_RULE,
    "Per-user values come from ranks.npz (under the paper protocol, the `test@<metric>` ranks of each metric's "
    "checkpoint); table values from the records' test metrics.",
    "Inference time per user (Fig. 11): a DiffuRec extra evaluation's eval_s / n_users; for a run itself, "
    "timing.eval_s / (number of validations × n_eval_users).",
]


def _runs_section(col: Collected, missing_runs: list | None) -> list[str]:
    lines = ["## Missing and failed runs", ""]
    if missing_runs:
        lines += [f"Missing (expected, no record) — {len(missing_runs)}:", ""]
        lines.append(md_table(["Dataset", "Model", "Seed"], [[d, m, str(s)] for d, m, s in missing_runs]))
    else:
        lines += ["Missing: none" + ("" if missing_runs is not None else " known (no expected list given)") + ".", ""]
    failed_rows = [[r.get("dataset"), r.get("model"), str(r.get("seed")), error_text(r)] for r in col.failed]
    if failed_rows:
        lines += [f"Failed — {len(col.failed)}:", ""]
        lines.append(md_table(["Dataset", "Model", "Seed", "Error"], failed_rows))
    else:
        lines += ["Failed: none.", ""]
    capped = [r for r in col.ok_records if not store.converged(r)]
    if capped:
        lines += [f"Not converged (stopped at the epoch cap, marked † in Table 2) — {len(capped)}:", ""]
        lines.append(md_table(["Dataset", "Model", "Seed", "Epochs", "Best epoch"],
                              [[r["dataset"], r["model"], str(r["seed"]), str(r["timing"]["epochs_run"]),
                                str(r["checkpoint"]["best_epoch"])] for r in capped]))
    if col.failed_reruns:
        lines += ["Failed re-runs (an earlier ok record is kept and used):", ""]
        lines.append(md_table(["Dataset", "Model", "Seed", "Error"],
                              [[r.get("dataset"), r.get("model"), str(r.get("seed")), error_text(r)]
                               for r in col.failed_reruns]))
    return lines


def index_md(profile: str, col: Collected, links: dict[str, list[Path]], figures: list[Drawn],
             missing_figs: list[str], missing_runs: list | None, notes: list[str]) -> str:
    """The whole ``index.md``; ``missing_runs`` None means no expected list was given."""
    lines = _header(profile, col) + _budget_section(budget_table(col))
    env = env_table(col.records)
    lines += ["## Environment", ""]
    if len(env):
        lines.append(md_table(list(env.columns), env.astype(str).to_numpy().tolist()))
    lines += _links_section(links, figures, missing_figs)
    lines += ["", "## Statistical method", ""] + [f"- {n}" for n in METHOD_NOTES] + [""]
    lines += _runs_section(col, missing_runs)
    if col.problems or notes:
        lines += ["## Warnings", ""] + [f"- {p}" for p in [*col.problems, *notes]] + [""]
    return "\n".join(lines) + "\n"
