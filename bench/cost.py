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
  seeds, base models) here, and on a GPU where a GPU timing file exists;

and ``reports/speed/campaign-<profile>.md``: every run still without a record, variants included, in
the order ``bench grid`` runs them (the profile's ``priority:``), with its projected hours (see
:func:`queue_rows`) and the running total, so that "what is left, in hours" is a command's output.

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
# params whose change moves a run's cost away from its base model's (width, depth, batch, schedule)
COST_PARAMS = {"hidden_size", "inner_size", "n_layers", "train_batch_size", "epochs", "eval_step", "stopping_step",
               "loss_type", "MAX_ITEM_LIST_LENGTH"}


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


def record_hours(record: dict) -> float:
    """Measured hours of one finished run: training, its validations and the final ranking."""
    t = record["timing"]
    return (t["train_s"] + t.get("eval_s", 0.0) + t.get("test_eval_s", 0.0)) / 3600


def queue_rows(profile: dict, results_dir, rows: list[dict], data_dir=None) -> list[dict]:
    """The runs without a record, in ``bench grid`` order, each with projected hours on this machine.

    A base run costs what its model's records on that dataset took (their mean), else the cost
    model's run hours (``rows``). A variant costs its base model's hours there, times the ratio
    variant/base measured on another dataset where both have records (``STOSA-patience40`` on Toys:
    STOSA's Toys hours x its Beauty ratio), else its base model's hours ("as its base", marked rough
    where it changes a ``COST_PARAMS`` key: a variant that trains longer or wider costs more). Returns
    dicts: model, dataset, seed, hours (None if unknown), cumulative, basis.
    """
    from bench.grid import missing_entries

    measured = {}
    for r in store.load_records(results_dir, profile["name"]):
        measured.setdefault((r["dataset"], r["model"]), []).append(record_hours(r))
    mean = {key: float(np.mean(v)) for key, v in measured.items()}
    modelled = {(ds, r["model"]): d["run_h"] for r in rows for ds, d in r["datasets"].items()}
    assumed = {(ds, r["model"]) for r in rows for ds, d in r["datasets"].items() if d["assumed_epochs"]}

    def base_hours(dataset, model):
        if (dataset, model) in mean:
            return mean[(dataset, model)], f"{model}'s runs here"
        why = "s/epoch timed, epochs assumed" if (dataset, model) in assumed else "s/epoch and epochs from its runs"
        return modelled.get((dataset, model)), f"cost model ({why})"

    out, total = [], 0.0
    for e in missing_entries(profile, results_dir, data_dir):
        hours, basis = base_hours(e.dataset, e.base_model)
        if e.model != e.base_model:
            mine, protocol = resolve(e, profile)
            base, base_protocol = resolve(Entry(e.dataset, e.base_model, e.seed, e.base_model), profile)
            changed = [f"{k} {base.get(k)} -> {mine.get(k)}" for k in sorted(COST_PARAMS)
                       if mine.get(k) != base.get(k)]
            if protocol != base_protocol:  # the paper protocol ranks the test set at every improvement
                changed.append(f"protocol {base_protocol} -> {protocol}")
            basis = "as its base" + (f"; rough: {', '.join(changed)}" if changed else "")
            for (ds, name), h in sorted(mean.items()):
                if name == e.model and (ds, e.base_model) in mean and hours is not None:
                    ratio = h / mean[(ds, e.base_model)]
                    hours, basis = hours * ratio, f"base x {ratio:.2f} (the two measured on {ds})"
                    break
        total += hours or 0.0
        out.append({"model": e.model, "dataset": e.dataset, "seed": e.seed, "hours": hours,
                    "cumulative": total, "basis": basis if hours is not None else "no timing"})
    return out


def render_queue(queue: list[dict], profile: str) -> str:
    """``campaign-<profile>.md``: the runs left, projected hours, running total."""
    known = sum(q["hours"] or 0.0 for q in queue)
    body = [[i + 1, q["model"], q["dataset"], q["seed"], _h(q["hours"]), _h(q["cumulative"]), q["basis"]]
            for i, q in enumerate(queue)]
    return "\n".join([
        f"# Runs left — profile `{profile}`", "",
        f"{len(queue)} runs without a record, in the order `bench grid --profile {profile}` runs them (the "
        "profile's `priority:`, then grid order), datasets with data only. Hours are one process on this "
        "machine, projected from the records (`bench/cost.py`, `queue_rows`); two lanes share the 2 cores, so "
        "wall time is about half. A run in flight counts in full.", "",
        md_table(["#", "run", "dataset", "seed", "h", "cumulative h", "basis"], body), "",
        f"Total: {known:.0f} process-hours (runs with a projection).", ""])


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
    queue = queue_rows(profile, results_dir, rows, data_dir)
    (folder / f"campaign-{profile['name']}.md").write_text(render_queue(queue, profile["name"]))
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
