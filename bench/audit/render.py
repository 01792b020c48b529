"""``audit.md`` and ``audit.json`` from the audit's result dict, and the console summary of ``bench check``.

Run-time measurements (the audit's and each determinism re-run's wall seconds) go to
the console only, so re-checking unchanged records rewrites the same files.
"""
from __future__ import annotations

import copy
import json
from pathlib import Path

from bench import store
from bench.audit.keys import short
from bench.audit.protocol import PROTOCOL_TEXT
from bench.fmt import jsonable, md_table, num, p_value_short, pct

PCT_COLUMNS = {"target", "baseline", "variant_mean", "claimed", "other", "clean", "paper", "better_group",
               "worse_group"}


def without_run_times(result: dict) -> dict:
    """A copy of ``result`` without wall-clock seconds (what the written files hold)."""
    out = copy.deepcopy(result)
    out.pop("seconds", None)
    for run in (out.get("determinism") or {}).get("runs", []):
        run.pop("seconds", None)
    return out


# =========================================================================== sections
def _summary(result: dict) -> list[str]:
    from bench.report.index import stamp_text

    integ, det, prot = result["integrity"], result["determinism"], result["protocol_sensitivity"]
    verdict = "PASS" if integ["passed"] else "FAIL"
    newest = f"; newest record {result['newest_record']}" if result.get("newest_record") else ""
    return [f"# Audit of profile `{result['profile']}`", "",
            f"Results: `{result['results_dir']}`; data: `{result['data_dir']}`{newest}.", "",
            *([f"Rendered from {stamp_text(result['records_stamp'])}.", ""] if result.get("records_stamp") else []),
            f"- **Integrity: {verdict}** — {integ['n_checked']} ok records checked, {integ['n_failed_checks']} "
            f"with problems; {len(integ['failed_runs'])} failed runs, {len(integ['missing_runs'])} missing of "
            f"{integ['n_expected']} expected.",
            f"- **Determinism: {det['status']}**" + (f" — {det['reason']}" if det.get("reason") else ""),
            f"- **Protocol sensitivity:** {prot['status']}",
            "- **Claims:** " + ", ".join(f"{c['id']} *{c['verdict']}*" for c in result["claims"]),
            f"- **Environment:** {len(result['environment']['flagged'])} records with versions other than now", ""]


def _integrity(integ: dict) -> list[str]:
    lines = ["## 1. Integrity", "",
             "Each ok record: stored metrics recompute exactly from `ranks.npz` (paper protocol: metric m from "
             "`test@m`; `ranks_sha256` checked when recorded); `config_hash` matches the record's own config; the "
             "config resolved today from the profile and model YAML hashes to the same value (else stale); data "
             "checksum, test items, history lengths and head flags match the data.", ""]
    bad = [c for c in integ["records"] if c["problems"]]
    if bad:
        lines += ["### Records failing the check", ""]
        lines += [md_table(["Run", "Problem"], [[c["run"], p] for c in bad for p in c["problems"]])]
    else:
        lines += [f"All {integ['n_checked']} ok records pass.", ""]
    data_rows = [[d, "available" if i["available"] else "data unavailable",
                  i.get("sha256", "")[:16] if i["available"] else i["reason"]] for d, i in integ["data"].items()]
    if data_rows:
        lines += ["### Data", "", md_table(["Dataset", "Status", "SHA-256 / reason"], data_rows)]
    lines += ["### Missing runs", ""]
    lines += ([md_table(["Run", "Reason"], [[m["run"], m["reason"]] for m in integ["missing_runs"]])]
              if integ["missing_runs"] else ["None: every run of the profile's grid has a record.", ""])
    lines += ["### Failed runs", ""]
    failed = [[f["run"], f["error"]] for f in integ["failed_runs"]]
    failed += [[f["run"] + " (re-run failed; ok record kept)", f["error"]] for f in integ["failed_reruns"]]
    lines += [md_table(["Run", "Error"], failed)] if failed else ["None.", ""]
    if integ["outside_grid"]:
        lines += ["### Records outside the profile's grid", "", ", ".join(integ["outside_grid"]), ""]
    return lines


def _determinism(det: dict) -> list[str]:
    plan = det.get("plan") or {}
    device = f" on device {det['device']}" if det.get("device") else ""
    lines = ["## 2. Determinism", "",
             f"Plan: models {plan.get('models')}, dataset {plan.get('dataset')}, seed {plan.get('seed')}, "
             f"max_users {plan.get('max_users')}, epochs {plan.get('epochs')} (profile key `determinism`). Each run "
             f"is trained twice into a temporary store{device} and its rank arrays compared exactly. A comparison "
             "with the stored record is made only when its config hash equals the reduced run's.", "",
             "Verdicts as in `bench reproduce`: **identical** = every stored ranking bit-for-bit equal; "
             "**equivalent** = the rankings differ only as floating-point order on another environment explains "
             "(possible only against a stored record made elsewhere); **different** = anything else. Both reruns "
             "are made here, on one environment, so any change between them is *different*.", ""]
    if not det.get("runs"):
        return lines + [f"{det['status']}: {det.get('reason', '')}", ""]
    rows = []
    for r in det["runs"]:
        vs = r.get("vs_stored")
        rows.append([r["run"], r["status"], r.get("error") or
                     f"{r.get('users_changed_any')} of {r.get('n_users')} users differ "
                     f"(test {r.get('users_changed_test')}, valid {r.get('users_changed_valid')})",
                     "–" if not vs else _vs_stored(vs)])
    return lines + [md_table(["Run", "Verdict", "Rerun A vs B", "Vs stored"], rows)]


def _vs_stored(vs: dict) -> str:
    """The rerun against the stored record: verdict, users moved, environment keys that differ."""
    verdict = vs.get("verdict") or ("identical" if vs.get("identical") else "different")
    if verdict == "identical":
        return verdict
    env = ", ".join(vs.get("float_order_differences") or []) or "no float-order difference"
    return f"{verdict}: {vs.get('users_changed_any')} users differ ({env})"


def _protocol(prot: dict) -> list[str]:
    lines = ["## 3. Protocol sensitivity", ""] + [f"- **{name}**: {text}" for name, text in PROTOCOL_TEXT.items()]
    lines += [""]
    if not prot["rows"]:
        return lines + ["Not run in this profile: no DiffuRec or SASRec records under both protocols (the `paper` "
                        "runs are variants such as `DiffuRec-paper` with `params: {protocol: paper}`).", ""]
    lines += [md_table(["Dataset", "Model", "clean run", "paper run"],
                       [[p["dataset"], p["base_model"], p["clean"], p["paper"]] for p in prot["pairs"]])]
    for base in sorted({p["base_model"] for p in prot["pairs"]}):
        changed = prot["params_changed"].get(base)
        if not changed:
            lines += [f"{base}: no param differs between the two runs; only the checkpoint rule changes.", ""]
            continue
        lines += [f"Params of {base} that differ between the protocols (from the records):", ""]
        lines += [md_table(["Param", "clean", "paper", "Meaning (model YAML)"],
                           [[k, short(v["clean"]), short(v["paper"]), v["meaning"]] for k, v in changed.items()])]
    lines += [md_table(["Dataset", "Model", "Metric", "clean", "paper", "paper − clean", "95% CI", "Rel. %", "Seeds",
                        "p (Holm)"],
                       [[r["dataset"], r["base_model"], r["metric"], pct(r["clean"]), pct(r["paper"]),
                         pct(r["diff"]), f"[{pct(r.get('hb_ci_low'))}, {pct(r.get('hb_ci_high'))}]",
                         num(r["rel_pct"], "{:+.1f}"),
                         f"{r['n_seeds_clean']}/{r['n_seeds_paper']}", p_value_short(r.get("hb_p_holm"))]
                        for r in prot["rows"]])]
    return lines + ["Values in percent, seed means; the headline test (two-level bootstrap over seeds and test "
                    "users, docs/statistics.md), Holm over this table (its own family).", ""]


def _evidence_cell(col: str, v) -> str:
    if isinstance(v, bool):
        return "yes" if v else "no"
    if v is None:
        return "–"
    if col.endswith("_p") or col.endswith("_holm") or col.endswith("_p_t"):
        return p_value_short(v)
    if col in PCT_COLUMNS:
        return pct(v)
    if col.endswith("_pct"):
        return num(v, "{:.2f}")
    if isinstance(v, float):
        return num(v)
    return str(v)


def evidence_md(claim: dict) -> str:
    """The claim's evidence rows as a table of its ``columns`` ('' without evidence)."""
    cols, rows = claim.get("columns") or [], claim.get("evidence") or []
    if not rows or not cols:
        return ""
    return md_table(cols, [[_evidence_cell(c, r.get(c)) for c in cols] for r in rows])


def rule_text(rule: dict) -> str:
    """The rule as one line of JSON; nested mappings (e.g. the paper's column) only named."""
    shown = {k: v for k, v in rule.items() if not isinstance(v, dict)}
    hidden = [k for k in rule if k not in shown]
    return json.dumps(shown, default=str) + (f" (+ {', '.join(hidden)}: see claims.yaml)" if hidden else "")


def _claims(claims: list) -> list[str]:
    lines = ["## 4. Claims", "",
             md_table(["Id", "Source", "Verdict", "Reason"],
                      [[c["id"], c["source"], f"**{c['verdict']}**", c["reason"]] for c in claims])]
    for c in claims:
        lines += [f"### {c['id']}: {c['verdict']}", "", f"> {c['statement']} ({c['source']})", "",
                  f"Rule: `{rule_text(c['rule'])}`", "", c["reason"], ""]
        ev = evidence_md(c)
        if ev:
            lines += [ev]
    return lines + ["Metric values in percent. `hb_p_holm`: the headline test's p (two-level bootstrap over seeds and "
                    "test users), Holm-adjusted in the one family named in `family` and quoted from the report that "
                    "declares it (`table2`: significance_table2.md, `table3`: significance_table3.md, `controls`: "
                    "controls.md), so a claim shows the same adjusted p as the report; `p_a_beats_b`: P(one new run "
                    "of the target beats one of the other model). Claims that no report tests (settings F3/F5, user "
                    "groups F8/F9) run the same headline test on their cells (F8/F9 on the group's users), "
                    "Holm-adjusted over the cells of their claim (`hb_p_holm`, no `family` column); "
                    "`welch_p_holm`: Welch over users of one model's head against its long-tail users (different "
                    "users, F8-head-above-tail) or over seeds (F10), Holm over the claim's cells.", ""]


def _environment(env: dict) -> list[str]:
    lines = ["## 5. Environment", "", "This check:", "",
             md_table(["Key", "Value"], [[k, str(v)] for k, v in env["current"].items()]), "Records:", "",
             md_table([*env["keys"], "runs"], [[*(g[k] for k in env["keys"]), g["runs"]] for g in env["groups"]])]
    if not env["flagged"]:
        return lines + ["Every record was made with the current Python, torch, RecBole and numpy versions.", ""]
    return lines + ["Records whose versions differ from this environment:", "",
                    md_table(["Run", "Differs"], [[f["run"], ", ".join(f"{k} {v['record']} (now {v['now']})"
                                                                      for k, v in f["differs"].items())]
                                                  for f in env["flagged"]])]


def render_md(result: dict) -> str:
    """The whole ``audit.md``."""
    lines = (_summary(result) + _integrity(result["integrity"]) + _determinism(result["determinism"])
             + _protocol(result["protocol_sensitivity"]) + _claims(result["claims"])
             + _environment(result["environment"]))
    return "\n".join(lines) + "\n"


def write_audit(result: dict, reports_dir) -> tuple[Path, Path]:
    """Write ``<reports_dir>/<profile>/audit.md`` and ``audit.json`` (without run times); returns both paths."""
    folder = Path(reports_dir) / result["profile"]
    folder.mkdir(parents=True, exist_ok=True)
    md, js = folder / "audit.md", folder / "audit.json"
    stable = without_run_times(result)
    store.write_json(js, jsonable(stable))
    md.write_text(render_md(stable))
    return md, js


def console_summary(result: dict, md_path) -> str:
    """What ``bench check`` prints: integrity with each problem, determinism (with run times), claims."""
    integ, det = result["integrity"], result["determinism"]
    lines = [f"integrity: {'PASS' if integ['passed'] else 'FAIL'} ({integ['n_checked']} records, "
             f"{integ['n_failed_checks']} with problems, {len(integ['missing_runs'])} missing, "
             f"{len(integ['failed_runs'])} failed)"]
    lines += [f"  {c['run']}: {p}" for c in integ["records"] for p in c["problems"]]
    times = ", ".join(f"{r['run']} {r['seconds']} s" for r in det.get("runs", []) if "seconds" in r)
    lines.append(f"determinism: {det['status']}" + (f" ({times})" if times else ""))
    lines += [f"claim {c['id']}: {c['verdict']}" for c in result["claims"]]
    lines.append(f"wrote {md_path} and audit.json" + (f" in {result['seconds']} s" if "seconds" in result else ""))
    return "\n".join(lines)
