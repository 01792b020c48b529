"""``index.md``: the verdict first, then links to every table and figure, the budget, the environment,
missing and failed runs.

The verdict is the claims section of the profile's ``audit.json`` (``bench check``), with the
headline comparison from its evidence; the index and the audit each state the record set they
were rendered from (:func:`records_stamp`), and the index says when the audit's differs.
Everything else is derived from the records (the newest record's ``created`` stands for when
the report's data was made), so re-rendering unchanged records rewrites the same bytes.
"""
from __future__ import annotations

import hashlib
import json
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
            # as text: a column mixing None and numbers would print NaN and 20.0
            "max_users": str(budget.get("max_users", "–")), "max_train_prefixes": str(budget.get("max_train_prefixes", "–")),
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


def env_summary(records: list) -> list[str]:
    """The environment in a few lines: keys every ok record shares, then each key that differs with its
    values and run counts (code revisions only counted)."""
    env = env_table(records)
    if not len(env):
        return []
    runs = env["runs"].astype(int)
    same, differs = [], []
    for key in ENV_KEYS:
        counts = runs.groupby(env[key], sort=False).sum().sort_values(ascending=False, kind="stable")
        if len(counts) == 1:
            same.append(f"{key} {counts.index[0]}")
        elif key == "git_revision":
            differs.append(f"- git_revision: {len(counts)} code revisions (each record names its own; "
                           "audit.md checks that every record is current)")
        else:
            differs.append(f"- {key}: " + ", ".join(f"{v} ({n} run{'s' if n != 1 else ''})" for v, n in counts.items()))
    return [f"All {int(runs.sum())} ok records: " + ", ".join(same) + ".", "", *differs, *([""] if differs else [])]


def newest_record(records: list) -> str | None:
    """The latest ``created`` stamp of the records (ISO 8601 UTC), None without any."""
    stamps = [str(r["created"]) for r in records if r.get("created")]
    return max(stamps) if stamps else None


def records_stamp(records: list) -> dict:
    """What a report was rendered from: {records, ok, failed, newest (``created``), revision (the newest
    record's code revision), digest (12 hex of SHA-256 over every record's run, status, config hash and
    creation time)}.  The same records give the same stamp wherever and whenever they are rendered."""
    keys = sorted(f"{r.get('dataset')}/{r.get('model')}/{r.get('seed')}|{r.get('status')}|"
                  f"{r.get('config_hash')}|{r.get('created')}" for r in records)
    ok = [r for r in records if r.get("status") == "ok"]
    newest = max(records, key=lambda r: str(r.get("created") or ""), default=None)
    revision = str(((newest or {}).get("env") or {}).get("git_revision") or "unknown")[:10]
    return {"records": len(records), "ok": len(ok), "failed": len(records) - len(ok),
            "newest": newest_record(records), "revision": revision if newest else None,
            "digest": hashlib.sha256("\n".join(keys).encode()).hexdigest()[:12]}


def stamp_text(stamp: dict) -> str:
    """One sentence naming a record set (the audit's header says the same)."""
    text = f"{stamp['records']} records ({stamp['ok']} ok, {stamp['failed']} failed; record set {stamp['digest']})"
    if stamp.get("newest"):
        text += f", the newest made {stamp['newest']} by code revision {stamp['revision']}"
    return text


HEADLINE_TEST_LINE = (
    "Headline test: the two-level bootstrap over seeds and test users (bench/stats/hierarchical_bootstrap.py); "
    "its Holm family for Table 2 and the claims is `table2` (DiffuRec against the best baseline of every Table 2 "
    "row, every dataset × the six metrics); each report's header declares its own family.")


def _header(profile: str, col: Collected) -> list[str]:
    protocols = sorted({str(r.get("protocol")) for r in col.records if r.get("status") == "ok"})
    return [f"# Report — profile `{profile}`", "",
            f"Rendered from {stamp_text(records_stamp(col.records))}.", "",
            f"Protocol: {', '.join(protocols) or '–'}.", "", HEADLINE_TEST_LINE, ""]


def read_audit(out: Path | None) -> dict | None:
    """The profile's ``audit.json`` beside the index (written by ``bench check``), None without one."""
    path = Path(out) / "audit.json" if out else None
    if not path or not path.exists():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


HEADLINE_METRICS = ("HR@10", "NDCG@10")


def _headline(claims: list) -> list[str]:
    """DiffuRec against the best baseline in HR@10 and NDCG@10, from claim T2-beats-all's evidence."""
    claim = next((c for c in claims if c.get("id") == "T2-beats-all"), None)
    rows = [e for e in (claim or {}).get("evidence") or [] if e.get("metric") in HEADLINE_METRICS]
    if not rows:
        return []

    def pct(x):
        return "–" if x is None else f"{100 * x:.2f}"

    def p(x):
        return "–" if x is None else f"{x:.2g}"

    table = [[dataset_title(e["dataset"]), e["metric"], pct(e.get("target")), str(e.get("best_baseline")),
              pct(e.get("baseline")), "–" if e.get("improv_pct") is None else f"{e['improv_pct']:+.1f}%",
              p(e.get("hb_p_holm")), "–" if e.get("p_a_beats_b") is None else f"{e['p_a_beats_b']:.2f}",
              str(e.get("n_seeds"))] for e in rows]
    return ["Headline (claim T2-beats-all's evidence, %; p of the headline test, Holm family `table2`):", "",
            md_table(["Dataset", "Metric", "DiffuRec", "Best baseline", "Its value", "Improv.",
                      "p (Holm, table2)", "P(DiffuRec>baseline)", "Seeds (DiffuRec/baseline)"], table)]


def _verdict_section(profile: str, col: Collected, out: Path | None) -> list[str]:
    """What was concluded: each claim's verdict from ``audit.json``, the headline, and where the evidence is."""
    lines = ["## Verdict", ""]
    audit = read_audit(out)
    if audit is None:
        lines += [f"No audit yet: `bench check --profile {profile}` evaluates the paper's claims on these "
                  "records and writes audit.md.", ""]
    else:
        ours, theirs = records_stamp(col.records), audit.get("records_stamp")
        if theirs != ours:
            seen = stamp_text(theirs) if theirs else "records it does not name"
            lines += [f"**The audit is stale**: [audit.md](audit.md) was rendered from {seen}, this report from "
                      f"record set {ours['digest']}; rerun `bench check --profile {profile}`.", ""]
        else:
            lines += [f"From [audit.md](audit.md), rendered from the same record set ({ours['digest']}).", ""]
        integ, det = audit.get("integrity") or {}, audit.get("determinism") or {}
        lines += [f"- Integrity: **{'PASS' if integ.get('passed') else 'FAIL'}** ({integ.get('n_checked', '–')} "
                  f"ok records checked, {integ.get('n_failed_checks', '–')} with problems); determinism: "
                  f"**{det.get('status', '–')}**."]
        for claim in audit.get("claims") or []:
            lines.append(f"- {claim['id']} — **{claim['verdict']}**: {claim.get('statement', '')} "
                         f"({claim.get('source', '')})")
        lines.append("")
        lines += _headline(audit.get("claims") or [])
    lines += ["Evidence: " + ", ".join(_evidence_links(profile, out)) + ".", ""]
    return lines


def _evidence_links(profile: str, out: Path | None) -> list[str]:
    """Links to the audit, the fidelity and controls reports and the cost pages that exist beside the index."""
    if out is None:
        return ["audit.md (`bench check`)"]
    out = Path(out)
    links = ["[audit.md](audit.md) (integrity, determinism, every claim with its evidence)" if (out / "audit.md").exists()
             else f"no audit.md yet (`bench check --profile {profile}`)"]
    for name, what in (("fidelity.md", "fidelity to the authors' release"),
                       ("controls.md", "the controls that isolate the diffusion"),
                       ("table2.md", "Table 2"), ("diagnosis.md", "models far from the paper's numbers")):
        if (out / name).exists():
            links.append(f"[{name}]({name}) ({what})")
    speed = out.parent / "speed"
    cost = [f"[campaign-{profile}.md](../speed/campaign-{profile}.md) (the runs left, in hours)"] \
        if (speed / f"campaign-{profile}.md").exists() else []
    cost += [f"[{p.name}](../speed/{p.name})" for p in sorted(speed.glob("convergence-*.md"))]
    if cost:
        links.append("cost: " + ", ".join(cost))
    return links


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


def missing_matrix(missing_runs: list) -> tuple[list[str], list[list[str]]]:
    """(header, rows): one row per model with a missing run, one column per dataset, cells 'missing/expected'."""
    datasets = order_datasets({d for d, _, _ in missing_runs})
    count = {}
    for d, m, _ in missing_runs:
        count[(d, m)] = count.get((d, m), 0) + 1
    models = sorted({m for _, m, _ in missing_runs}, key=lambda m: (m not in _base_names(), m))
    rows = [[m, *[str(count.get((d, m), 0)) for d in datasets]] for m in models]
    return ["Model", *[dataset_title(d) for d in datasets]], rows


def _base_names() -> set:
    from bench.zoo import discover

    return {spec.name for spec in discover().values()}


def unavailable_datasets(datasets, data_dir=None) -> dict:
    """{dataset: why it cannot run} for datasets whose data file is absent."""
    from datasets.prepare import load_card, resolve_data_dir

    out = {}
    for name in datasets:
        try:
            card = load_card(name)
        except Exception as err:  # an unknown card cannot run either
            out[name] = f"{type(err).__name__}: {err}"
            continue
        if not (resolve_data_dir(data_dir) / card["file"]).exists():
            out[name] = f"its data file `{card['file']}` is absent"
    return out


def _runs_section(col: Collected, missing_runs: list | None, data_dir=None) -> list[str]:
    lines = ["## Missing and failed runs", ""]
    if missing_runs:
        cannot = unavailable_datasets(sorted({d for d, _, _ in missing_runs}), data_dir)
        runnable = [e for e in missing_runs if e[0] not in cannot]
        lines += [f"Missing (expected, no record) — {len(missing_runs)}: {len(runnable)} runnable, "
                  f"{len(missing_runs) - len(runnable)} on datasets without data. `bench grid --profile P --list` "
                  "prints them one by one, in run order; audit.md lists each with its reason.", ""]
        for d in order_datasets(cannot):
            n = sum(e[0] == d for e in missing_runs)
            lines += [f"- {dataset_title(d)} ({n} expected run{'s' if n != 1 else ''}): not runnable, {cannot[d]}.", ""]
        if runnable:
            lines += ["Runnable missing runs per model and dataset (0: none missing, or not in that dataset's grid):", ""]
            header, rows = missing_matrix(runnable)
            lines.append(md_table(header, rows))
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
             missing_figs: list[str], missing_runs: list | None, notes: list[str], out: Path | None = None,
             data_dir=None) -> str:
    """The whole ``index.md``; ``missing_runs`` None means no expected list was given.

    out: the folder the index is written to (its ``audit.json`` and the cost pages beside it are
    read and linked); data_dir: where the datasets are looked for (those without a file are listed apart).
    """
    lines = _header(profile, col) + _verdict_section(profile, col, out) + _budget_section(budget_table(col))
    lines += _links_section(links, figures, missing_figs)
    lines += ["", "## Environment", ""] + env_summary(col.records)
    lines += ["## Statistical method", ""] + [f"- {n}" for n in METHOD_NOTES] + [""]
    lines += _runs_section(col, missing_runs, data_dir)
    if col.problems or notes:
        lines += ["## Warnings", ""] + [f"- {p}" for p in [*col.problems, *notes]] + [""]
    return "\n".join(lines) + "\n"
