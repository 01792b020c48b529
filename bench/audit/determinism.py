"""Determinism: a few runs re-run twice at a reduced budget into a temporary store, compared rank by rank.

The plan is the profile's ``determinism`` key over ``DETERMINISM_DEFAULTS`` (models,
dataset — default the smallest available —, seed, max_users, epochs).  Verdicts use the
vocabulary of ``bench reproduce`` (``bench.audit.verdict``): both runs are made on this
machine, so a run is *identical* or *different* (no environment difference can make a
change *equivalent*); the comparison with a stored record of the same config can be any
of the three.
"""
from __future__ import annotations

import copy
import dataclasses
import math
import tempfile
import time
from pathlib import Path

import numpy as np

from bench import store
from bench.audit.keys import run_id
from bench.errors import BenchError
from bench.fmt import error_text
from bench.profiles import Entry, _freeze, all_variants, grid
from datasets.prepare import DataError, load_card, load_sequences

DETERMINISM_DEFAULTS = {"models": ["DiffuRec", "SASRec"], "dataset": None, "seed": 0, "max_users": 200,
                        "epochs": 1}


def compare_ranks(a: dict, b: dict) -> dict:
    """Rank arrays of two runs: identical?, per-array number of differing users.

    a, b: {name: (n_users,) array} as read from ``ranks.npz``.
    """
    arrays = {}
    for key in sorted(set(a) | set(b)):
        if key not in a or key not in b:
            arrays[key] = "missing in one run"
        elif a[key].shape != b[key].shape:
            arrays[key] = f"shape {a[key].shape} vs {b[key].shape}"
        else:
            arrays[key] = int(np.sum(a[key] != b[key]))
    identical = all(v == 0 for v in arrays.values())
    n = len(a.get("users", b.get("users", [])))
    return {"identical": identical, "n_users": int(n), "arrays": arrays,
            "users_changed_test": arrays.get("test") if isinstance(arrays.get("test"), int) else None,
            "users_changed_valid": arrays.get("valid") if isinstance(arrays.get("valid"), int) else None,
            "users_changed_any": _users_changed(a, b)}


def _users_changed(a: dict, b: dict) -> int | None:
    """Users whose rank differs in any stored ranking (test, valid, test@…); None if none compare."""
    keys = [k for k in a if (k == "test" or k == "valid" or k.startswith("test@")) and k in b
            and a[k].shape == b[k].shape]
    if not keys:
        return None
    return int(np.sum(np.any(np.stack([a[k] != b[k] for k in keys]), axis=0)))


def _smallest_dataset(profile: dict, data_dir) -> str | None:
    from bench.grid import available_datasets

    present, _ = available_datasets(profile, data_dir)
    if not present:
        return None
    return min(present, key=lambda d: (load_card(d)["paper"].get("actions", math.inf), d))


def _entry_for(profile: dict, dataset: str, model: str, seed: int) -> tuple[Entry, bool]:
    """The grid entry of (dataset, model, seed), else the zoo model; (entry, in_grid)."""
    from bench.zoo import get_spec

    for e in grid(profile):
        if e.dataset == dataset and e.model.lower() == model.lower() and e.seed == seed:
            return e, True
    for var in all_variants(profile):
        if var["name"].lower() == model.lower():
            base = get_spec(var["model"]).name
            return Entry(dataset, var["name"], seed, base, _freeze(var.get("params", {}))), False
    spec = get_spec(model)
    return Entry(dataset, spec.name, seed, spec.name), False


def _rerun_twice(entry: Entry, reduced: dict, results_dir, profile_name: str, data_dir, row: dict,
                 device: str = "cpu") -> None:
    """Train ``entry`` twice into a temporary store; fill ``row`` with the comparison (and vs the stored run)."""
    from bench.audit.verdict import compare
    from bench.runner import run_entry

    with tempfile.TemporaryDirectory(prefix="bench-determinism-") as tmp:
        results = [run_entry(entry, reduced, Path(tmp) / attempt, data_dir, force=True, device=device,
                             state_dir=Path(tmp) / ".state") for attempt in ("a", "b")]
        if any(s != "ok" for s, _ in results):
            row.update(status="failed", error=error_text(next(r for s, r in results if s != "ok"), unknown="unknown"))
            return

        def folder(attempt):
            return store.run_dir(Path(tmp) / attempt, reduced["name"], entry.dataset, entry.model, entry.seed)

        cmp = compare_ranks(store.read_ranks(folder("a")), store.read_ranks(folder("b")))
        row.update(status="identical" if cmp["identical"] else "different", **cmp,
                   config_hash=results[0][1]["config_hash"])
        stored = store.read_record(store.run_dir(results_dir, profile_name, entry.dataset, entry.model, entry.seed))
        if stored and stored.get("status") == "ok" and stored.get("config_hash") == row["config_hash"]:
            vs = compare(store.read_ranks(stored["_dir"]), store.read_ranks(folder("a")), stored.get("env") or {},
                         results[0][1]["env"])
            row["vs_stored"] = {"verdict": vs["verdict"], "identical": vs["verdict"] == "identical",
                                "users_changed_any": vs["moved_any"],
                                "float_order_differences": vs["float_order_differences"]}
        else:
            row["vs_stored"] = None  # the stored run has another budget


def determinism_plan(profile: dict) -> dict:
    """The profile's ``determinism`` key over the defaults (dataset may still be None)."""
    return {**DETERMINISM_DEFAULTS, **(profile.get("determinism") or {})}


def determinism(profile: dict, results_dir, data_dir=None, device: str = "cpu") -> dict:
    """Re-run the determinism set twice at its reduced budget on ``device`` and compare ranks exactly.

    Each run's row carries ``seconds`` (wall time), a run-time measurement that the
    written audit leaves out.
    """
    from bench.runner import resolve_device

    plan = determinism_plan(profile)
    plan["dataset"] = plan.get("dataset") or _smallest_dataset(profile, data_dir)
    device = str(resolve_device(device))
    out = {"plan": plan, "device": device, "runs": [], "status": "not run", "reason": ""}
    if plan["dataset"] is None:
        out["reason"] = "no dataset of the profile is available"
        return out
    reduced = copy.deepcopy(profile)
    reduced["max_users"] = plan["max_users"]
    reduced["name"] = f"{profile['name']}-determinism"
    seed = int(plan["seed"])
    for model in plan["models"]:
        t0 = time.perf_counter()
        try:
            entry, in_grid = _entry_for(profile, plan["dataset"], model, seed)
            load_sequences(plan["dataset"], data_dir)
        except (BenchError, DataError) as err:
            out["runs"].append({"run": f"{plan['dataset']}/{model}/seed-{seed}", "status": "failed",
                                "error": str(err), "seconds": 0.0})
            continue
        entry = dataclasses.replace(entry, variant=_freeze({**entry.variant_params, "epochs": int(plan["epochs"])}))
        row = {"run": run_id(entry), "in_grid": in_grid}
        _rerun_twice(entry, reduced, results_dir, profile["name"], data_dir, row, device)
        row["seconds"] = round(time.perf_counter() - t0, 1)
        out["runs"].append(row)
    statuses = {r["status"] for r in out["runs"]}
    out["status"] = ("identical" if statuses == {"identical"} else "different" if "different" in statuses
                     else "failed" if statuses else "not run")
    return out
