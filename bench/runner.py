"""Run one grid entry: resolve its config, train, rank, write the record."""
from __future__ import annotations

import datetime as dt
import platform
import random
import subprocess
import time
import traceback
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from bench import engine, store
from bench.errors import BenchError
from bench.profiles import Entry
from bench.zoo import build_model, get_spec, resolve_params
from datasets.prepare import Sequences, load_card, load_sequences

REPO_ROOT = Path(__file__).resolve().parent.parent
HEAD_FRACTION = 0.2
HEAD_RULE = ("head = the ceil(20%) most frequent items by number of interactions in all users' "
             "training and validation parts (test items excluded), ties broken by smaller item id")


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


@lru_cache(maxsize=1)
def environment() -> dict:
    """Versions, machine and git revision recorded with every run."""
    import recbole

    def git(*args):
        try:
            return subprocess.run(["git", *args], cwd=REPO_ROOT, capture_output=True, text=True,
                                  timeout=10).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    cpu = ""
    try:
        cpu = next(l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name"))
    except (OSError, StopIteration):
        cpu = platform.processor()
    return {
        "python": platform.python_version(), "torch": torch.__version__, "recbole": recbole.__version__,
        "numpy": np.__version__, "platform": platform.platform(), "cpu": cpu,
        "threads": torch.get_num_threads(),
        "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
        "git_revision": git("rev-parse", "HEAD") or "unknown",
        "git_dirty": bool(git("status", "--porcelain", "--untracked-files=no")),
    }


def head_items(seqs: Sequences) -> np.ndarray:
    """(n_items,) bool, True for head items (see ``HEAD_RULE``)."""
    not_test = np.ones(len(seqs.items), dtype=bool)
    not_test[seqs.offsets[1:] - 1] = False
    counts = np.bincount(seqs.items[not_test], minlength=seqs.n_items)
    present = np.flatnonzero(np.bincount(seqs.items, minlength=seqs.n_items)[1:]) + 1
    order = present[np.lexsort((present, -counts[present]))]
    head = np.zeros(seqs.n_items, dtype=bool)
    head[order[: int(np.ceil(HEAD_FRACTION * len(present)))]] = True
    return head


def evaluated_users(n_users: int, max_users: int | None) -> np.ndarray:
    """The fixed user subset of a profile: independent of the seed, so runs pair up."""
    if not max_users or max_users >= n_users:
        return np.arange(n_users)
    return np.sort(np.random.default_rng(0).permutation(n_users)[:max_users])


def per_dataset(value, dataset: str):
    """A profile budget value: a plain value, or a dict by dataset with optional 'default'."""
    if isinstance(value, dict):
        return value.get(dataset, value.get("default"))
    return value


def resolve(entry: Entry, profile: dict) -> tuple[dict, str]:
    """(params, protocol) of an entry: defaults < YAML < profile < protocol < variant.

    ``model_overrides`` may name a model (``TiMiRec``) or a model on one dataset
    (``TiMiRec@ml-1m``); the latter wins.
    """
    spec = get_spec(entry.base_model)
    variant = entry.variant_params
    protocol = variant.pop("protocol", profile["protocol"])
    card = load_card(entry.dataset)
    max_len = min(card["max_seq_len"], profile["max_seq_len"].get(entry.dataset, card["max_seq_len"]))
    overrides = profile["model_overrides"]
    layers = [{"MAX_ITEM_LIST_LENGTH": max_len}, spec.params, profile["train"],
              overrides.get(spec.name, {}), overrides.get(f"{spec.name}@{entry.dataset}", {})]
    params = resolve_params(spec, *layers, protocol=protocol)
    params.update(variant)
    # a model YAML may ask for a shorter history than the dataset (Caser's L), never longer
    params["MAX_ITEM_LIST_LENGTH"] = min(max_len, spec.params.get("MAX_ITEM_LIST_LENGTH", max_len))
    return params, protocol


def config_key(entry: Entry, profile: dict, data_sha256: str, n_users_full: int) -> dict:
    """Everything that determines a run's result; ``config_hash`` is its SHA-256."""
    params, protocol = resolve(entry, profile)
    budget = {k: per_dataset(profile.get(k), entry.dataset) for k in ("max_users", "max_train_prefixes")}
    users = evaluated_users(n_users_full, budget["max_users"])
    extra = profile["extra_evals"].get(entry.base_model, {}) if not entry.variant else {}
    return {"model": entry.base_model, "dataset": entry.dataset, "seed": entry.seed, "protocol": protocol,
            "params": params, "data_sha256": data_sha256, "budget": budget, "extra_evals": extra,
            "users": store.config_hash({"u": users.tolist()})}


def run_entry(entry: Entry, profile: dict, results_dir, data_dir=None, force=False,
              progress=None) -> tuple[str, dict | None]:
    """Run ``entry`` unless a record with the same config hash exists.

    Returns (status, record) with status 'skipped', 'ok' or 'failed'.  A failure
    never overwrites a successful record: it is written to ``failed.json`` beside it.
    """
    folder = store.run_dir(results_dir, profile["name"], entry.dataset, entry.model, entry.seed)
    full = load_sequences(entry.dataset, data_dir)
    key = config_key(entry, profile, full.sha256, full.n_users)
    params, protocol, budget, extra = key["params"], key["protocol"], key["budget"], key["extra_evals"]
    users = evaluated_users(full.n_users, budget["max_users"])
    chash = store.config_hash(key)
    existing = store.read_record(folder)
    if not force and existing and existing.get("status") == "ok" and existing.get("config_hash") == chash:
        return "skipped", existing
    record = {
        "schema": store.SCHEMA, "profile": profile["name"], "dataset": entry.dataset, "model": entry.model,
        "base_model": entry.base_model, "seed": entry.seed, "protocol": protocol, "params": params,
        "variant": {"name": entry.model, "params": entry.variant_params} if entry.variant else None,
        "config_hash": chash, "budget": budget, "env": environment(),
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }
    try:
        record, ranks = _train_and_rank(entry, params, protocol, full, users, extra, record, progress)
    except Exception as err:  # recorded, never silently lost; the grid moves on
        record.update(status="failed", error={
            "type": type(err).__name__, "message": str(err), "traceback": traceback.format_exc()})
        target = folder if not (existing and existing.get("status") == "ok") else None
        if target is not None:
            store.write_run(folder, record, None)
        else:
            store.write_json(folder / "failed.json", record)
        return "failed", record
    record["ranks_sha256"] = store.ranks_digest(ranks)
    store.write_run(folder, record, ranks)
    (folder / "failed.json").unlink(missing_ok=True)
    return "ok", record


def _train_and_rank(entry, params, protocol, full, users, extra, record, progress):
    seqs = full.subset(users)
    max_len = params["MAX_ITEM_LIST_LENGTH"]
    train = engine.training_instances(seqs, max_len, record["budget"]["max_train_prefixes"])
    valid = engine.evaluation_instances(seqs, max_len, "valid")
    test = engine.evaluation_instances(seqs, max_len, "test")
    seed_everything(entry.seed)
    spec = get_spec(entry.base_model)
    model, _ = build_model(spec, params, full.n_items, full.n_users + 1)
    fit = engine.fit(model, params, train, valid, test, entry.seed, protocol, progress)
    head = head_items(full)
    ranks = {
        "users": seqs.users, "test": fit.test_ranks, "valid": fit.valid_ranks,
        "hist_len": (seqs.lengths - 1).astype(np.int32), "test_item": seqs.test_items.astype(np.int32),
        "test_is_head": head[seqs.test_items],
    }
    metrics = {"test": store.metrics_from_ranks(fit.test_ranks), "valid": store.metrics_from_ranks(fit.valid_ranks)}
    if protocol == "paper":
        for m, r in fit.test_ranks_by_metric.items():
            ranks[f"test@{m}"] = r
        metrics["test"] = {m: store.metrics_from_ranks(fit.test_ranks_by_metric.get(m, fit.test_ranks), [m])[m]
                           for m in store.METRICS}
    extra_evals = {}
    for name, overrides in extra.items():
        variant_model, _ = build_model(spec, {**params, **overrides}, full.n_items, full.n_users + 1)
        variant_model.load_state_dict(model.state_dict())
        seed_everything(entry.seed)
        t0 = time.perf_counter()
        r = engine.rank_targets(variant_model, test, int(params["eval_batch_size"]),
                                max_len if getattr(model, "fixed_length_input", False) else None)
        extra_evals[name] = {"params": overrides, "metrics": {"test": store.metrics_from_ranks(r)},
                             "eval_s": time.perf_counter() - t0, "n_users": int(len(r))}
        ranks[f"test@{name}"] = r
    n_epochs = len(fit.curve)
    record.update(
        status="ok", error=None, metrics=metrics, extra_evals=extra_evals,
        data={"name": entry.dataset, "sha256": full.sha256, "n_users": int(seqs.n_users),
              "n_users_full": int(full.n_users), "n_items": int(full.n_items - 1), "head_rule": HEAD_RULE},
        checkpoint={"rule": fit.checkpoint_rule, "best_epoch": fit.best_epoch,
                    "best_epoch_by_metric": fit.best_epoch_by_metric},
        curve=fit.curve,
        timing={"train_s": fit.train_s, "eval_s": fit.eval_s, "test_eval_s": fit.test_eval_s,
                "epochs_run": n_epochs, "s_per_epoch": fit.train_s / max(n_epochs, 1),
                "s_per_batch": fit.train_s / max(fit.n_batches, 1),
                "batches_per_epoch": fit.n_batches / max(n_epochs, 1),
                "n_train_instances": int(len(train)), "n_eval_users": int(len(test))},
    )
    return record, ranks
