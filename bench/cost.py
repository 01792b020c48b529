"""The cost table: what a profile's grid costs, from its records and a timing pass.

``bench cost --profile full --dataset beauty [--timing-batches 20] [--device ...]`` times each
model's training epoch and full validation at the profile's settings (``bench.speed.time_suite``,
the engine's own functions; epochs extrapolated from a sample of batches, validation from a
sample of users), saves the timings as ``reports/speed/timing-<profile>-<dataset>-<device>.json``,
and writes ``reports/speed/convergence-<dataset>.md`` from every timing file and every record:

* seconds per epoch and per validation on this machine (records' measured values where they
  exist, else the timing pass);
* epochs to the best checkpoint and epochs run, where a record exists;
* projected hours of one run and of the whole grid (the profile's datasets with data, five
  seeds, base models) here, and on a GPU where a GPU timing file exists.

A run's cost is modelled as  epochs x (s/epoch + stop-validation s / eval_step)  +  the final
ranking of every user (validation, test and each extra evaluation).  Epoch counts of models
without a record are the median of the records present (marked "assumed").
"""
from __future__ import annotations

import json
import statistics
from pathlib import Path

import numpy as np

from bench import store
from bench.fmt import md_table
from bench.profiles import Entry, load_profile
from bench.runner import per_dataset, resolve
from bench.zoo import discover
from datasets.prepare import load_sequences

DEFAULT_EPOCHS = 40  # used only when no record of the profile exists at all


def timing_pass(profile: dict, dataset: str, models: list[str], max_batches: int, eval_users: int,
                device, data_dir=None) -> dict:
    """{model: {epoch_s, valid_s (all users), ...}} at the profile's settings on ``device``."""
    from bench.speed import speed_params, time_suite

    full = load_sequences(dataset, data_dir)
    sample = full.subset(np.arange(min(eval_users, full.n_users)))
    out = {}
    for name in models:
        params, prefixes = speed_params(dataset, name, {}, profile)
        spec = discover()[name.lower()]
        row = time_suite(spec, params, full, max_batches=max_batches, device=device, max_prefixes=prefixes,
                         eval_seqs=sample)
        row["valid_s"] = row.pop("eval_s") * full.n_users / sample.n_users
        out[spec.name] = row
        print(f"[cost] {dataset} {spec.name}: {row['epoch_s']:.1f} s/epoch, {row['valid_s']:.1f} s/validation",
              flush=True)
    return out


def _records(results_dir, profile: str) -> dict:
    """{(dataset, model): [ok base-model records]}."""
    out = {}
    for r in store.load_records(results_dir, profile):
        if not r.get("variant"):
            out.setdefault((r["dataset"], r["model"]), []).append(r)
    return out


def run_hours(epochs: float, epoch_s: float, valid_s: float, params: dict, budget: dict, n_users: int,
              n_extra: int) -> float:
    """Modelled hours of one run (see module doc)."""
    stop = budget.get("stop_users")
    frac = min(1.0, stop / n_users) if stop else 1.0
    per_epoch = epoch_s + valid_s * frac / int(params["eval_step"])
    final = valid_s * (2 + n_extra)  # rank every user's validation and test item, then each extra evaluation
    return (epochs * per_epoch + final) / 3600


def cost_rows(profile: dict, results_dir, timings: dict, datasets: list[str], n_users: dict, seeds: int = 5,
              device_label: str = "cpu") -> list[dict]:
    """One row per model: the Beauty-style columns plus grid hours over ``datasets``."""
    records = _records(results_dir, profile["name"])
    epochs_seen = [r["timing"]["epochs_run"] for rs in records.values() for r in rs]
    fallback = statistics.median(epochs_seen) if epochs_seen else DEFAULT_EPOCHS
    rows = []
    for spec in discover().values():
        row = {"model": spec.name, "seeds": seeds, "datasets": {}}
        for ds in datasets:
            params, _ = resolve(Entry(ds, spec.name, 0, spec.name), profile)
            budget = {k: per_dataset(profile.get(k), ds) for k in ("stop_users",)}
            rs = records.get((ds, spec.name), [])
            t = (timings.get(ds) or {}).get(spec.name)
            if rs:
                epoch_s = float(np.mean([r["timing"]["s_per_epoch"] for r in rs]))
                epochs = float(np.mean([r["timing"]["epochs_run"] for r in rs]))
                best = [int(r["checkpoint"]["best_epoch"]) + 1 for r in rs]
                converged = all(store.converged(r) for r in rs)
            else:
                epoch_s, epochs, best, converged = (t or {}).get("epoch_s"), fallback, None, None
            valid_s = (t or {}).get("valid_s")
            if valid_s is None and rs:  # the records' stop-subset validations, scaled to all users
                r = rs[0]
                n_val = max(1, sum(1 for e in r["curve"] if e.get("valid")))
                frac = (r["checkpoint"].get("stopping_users") or n_users[ds]) / n_users[ds]
                valid_s = r["timing"]["eval_s"] / n_val / frac
            n_extra = len(profile["extra_evals"].get(spec.name, {}))
            hours = (run_hours(epochs, epoch_s, valid_s, params, budget, n_users[ds], n_extra)
                     if epoch_s is not None and valid_s is not None else None)
            row["datasets"][ds] = {"epoch_s": epoch_s, "valid_s": valid_s, "epochs": epochs, "best": best,
                                   "records": len(rs), "assumed_epochs": not rs, "converged": converged,
                                   "run_h": hours, "grid_h": None if hours is None else hours * seeds,
                                   "left_h": None if hours is None else hours * max(0, seeds - len(rs))}
        rows.append(row)
    return rows


def _h(x) -> str:
    return "–" if x is None else f"{x:.1f}"


def render(rows: list[dict], profile: str, dataset: str, datasets: list[str], gpu_rows: list[dict] | None,
           env: dict) -> str:
    lines = [f"# Convergence cost — profile `{profile}`, {dataset}", "",
             f"This machine: {env.get('cpu')}, {env.get('threads')} torch thread(s). Seconds per epoch come from the "
             "records where they exist (measured while another run shared the CPU, so they are upper bounds), "
             "else from a timing pass (`bench cost`). Epochs: from the records; *assumed* = the median of the "
             "records present. Run hours = epochs x (s/epoch + stop-validation s / eval_step) + the final "
             "ranking of every user.", "",
             f"## {dataset}", ""]
    header = ["model", "s/epoch", "validation s (all users)", "best epoch", "epochs run", "run h"]
    body = []
    for r in rows:
        d = r["datasets"].get(dataset, {})
        best = ", ".join(map(str, d["best"])) if d.get("best") else "–"
        flag = "" if d.get("converged") in (True, None) else " (epoch cap: not converged)"
        epochs = f"{d['epochs']:.0f}" + (" assumed" if d.get("assumed_epochs") else "") + flag
        body.append([r["model"], _h(d.get("epoch_s")), _h(d.get("valid_s")), best, epochs, _h(d.get("run_h"))])
    lines += [md_table(header, body), "", f"## The whole grid: {', '.join(datasets)}, five seeds, base models", ""]
    header = ["model"] + [f"{ds} h" for ds in datasets] + ["total h (this machine)", "runs done", "left h"]
    if gpu_rows:
        header.append("total h (GPU)")
    body, total, left = [], 0.0, 0.0
    gpu_by = {r["model"]: r for r in gpu_rows or []}
    for r in rows:
        cells = [r["datasets"][ds]["grid_h"] for ds in datasets]
        t = None if any(c is None for c in cells) else sum(cells)
        total += t or 0.0
        lefts = [r["datasets"][ds]["left_h"] for ds in datasets]
        todo = None if any(c is None for c in lefts) else sum(lefts)
        left += todo or 0.0
        done = sum(min(r["seeds"], r["datasets"][ds]["records"]) for ds in datasets)
        line = [r["model"]] + [_h(c) for c in cells] + [_h(t), f"{done} / {r['seeds'] * len(datasets)}", _h(todo)]
        if gpu_rows:
            g = gpu_by.get(r["model"])
            gc = [g["datasets"][ds]["grid_h"] for ds in datasets] if g else [None]
            line.append(_h(None if any(c is None for c in gc) else sum(gc)))
        body.append(line)
    lines += [md_table(header, body), "", f"Total on this machine (models with every cell known): {total:.0f} h "
              f"of one process, of which {left:.0f} h are left to run (base runs without a record); the grid runs "
              "two processes at once on 2 cores.", ""]
    return "\n".join(lines)


def write_cost_report(profile_name: str, results_dir, reports_dir, dataset: str, data_dir=None) -> Path:
    from bench.grid import available_datasets
    from bench.runner import environment

    profile = load_profile(profile_name)
    datasets, _ = available_datasets(profile, data_dir)
    folder = Path(reports_dir) / "speed"
    timings, gpu = {}, {}
    for path in sorted(folder.glob(f"timing-{profile['name']}-*.json")):
        blob = json.loads(path.read_text())
        target = gpu if blob["device"] != "cpu" else timings
        target.setdefault(blob["dataset"], {}).update(blob["models"])
    n_users = {ds: load_sequences(ds, data_dir).n_users for ds in datasets}
    rows = cost_rows(profile, results_dir, timings, datasets, n_users)
    gpu_rows = cost_rows(profile, Path("/nonexistent"), gpu, datasets, n_users) if gpu else None
    text = render(rows, profile["name"], dataset, datasets, gpu_rows, environment())
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"convergence-{dataset}.md"
    path.write_text(text + "\n")
    return path


def add_cost_parser(sub, common) -> None:
    parser = sub.add_parser("cost", help="the cost table: s/epoch, epochs to converge, projected grid hours")
    common(parser)
    parser.add_argument("--dataset", default="beauty")
    parser.add_argument("--models", nargs="+", default=None, help="models to time (default: all)")
    parser.add_argument("--timing-batches", type=int, default=0,
                        help="time N training batches per model first (0: render from records and saved timings)")
    parser.add_argument("--timing-users", type=int, default=2000, help="users ranked to time a validation")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")

    def cmd(args):
        from bench.runner import resolve_device

        if args.timing_batches:
            profile = load_profile(args.profile)
            device = resolve_device(args.device)
            models = args.models or [s.name for s in discover().values()]
            timed = timing_pass(profile, args.dataset, models, args.timing_batches, args.timing_users, device,
                                args.data_dir)
            folder = Path(args.reports_dir) / "speed"
            folder.mkdir(parents=True, exist_ok=True)
            path = folder / f"timing-{profile['name']}-{args.dataset}-{device.type}.json"
            old = json.loads(path.read_text())["models"] if path.exists() else {}
            path.write_text(json.dumps({"profile": profile["name"], "dataset": args.dataset, "device": device.type,
                                        "models": {**old, **timed}}, indent=1, sort_keys=True) + "\n")
        path = write_cost_report(args.profile, args.results_dir, args.reports_dir, args.dataset, args.data_dir)
        print(path.read_text())
        return 0

    parser.set_defaults(func=cmd)
