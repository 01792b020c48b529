"""``bench reproduce --all --profile P``: rerun many records and write ``<reports>/<P>/reproduce.md``.

Each finished rerun is saved at once as ``<reports>/<P>/reproduce/<dataset>/<model>/seed-<S>.json``
(a summary: verdict, checks, environment differences, rank and metric changes).  A
second call skips every run whose saved summary belongs to the same record (config
hash, creation time, ranks digest) and device choice, so an interrupted ``full`` check
resumes; failed reruns are not saved and are retried.  ``--redo`` reruns everything.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from bench import store
from bench.audit import verdict as V
from bench.audit.keys import run_id
from bench.errors import BenchError
from bench.fmt import md_table, num, order_datasets


def select_records(results_dir, profile: str, models=None, datasets=None, seeds=None, sample=None,
                   sample_seed: int = 0) -> list[dict]:
    """The ok records of ``profile`` matching the filters; ``sample`` of them drawn with ``sample_seed``."""
    lower = {m.lower() for m in models} if models else None
    chosen = [r for r in store.load_records(results_dir, profile)
              if (lower is None or str(r["model"]).lower() in lower)
              and (not datasets or r["dataset"] in datasets) and (not seeds or int(r["seed"]) in seeds)]
    if sample and sample < len(chosen):
        keep = np.sort(np.random.default_rng(sample_seed).choice(len(chosen), size=sample, replace=False))
        chosen = [chosen[i] for i in keep]
    return chosen


def result_path(reports_dir, profile: str, record: dict) -> Path:
    """``<reports>/<profile>/reproduce/<dataset>/<model>/seed-<S>.json``: the saved summary of one rerun."""
    folder = Path(reports_dir) / profile / "reproduce" / record["dataset"] / record["model"]
    return folder / f"seed-{record['seed']}.json"


def record_identity(record: dict) -> dict:
    """What makes a saved summary belong to this record (a re-made record must be rerun)."""
    return {k: record.get(k) for k in ("config_hash", "created", "ranks_sha256")}


def summarize(res: dict, device_arg: str) -> dict:
    """The JSON-able part of a :func:`reproduce` result that the report needs."""
    test = res.get("rankings", {}).get("test") or {}
    reported = {f"{m['split']} {m['metric']}": {k: m[k] for k in ("recorded", "rerun", "diff", "ci_low", "ci_high",
                                                                  "tolerance", "within")}
                for m in res.get("metrics_reported", [])}
    return {
        "run": res["run"], "verdict": res["verdict"], "checks": res.get("checks", []), "error": res.get("error"),
        "record": res.get("record_id"), "device_arg": device_arg, "device": res.get("device"),
        "threads": res.get("threads"), "mode": res.get("mode"), "notes": res.get("differences", []),
        "environment_differences": [r for r in res.get("environment", []) if r["status"] == "differs"],
        "float_order_differences": res.get("float_order_differences", []), "code": res.get("code"),
        "rerun_cpu": next((r["rerun"] for r in res.get("environment", []) if r["key"] == "cpu"), None),
        "n_users": res.get("n_users"), "moved_any": res.get("moved_any"),
        "test": {"moved": test.get("moved"), "largest": test.get("largest"),
                 "crossed": [test.get("crossed", {}).get(k) for k in V.CUTOFFS]},
        "metrics": reported, "seconds": round(res.get("seconds", 0.0), 1),
        "rerun_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def _done(path: Path, record: dict, device_arg: str) -> dict | None:
    """The saved summary at ``path`` when it belongs to ``record`` and ``device_arg``."""
    try:
        saved = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return saved if saved.get("record") == record_identity(record) and saved.get("device_arg") == device_arg else None


def reproduce_all(profile: str, results_dir, reports_dir, data_dir=None, models=None, datasets=None, seeds=None,
                  sample=None, sample_seed: int = 0, device: str = "record", redo: bool = False, rerun=None,
                  progress: bool = True) -> dict:
    """Rerun the selected records of ``profile`` (resuming), then write ``reproduce.md``.

    ``profile`` is the profile's name (records are stored under it) or a YAML path.
    ``rerun`` is :func:`bench.audit.reproduce.reproduce` (a parameter for tests).
    Returns {rows (one summary per run), path (of reproduce.md), verdict (the worst)}.
    """
    from tqdm import tqdm

    from bench.audit.reproduce import reproduce
    from bench.profiles import load_profile

    rerun = rerun or reproduce
    name = load_profile(profile)["name"]
    records = select_records(results_dir, name, models, datasets, seeds, sample, sample_seed)
    if not records:
        raise BenchError(f"no ok records of profile {name} in {results_dir} match the selection")
    rows, todo = {}, []
    for rec in records:
        saved = None if redo else _done(result_path(reports_dir, name, rec), rec, device)
        if saved:
            rows[run_id(rec)] = saved
        else:
            todo.append(rec)
    if rows and progress:
        saved = Path(reports_dir) / name / "reproduce"
        print(f"{len(rows)} of {len(records)} records already reproduced (saved in {saved}); --redo reruns them")
    bar = tqdm(todo, desc=f"reproduce {name}", unit="run", disable=not progress)
    for rec in bar:
        bar.set_postfix_str(run_id(rec))
        try:
            res = rerun(rec["_dir"], results_dir, data_dir, profile, device=device)
        except BenchError as err:
            res = {"run": run_id(rec), "verdict": "different", "error": str(err), "status": "failed",
                   "record_id": record_identity(rec)}
        summary = summarize(res, device)
        rows[run_id(rec)] = summary
        if res.get("status") == "ok":  # a failed rerun is retried next time
            store.write_json(result_path(reports_dir, name, rec), summary)
        bar.write(f"{summary['run']}: {summary['verdict']}" + (f" ({summary['error']})" if summary["error"] else
                                                                f" ({summary['seconds']} s)"))
    ordered = [rows[run_id(r)] for r in records]
    path = Path(reports_dir) / name / "reproduce.md"
    path.parent.mkdir(parents=True, exist_ok=True)
    selection = {"models": models, "datasets": datasets, "seeds": seeds, "sample": sample,
                 "sample_seed": sample_seed if sample else None, "device": device}
    path.write_text(render_md(name, ordered, selection))
    return {"rows": ordered, "path": path, "verdict": V.worst(r["verdict"] for r in ordered)}


# =========================================================================== reproduce.md
def _pp(x) -> str:
    """A fraction difference in percentage points with its sign."""
    return num(None if x is None else 100 * x, "{:+.3f}")


def _delta_cell(row: dict, key: str) -> str:
    m = (row.get("metrics") or {}).get(key)
    if not m:
        return "–"
    return f"{_pp(m['diff'])} [{_pp(m['ci_low'])}, {_pp(m['ci_high'])}]" + ("" if m["within"] else " ✗")


def _size_cells(row: dict) -> list[str]:
    """Users moved (any ranking), largest |Δrank| and crossings of the test ranking; '–' for a failed rerun."""
    test = row.get("test") or {}
    if row.get("moved_any") is None or test.get("moved") is None:
        return ["–", "–", "–"]
    return [f"{row['moved_any']} of {row['n_users']}", str(test["largest"]), "/".join(map(str, test["crossed"]))]


def _env_cell(row: dict) -> str:
    diffs = row.get("environment_differences") or []
    text = ", ".join(f"{d['key']}{'' if d['float_order'] else ' (not fp)'}" for d in diffs if d["key"] not in
                     ("git_revision", "git_dirty", "code_diff_sha256")) or "none"
    code = (row.get("code") or {}).get("status")
    return text + (f"; code {code}" if code and code != "same" else "")


def _selection_text(selection: dict) -> str:
    """'models [...], seeds [...], sample 5 (seed 0), device cpu' — what ``--all`` was asked to rerun."""
    parts = [f"{k} {selection[k]}" for k in ("models", "datasets", "seeds") if selection.get(k)]
    if selection.get("sample"):
        parts.append(f"a sample of {selection['sample']} (seed {selection.get('sample_seed')})")
    device = selection.get("device")
    parts.append("on each record's device" if device in (None, "record") else f"on device {device}")
    return ", ".join(parts)


def render_md(profile: str, rows: list[dict], selection: dict) -> str:
    """The whole ``reproduce.md``: selection, rule, verdict counts, one row per run, the failed checks."""
    order = {d: i for i, d in enumerate(order_datasets({r["run"].split("/")[0] for r in rows}))}
    rows = sorted(rows, key=lambda r: (order.get(r["run"].split("/")[0], 99), r["run"]))
    counts = {v: sum(r["verdict"] == v for r in rows) for v in V.VERDICTS}
    stamps = [r["rerun_at"] for r in rows if r.get("rerun_at")]
    cpus = sorted({str(r.get("rerun_cpu")) for r in rows if r.get("rerun_cpu")})
    chosen = _selection_text(selection)
    lines = [f"# Reproduction of profile `{profile}`", "",
             f"{len(rows)} records rerun ({chosen}) with `bench reproduce --all`; reruns on {', '.join(cpus) or '–'}"
             + (f", the latest at {max(stamps)}" if stamps else "") + ".", "",
             f"**{counts['identical']} identical, {counts['equivalent']} equivalent, "
             f"{counts['different']} different.**",
             "", f"Rule: {V.RULE_TEXT} (docs/operations.md#bench-reproduce-identical-equivalent-or-different).", "",
             "Users moved: in any stored ranking. Largest |Δrank|, crossed @5/@10/@20: the test ranking. "
             "Δ: rerun − "
             "record in percentage points with the paired 95 % interval over users; ✗ beyond tolerance. "
             "Environment: keys that differ (not fp: cannot change floating-point order).", ""]
    table = [[r["run"], f"**{r['verdict']}**", *_size_cells(r), _delta_cell(r, "test HR@10"),
              _delta_cell(r, "test NDCG@10"), _env_cell(r)] for r in rows]
    lines += [md_table(["Run", "Verdict", "Users moved", "Largest \\|Δrank\\|", "Crossed @5/@10/@20",
                        "Δ HR@10 (test)", "Δ NDCG@10 (test)", "Environment"], table)]
    failing = [r for r in rows if r["verdict"] == "different"]
    if failing:
        lines += ["## Why different", ""]
        for r in failing:
            why = ([r["error"]] if r.get("error") else
                   [f"{c['id']}: {c['text']}" for c in r["checks"] if not c["passed"]])
            lines += [f"- **{r['run']}**: " + "; ".join(why)]
        lines += [""]
    return "\n".join(lines) + "\n"
