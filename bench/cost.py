"""The cost table: what a profile's grid costs, from its records and a timing pass.

``bench cost --profile full --dataset beauty [--timing-batches 20] [--device ...]`` times each
model's training epoch and full validation at the profile's settings (``bench.speed.time_suite``,
the engine's own functions; epochs extrapolated from a sample of batches, validation from a
sample of users), saves the timings as ``reports/speed/timing-<profile>-<dataset>-<device>.json``,
and writes ``reports/speed/convergence-<dataset>.md`` from every timing file and every record:

* seconds per epoch and per validation on the records' CPU (records' measured values where they
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
# params that set how long a run trains and how often (and on whom) it validates, not what an epoch costs:
# a variant changing one of them is projected from its own schedule (:func:`schedule_epochs`), and a record
# that differs from it only in these keys is a "similar run" whose s/epoch and best epoch it borrows
SCHEDULE_PARAMS = {"epochs", "eval_step", "stopping_step", "validate_all_users", "validation_cadence",
                   "checkpoint_rule", "lr_step_size", "lr_gamma"}


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
                                   "n_users": n_users[ds], "stop_users": budget["stop_users"],
                                   "run_h": hours, "grid_h": None if hours is None else hours * seeds,
                                   "left_h": None if hours is None else hours * max(0, seeds - len(rs))}
        rows.append(row)
    return rows


def record_hours(record: dict) -> float:
    """Measured hours of one finished run: training, its validations and the final ranking."""
    t = record["timing"]
    return (t["train_s"] + t.get("eval_s", 0.0) + t.get("test_eval_s", 0.0)) / 3600


def schedule_epochs(best: float, eval_step: int, patience: int, cap: int) -> int:
    """Epochs a run trains when its best checkpoint comes after ``best`` epochs of training: to the first
    validation at or after it (every ``eval_step`` epochs), then ``patience`` validations without a gain,
    at most ``cap``.  (Clean DiffuRec on Beauty, best after 6 epochs, eval_step 2, patience 5: 16 epochs,
    as its record ran.)"""
    eval_step = max(1, int(eval_step))
    first = -(-max(1.0, float(best)) // eval_step) * eval_step
    return int(min(int(cap), first + int(patience) * eval_step))


def _changes(mine: dict, base: dict) -> dict:
    """{key: the variant's value} of the params a variant changes from its base, schedule keys aside."""
    return {k: mine.get(k) for k in sorted(set(mine) | set(base)) if k not in SCHEDULE_PARAMS and mine.get(k) != base.get(k)}


def similar_records(records: list[dict], dataset: str, base_model: str, mine: dict, base: dict,
                    like: str | None = None) -> tuple[list, list]:
    """(same, nearest) records of ``base_model`` on ``dataset``.  ``same``: params equal to the variant's
    ``mine`` outside ``SCHEDULE_PARAMS`` (the same epoch at another schedule: ``DiffuRec-paper-es`` for
    ``DiffuRec-paper``), whose s/epoch and best epoch it borrows (of those, the ones sharing the most
    schedule keys with it).  ``nearest``, when no record is the same: the records of the run the
    profile names in the variant's ``cost_like`` (``DiffuRec-paper-es`` for ``DiffuRec-padattn``: both
    pad every history to 50), whose s/epoch it borrows.  Sharing a change is no evidence of sharing a
    cost (``DiffuRec-embinit`` shares ``embedding_init_std`` with ``DiffuRec-paper-es`` and trains at
    clean DiffuRec's speed), so nothing but ``cost_like`` makes a run nearest.  A key a record lacks
    (it predates the switch) counts as the base's value today."""
    same, nearest = [], []
    for r in records:
        theirs = r.get("params") or {}
        if r.get("dataset") != dataset or (r.get("base_model") or r.get("model")) != base_model or not theirs:
            continue
        value = lambda k: theirs.get(k, base.get(k))  # noqa: E731
        if all(value(k) == mine.get(k) for k in (set(theirs) | set(mine) | set(base)) - SCHEDULE_PARAMS):
            same.append(r)
        elif like is not None and r.get("model") == like:
            nearest.append(r)
    if same:  # the ones whose schedule is nearest the variant's (best epochs depend on it)
        near = [sum((r["params"].get(k, base.get(k))) == mine.get(k) for k in SCHEDULE_PARAMS) for r in same]
        same = [r for r, n in zip(same, near) if n == max(near)]
    return same, ([] if same else nearest)


def _best_epochs(records: list[dict]) -> float | None:
    """Mean epochs trained to the chosen checkpoint (``best_epoch`` is 0-based)."""
    best = [int(r["checkpoint"]["best_epoch"]) + 1 for r in records
            if (r.get("checkpoint") or {}).get("best_epoch") is not None]
    return float(np.mean(best)) if best else None


def padded_tokens(lengths: np.ndarray, batch_size: int, bucketing: bool, seed: int = 0) -> int:
    """History tokens one epoch of the engine feeds a model, padding included: each batch
    (``bench.engine.epoch_batches``, one seeded epoch) is as wide as its longest history.
    ``lengths``: (n_instances,) history lengths.  A plain shuffle (``length_bucketing: false``, the
    paper protocol) makes nearly every batch as wide as the longest history of the data."""
    from bench.engine import epoch_batches

    batches = epoch_batches(np.asarray(lengths), int(batch_size), np.random.default_rng(seed), bool(bucketing))
    return int(sum(len(b) * int(lengths[b].max()) for b in batches))


def scheduled_hours(mine: dict, cell: dict, similar: list[dict], base_records: list[dict],
                    base_notes: list[str], nearest: list[dict] = (), width_ratio: float = 1.0) -> tuple[float | None, str]:
    """(hours, basis) of a variant that changes the schedule: its own epochs cap, eval_step and patience
    around the best epoch of a similar run (else its base model's runs there), at a similar run's measured
    s/epoch (else its base model's, marked rough with what else the variant changes, ``base_notes``).  ``cell``: its base model's :func:`cost_rows` cell on the dataset."""
    epoch_s, valid_s = cell.get("epoch_s"), cell.get("valid_s")
    if similar:
        epoch_s = float(np.mean([r["timing"]["s_per_epoch"] for r in similar]))
        names = ', '.join(sorted({r['model'] for r in similar}))
        best = _best_epochs(similar)
        src = f"s/epoch and best epoch of {names} here"
        if best is None:  # still in training: its final best epoch is not known yet, its best so far is a floor
            best = _best_epochs(base_records)
            src = f"s/epoch of {names} here (in training), its base's best epoch here"
            so_far = [int(r["best_so_far"]) + 1 for r in similar if r.get("best_so_far") is not None]
            if so_far and (best is None or max(so_far) > best):
                best = float(max(so_far))
                src = f"s/epoch of {names} here (in training) and its best epoch so far (a floor)"
    else:
        best = _best_epochs(base_records)
        src = "its base's best epoch here" if best is not None else "epochs assumed"
        if nearest:
            epoch_s = float(np.mean([r["timing"]["s_per_epoch"] for r in nearest]))
            src += f", s/epoch of {', '.join(sorted({r['model'] for r in nearest}))} here (the nearest run)"
        elif epoch_s is not None and width_ratio != 1.0:
            epoch_s *= width_ratio
            # an upper bound: the per-instance work (scoring the catalogue) does not grow with the width
            src += f", its base's s/epoch x {width_ratio:.2f} (padded tokens per epoch of its batching: at most)"
        else:
            src += ", its base's s/epoch"
        if base_notes:
            src += f"; rough: it also changes {', '.join(base_notes)}"
    if best is None:
        best = cell.get("epochs")
    if epoch_s is None or valid_s is None or best is None or not cell.get("n_users"):
        return None, "no timing"
    epochs = schedule_epochs(best, mine["eval_step"], mine["stopping_step"], mine["epochs"])
    budget = {"stop_users": None if mine.get("validate_all_users") else cell.get("stop_users")}
    hours = run_hours(epochs, epoch_s, valid_s, mine, budget, cell["n_users"], 0)
    why = (f"schedule: best after {best:.0f} epochs, validation every {mine['eval_step']}, patience "
           f"{mine['stopping_step']}, cap {mine['epochs']} -> {epochs} epochs"
           + (", every user validated" if budget["stop_users"] is None else ""))
    return hours, f"{why}; {src}"


def queue_rows(profile: dict, results_dir, rows: list[dict], data_dir=None,
               training: list[dict] = ()) -> list[dict]:
    """The runs without a record, in ``bench grid`` order, each with projected hours on the records' CPU.

    ``training``: :func:`bench.progress.in_progress` rows, the runs with a saved state.  Such a run is
    projected from its own epochs so far (its measured s/epoch, the hours left until its patience runs
    out after its best validation so far), and lends that s/epoch, as a record would, to a variant with
    the same params outside the schedule or one whose ``cost_like`` names it (:func:`similar_records`).

    A base run costs what its model's records on that dataset took (their mean), else the cost
    model's run hours (``rows``). A variant costs its base model's hours there, times the ratio
    variant/base measured on another dataset where both have records (``STOSA-patience40`` on Toys:
    STOSA's Toys hours x its Beauty ratio); else, where it changes the schedule (``SCHEDULE_PARAMS``:
    ``DiffuRec-paper``'s 500 epochs, validation every 20, patience 5), :func:`scheduled_hours`; else its
    base model's hours ("as its base", marked rough where it changes a ``COST_PARAMS`` key: a variant
    that trains wider costs more). Returns dicts: model, dataset, seed, hours (None if unknown),
    cumulative, basis.
    """
    from bench.grid import missing_entries

    records = store.load_records(results_dir, profile["name"])
    own = {(t["dataset"], t["model"], t["seed"]): t for t in training}
    timed = [r for r in (_as_timing_record(t, profile) for t in training if np.isfinite(t["s_per_epoch"])) if r]
    measured = {}
    for r in records:
        measured.setdefault((r["dataset"], r["model"]), []).append(record_hours(r))
    mean = {key: float(np.mean(v)) for key, v in measured.items()}
    modelled = {(ds, r["model"]): d["run_h"] for r in rows for ds, d in r["datasets"].items()}
    cells = {(ds, r["model"]): d for r in rows for ds, d in r["datasets"].items()}
    assumed = {(ds, r["model"]) for r in rows for ds, d in r["datasets"].items() if d["assumed_epochs"]}

    def base_hours(dataset, model):
        if (dataset, model) in mean:
            return mean[(dataset, model)], f"{model}'s runs here"
        why = "s/epoch timed, epochs assumed" if (dataset, model) in assumed else "s/epoch and epochs from its runs"
        return modelled.get((dataset, model)), f"cost model ({why})"

    seqs = {}

    def lengths(dataset: str, params: dict) -> np.ndarray:
        """(n_instances,) history lengths of the dataset's training instances at ``params``' history length."""
        from bench.engine import training_instances

        if dataset not in seqs:
            seqs[dataset] = load_sequences(dataset, data_dir)
        inst = training_instances(seqs[dataset], int(params["MAX_ITEM_LIST_LENGTH"]),
                                  per_dataset(profile.get("max_train_prefixes"), dataset))
        return inst.end - inst.start

    out, total = [], 0.0
    for e in missing_entries(profile, results_dir, data_dir):
        hours, basis = base_hours(e.dataset, e.base_model)
        if (e.dataset, e.model, e.seed) in own:
            hours, basis = _own_hours(own[(e.dataset, e.model, e.seed)])
        elif e.model != e.base_model:
            hours, basis = _variant_hours(e, profile, records + timed, mean, cells.get((e.dataset, e.base_model), {}),
                                          hours, lengths)
        total += hours or 0.0
        out.append({"model": e.model, "dataset": e.dataset, "seed": e.seed, "hours": hours,
                    "cumulative": total, "basis": basis if hours is not None else "no timing"})
    return out


def _as_timing_record(t: dict, profile: dict) -> dict | None:
    """A run in training as :func:`similar_records` reads a record: its params, its s/epoch so far and
    its best epoch so far (``best_so_far``, 0-based; no checkpoint: its final best epoch is not known
    yet).  None if the profile no longer has that run."""
    from bench.profiles import grid

    e = next((x for x in grid(profile) if (x.dataset, x.model, x.seed) == (t["dataset"], t["model"], t["seed"])), None)
    if e is None:
        return None
    mine, _ = resolve(e, profile)
    return {"dataset": e.dataset, "model": e.model, "base_model": e.base_model, "params": mine,
            "timing": {"s_per_epoch": t["s_per_epoch"]}, "best_so_far": t.get("best_epoch")}


def _cost_like(profile: dict, model: str) -> str | None:
    """The run a variant declares it costs like (its ``cost_like:`` in the profile), if any."""
    from bench.profiles import all_variants

    return next((v.get("cost_like") for v in all_variants(profile) if v["name"] == model), None)


def _own_hours(t: dict) -> tuple[float, str]:
    """(hours left, basis) of a run in training: the patience runs out after its best validation so far."""
    return t["hours_left_least"], (f"in training: {t['epochs_done']} epochs done at {t['s_per_epoch']:.0f} s/epoch "
                                   f"(its saved state, `bench progress`); hours left until the patience runs out, "
                                   f"at most {t['hours_left_most']:.1f} (the epoch cap)")


def _variant_hours(e: Entry, profile: dict, records: list[dict], mean: dict, cell: dict,
                   hours: float | None, lengths=None) -> tuple[float | None, str]:
    """(hours, basis) of variant ``e`` given its base model's ``hours`` on the dataset (see :func:`queue_rows`)."""
    mine, protocol = resolve(e, profile)
    base, base_protocol = resolve(Entry(e.dataset, e.base_model, e.seed, e.base_model), profile)
    changed = [f"{k} {base.get(k)} -> {mine.get(k)}" for k in sorted(COST_PARAMS) if mine.get(k) != base.get(k)]
    if protocol != base_protocol:
        changed.append(f"protocol {base_protocol} -> {protocol}")
    for (ds, name), h in sorted(mean.items()):
        if name == e.model and (ds, e.base_model) in mean and hours is not None:
            ratio = h / mean[(ds, e.base_model)]
            return hours * ratio, f"base x {ratio:.2f} (the two measured on {ds})"
    similar, nearest = similar_records(records, e.dataset, e.base_model, mine, base, _cost_like(profile, e.model))
    if similar or nearest or any(mine.get(k) != base.get(k) for k in SCHEDULE_PARAMS):
        # what else the variant changes: an epoch at another run's s/epoch is then only an estimate (the
        # authors' fixed padding width makes an epoch of attention_padding: release dearer)
        notes = list(_changes(mine, base))
        base_records = [r for r in records if r["dataset"] == e.dataset and r["model"] == e.base_model]
        ratio = 1.0
        batching = ("train_batch_size", "length_bucketing", "MAX_ITEM_LIST_LENGTH")
        if lengths is not None and any(mine.get(k) != base.get(k) for k in batching):
            ratio = (padded_tokens(lengths(e.dataset, mine), mine["train_batch_size"], mine.get("length_bucketing", True))
                     / padded_tokens(lengths(e.dataset, base), base["train_batch_size"],
                                     base.get("length_bucketing", True)))
        return scheduled_hours(mine, cell, similar, base_records, notes, nearest, ratio)
    return hours, "as its base" + (f"; rough: {', '.join(changed)}" if changed else "")


def finished_rows(results_dir, profile: str) -> list[dict]:
    """Per dataset: the ok records of the profile (runs finished) and their measured process-hours
    (:func:`record_hours`), from the store; the last row is the total."""
    by = {}
    for r in store.load_records(results_dir, profile):
        d = by.setdefault(r["dataset"], {"dataset": r["dataset"], "runs": 0, "hours": 0.0, "gpu": 0})
        d["runs"] += 1
        d["hours"] += record_hours(r)
        d["gpu"] += str((r.get("env") or {}).get("device") or "cpu") != "cpu"
    rows = [by[k] for k in sorted(by)]
    rows.append({"dataset": "all", "runs": sum(r["runs"] for r in rows), "hours": sum(r["hours"] for r in rows),
                 "gpu": sum(r["gpu"] for r in rows)})
    return rows


def render_queue(queue: list[dict], profile: str, finished: list[dict] | None = None) -> str:
    """``campaign-<profile>.md``: the runs finished and their hours, the runs left, projected hours, running total."""
    known = sum(q["hours"] or 0.0 for q in queue)
    body = [[i + 1, q["model"], q["dataset"], q["seed"], _h(q["hours"]), _h(q["cumulative"]), q["basis"]]
            for i, q in enumerate(queue)]
    lines = [f"# The campaign — profile `{profile}`", ""]
    if finished is not None:
        done = finished[-1] if finished else {"runs": 0, "hours": 0.0, "gpu": 0}
        lines += ["## Runs finished", "",
                  f"{done['runs']} runs have an ok record in `results/{profile}` ({done['gpu']} made on a GPU); "
                  f"they took {done['hours']:.0f} process-hours (each record's training, validations and final "
                  "ranking, `bench/cost.py` `record_hours`).", "",
                  md_table(["dataset", "runs finished", "process-hours", "of them on a GPU"],
                           [[r["dataset"], r["runs"], _h(r["hours"]), r["gpu"]] for r in finished]), ""]
    lines += [
        "## Runs left", "",
        f"{len(queue)} runs without a record, in the order `bench grid --profile {profile}` runs them (the "
        "profile's `priority:`, then grid order), datasets with data only. Hours are one process on the CPU "
        "that made the records, projected from them (`bench/cost.py`, `queue_rows`); two one-thread lanes on "
        "two cores halve the wall time. A run in training (it has a saved state) counts its hours left, from its own "
        "epochs so far.", "",
        md_table(["#", "run", "dataset", "seed", "h", "cumulative h", "basis"], body), "",
        f"Total left: {known:.0f} process-hours (runs with a projection)"
        + (f"; with the {finished[-1]['hours']:.0f} run so far, {known + finished[-1]['hours']:.0f} for the "
           "whole campaign." if finished else "."), ""]
    return "\n".join(lines)


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
    header = ["model"] + [f"{ds} h" for ds in datasets] + ["total h (records' CPU)", "runs done", "left h"]
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
    lines += [md_table(header, body), "", f"Total on the records' CPU (models with every cell known): {total:.0f} h "
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
    from bench.progress import in_progress

    queue = queue_rows(profile, results_dir, rows, data_dir, in_progress(profile_name, results_dir, data_dir))
    finished = finished_rows(results_dir, profile["name"])
    (folder / f"campaign-{profile['name']}.md").write_text(render_queue(queue, profile["name"], finished))
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
