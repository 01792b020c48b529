"""Run one grid entry: resolve its config, train, rank, write the record."""
from __future__ import annotations

import datetime as dt
import gzip
import hashlib
import os
import platform
import random
import subprocess
import time
import traceback
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from bench import engine, resume, store
from bench.errors import BenchError, WriteError
from bench.profiles import Entry
from bench.resume import RunState
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


def _git(*args) -> str:
    try:
        return subprocess.run(["git", *args], cwd=REPO_ROOT, capture_output=True, text=True,
                              timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return ""


# Changes under these paths do not change what a run computes; elsewhere they might.
NOT_CODE = (":(exclude)results", ":(exclude)reports", ":(exclude)README.md")


def code_diff() -> str:
    """Uncommitted changes that may change a run ('' when the code is committed): the diff of
    tracked files against HEAD, plus every untracked, not ignored file as a new file, so
    that applying it to the revision rebuilds the code that ran."""
    diff = _git("diff", "HEAD", "--binary", "--", ".", *NOT_CODE)
    for path in _git("ls-files", "--others", "--exclude-standard", "--", ".", *NOT_CODE).splitlines():
        diff += _git("diff", "--no-index", "--binary", "--", "/dev/null", path)
    return diff


def environment(device: str = "cpu") -> dict:
    """Versions, machine, device, precision flags and git revision recorded with every run.

    ``cpu_flags`` (vector extensions), ``cpu_capability`` (what torch's kernels dispatch
    to) and ``blas_torch`` / ``blas_numpy`` name what decides floating-point reduction
    order beside the thread count (``bench.machine``); records made before they were
    added lack them.  The thread count is read at each call (``bench reproduce`` sets it);
    the rest once per process and device.
    """
    return {**_static_environment(str(device)), "threads": torch.get_num_threads()}


@lru_cache(maxsize=4)
def _static_environment(device: str) -> dict:
    import recbole

    from bench import machine

    cpu = ""
    try:
        cpu = next(l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name"))
    except (OSError, StopIteration):
        cpu = platform.processor()
    dev = torch.device(device)
    return {
        "python": platform.python_version(), "torch": torch.__version__, "recbole": recbole.__version__,
        "numpy": np.__version__, "platform": platform.platform(), "cpu": cpu,
        "cpu_flags": machine.cpu_vector_flags(), "cpu_capability": machine.torch_cpu_capability(),
        "blas_torch": machine.torch_blas(), "blas_numpy": machine.numpy_blas(),
        "device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu",
        "precision": precision_flags(dev),
        "git_revision": _git("rev-parse", "HEAD").strip() or "unknown",
        "git_dirty": bool(code_diff()),
    }


def precision_flags(device: torch.device) -> dict:
    """The float settings in force: they decide how far GPU and CPU numbers may differ."""
    flags = {"float32_matmul_precision": torch.get_float32_matmul_precision(),
             "deterministic_algorithms": torch.are_deterministic_algorithms_enabled()}
    if device.type == "cuda":
        flags.update(cuda=torch.version.cuda, cuda_matmul_tf32=torch.backends.cuda.matmul.allow_tf32,
                     cudnn_tf32=torch.backends.cudnn.allow_tf32, cudnn=torch.backends.cudnn.version(),
                     cudnn_deterministic=torch.backends.cudnn.deterministic,
                     cudnn_benchmark=torch.backends.cudnn.benchmark)
    return flags


def resolve_device(name: str = "auto") -> torch.device:
    """'auto' -> CUDA when torch sees it, else the CPU; 'cuda' without CUDA is an error.
    A CUDA device switches this process to deterministic kernels (``deterministic_cuda``)."""
    if name not in ("auto", "cpu", "cuda") and not name.startswith("cuda:"):
        raise BenchError(f"--device {name}: expected auto, cpu, cuda or cuda:N")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise BenchError(f"--device {name}: torch {torch.__version__} sees no CUDA device "
                         f"(a CPU build, or no GPU here); use --device cpu or auto")
    if name.startswith("cuda"):
        deterministic_cuda()
    return torch.device(name)


def deterministic_cuda() -> None:
    """Same seed, same GPU -> same ranks.  Without this, SASRec trained twice on one H100
    (2026-11-27, ``reports/speed/gpu-nvidia-h100-80gb-hbm3-determinism.md``) differed in 2 of
    500 test ranks: some CUDA backward kernels accumulate atomically in varying order.
    ``warn_only``: an op without a deterministic CUDA kernel warns instead of failing a run.
    The CPU is left alone, so CPU records keep their numbers; the flags are recorded in
    ``env.precision``."""
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # read when cuBLAS starts
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False


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


BUDGET_KEYS = ("max_users", "max_train_prefixes")
# Budget keys that enter a run's config only where a profile sets them (older records stay current).
OPTIONAL_BUDGET_KEYS = ("stop_users",)


def config_key(entry: Entry, profile: dict, data_sha256: str, n_users_full: int) -> dict:
    """Everything that determines a run's result; ``config_hash`` is its SHA-256."""
    params, protocol = resolve(entry, profile)
    budget = {k: per_dataset(profile.get(k), entry.dataset) for k in BUDGET_KEYS}
    budget.update({k: per_dataset(profile[k], entry.dataset) for k in OPTIONAL_BUDGET_KEYS if k in profile})
    if params.get("validate_all_users") and "stop_users" in budget:
        budget["stop_users"] = None  # the paper protocol validates every user, as the release does
    users = evaluated_users(n_users_full, budget["max_users"])
    extra = profile["extra_evals"].get(entry.base_model, {}) if not entry.variant else {}
    return {"model": entry.base_model, "dataset": entry.dataset, "seed": entry.seed, "protocol": protocol,
            "params": params, "data_sha256": data_sha256, "budget": budget, "extra_evals": extra,
            "users": store.config_hash({"u": users.tolist()})}


def stopping_users(n_users: int, stop_users: int | None) -> np.ndarray | None:
    """Positions (among the evaluated users) of the fixed, seeded subset that early stopping
    watches; None = all of them.  Seed 1, independent of the run's seed, so every model and
    seed stops on the same users."""
    if not stop_users or stop_users >= n_users:
        return None
    return np.sort(np.random.default_rng(1).permutation(n_users)[:stop_users])


def run_entry(entry: Entry, profile: dict, results_dir, data_dir=None, force=False,
              progress=None, device="cpu", state_dir=None, save_every_s=None, notify=None
              ) -> tuple[str, dict | None]:
    """Run ``entry`` unless a record with the same config hash exists; resume it if its
    saved state exists (``bench.resume``).

    Returns (status, record) with status 'skipped', 'ok', 'failed' or 'busy' (another
    process is training it).  A failure never overwrites a successful record: it is
    written to ``failed.json`` beside it; the saved state is kept, so a rerun resumes.
    ``notify(text)`` receives one-line messages (resumed from epoch k, a damaged state).
    """
    notify = notify or (lambda text: None)
    folder = store.run_dir(results_dir, profile["name"], entry.dataset, entry.model, entry.seed)
    full = load_sequences(entry.dataset, data_dir)
    key = config_key(entry, profile, full.sha256, full.n_users)
    users = evaluated_users(full.n_users, key["budget"]["max_users"])
    chash = store.config_hash(key)
    existing = _existing_record(folder, force)
    if not force and existing and existing.get("status") == "ok" and existing.get("config_hash") == chash:
        return "skipped", existing
    device = resolve_device(str(device))
    lock = store.RunLock(folder)  # the run's own lock, beside its record; WriteError if unwritable
    try:
        lock.acquire()
    except store.RunBusy:
        return "busy", None
    try:
        return _locked_run(entry, profile, folder, full, key, chash, users, existing, force, progress, device,
                           state_dir, save_every_s, notify)
    finally:
        lock.release()


def _existing_record(folder: Path, force: bool) -> dict | None:
    """The run folder's record; a damaged one is an error (named), except under --force, which
    replaces it."""
    try:
        return store.read_record(folder)
    except store.DamagedFile:
        if force:
            return None
        raise


def _locked_run(entry, profile, folder, full, key, chash, users, existing, force, progress, device,
                state_dir, save_every_s, notify):
    """run_entry's work once the run's lock is held."""
    params, protocol, budget, extra = key["params"], key["protocol"], key["budget"], key["extra_evals"]
    store.clean_temporaries(folder)  # left by a process killed while it wrote the record
    existing = _existing_record(folder, force)  # another process may have finished it while we waited
    if not force and existing and existing.get("status") == "ok" and existing.get("config_hash") == chash:
        return "skipped", existing
    state = RunState(resume.state_dir(state_dir), chash,
                     resume.DEFAULT_EVERY_S if save_every_s is None else save_every_s, notify)
    try:
        state.acquire()
    except resume.StateBusy:
        return "busy", None
    if force:
        state.clear()
        state.acquire()
    code = code_diff()
    record = {
        "schema": store.SCHEMA, "profile": profile["name"], "dataset": entry.dataset, "model": entry.model,
        "base_model": entry.base_model, "seed": entry.seed, "protocol": protocol, "params": params,
        "variant": {"name": entry.model, "params": entry.variant_params} if entry.variant else None,
        "config_hash": chash, "budget": budget, "env": environment(str(device)),
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }
    if code:
        record["env"] = {**record["env"], "code_diff_sha256": hashlib.sha256(code.encode()).hexdigest()}
    try:
        record, ranks = _train_and_rank(entry, params, protocol, full, users, extra, record, progress,
                                        device, state, notify)
    except WriteError:  # a full disk or a lost folder is no result of the run: one line, state kept
        state.release()
        raise
    except Exception as err:  # recorded, never silently lost; the grid moves on
        state.release()
        record.update(status="failed", error={
            "type": type(err).__name__, "message": str(err), "traceback": traceback.format_exc()})
        target = folder if not (existing and existing.get("status") == "ok") else None
        if target is not None:
            store.write_run(folder, record, None)
        else:
            store.write_json(folder / "failed.json", record)
        return "failed", record
    except BaseException:
        state.release()
        raise
    record["ranks_sha256"] = store.ranks_digest(ranks)
    try:
        if code:  # the code that made the record is its revision plus this diff
            store.write_bytes(folder / "code.diff.gz", gzip.compress(code.encode(), mtime=0))
        else:
            (folder / "code.diff.gz").unlink(missing_ok=True)
        store.write_run(folder, record, ranks)
    except BaseException:  # the saved state stays: a rerun resumes from it
        state.release()
        raise
    (folder / "failed.json").unlink(missing_ok=True)
    state.clear()
    return "ok", record


STOPPING_RULE = ("early stopping watches validation NDCG@10 of a fixed subset of the evaluated users "
                 "(budget.stop_users of them, drawn with numpy seed 1, the same for every model and seed); "
                 "the chosen checkpoint then ranks every user's validation and test item")


def _start_segment(state: RunState, record: dict, notify) -> None:
    """Load the saved state (if any) and note this process as a new segment of the run."""
    state.load()
    env = record["env"]
    state.start_segment({
        "started": record["created"], "from_epoch": state.resumed_from or 0,
        "git_revision": env["git_revision"], "git_dirty": env["git_dirty"], "cpu": env["cpu"],
        "device": env["device"], "threads": env["threads"]})
    if state.resumed_from is not None:
        notify(f"resumed {record['dataset']}/{record['model']}/seed-{record['seed']} from epoch "
               f"{state.resumed_from} ({state.resumed_path})")


def _train_and_rank(entry, params, protocol, full, users, extra, record, progress, device, state, notify):
    seqs = full.subset(users)
    max_len = params["MAX_ITEM_LIST_LENGTH"]
    train = engine.training_instances(seqs, max_len, record["budget"]["max_train_prefixes"])
    valid = engine.evaluation_instances(seqs, max_len, "valid")
    test = engine.evaluation_instances(seqs, max_len, "test")
    watched = stopping_users(seqs.n_users, record["budget"].get("stop_users"))
    stop_valid = None if watched is None else valid.take(watched)
    seed_everything(entry.seed)
    spec = get_spec(entry.base_model)
    model, _ = build_model(spec, params, full.n_items, full.n_users + 1, device)
    _start_segment(state, record, notify)
    fit = engine.fit(model, params, train, valid, test, entry.seed, protocol, progress,
                     stop_valid=stop_valid, device=device, state=state)
    head = head_items(full)
    ranks = {
        "users": seqs.users, "test": fit.test_ranks, "valid": fit.valid_ranks,
        "hist_len": (seqs.lengths - 1).astype(np.int32), "test_item": seqs.test_items.astype(np.int32),
        "test_is_head": head[seqs.test_items],
    }
    metrics = {"test": store.metrics_from_ranks(fit.test_ranks), "valid": store.metrics_from_ranks(fit.valid_ranks)}
    if fit.checkpoint_rule == "per-metric":
        for m, r in fit.test_ranks_by_metric.items():
            ranks[f"test@{m}"] = r
        metrics["test"] = {m: store.metrics_from_ranks(fit.test_ranks_by_metric.get(m, fit.test_ranks), [m])[m]
                           for m in store.METRICS}
    extra_evals = {}
    for name, overrides in extra.items():
        variant_model, _ = build_model(spec, {**params, **overrides}, full.n_items, full.n_users + 1, device)
        variant_model.load_state_dict(model.state_dict())
        variant_model.to(device)
        seed_everything(entry.seed)
        t0 = time.perf_counter()
        r = engine.rank_targets(variant_model, test, int(params["eval_batch_size"]),
                                max_len if getattr(model, "fixed_length_input", False) else None, device)
        extra_evals[name] = {"params": overrides, "metrics": {"test": store.metrics_from_ranks(r)},
                             "eval_s": time.perf_counter() - t0, "n_users": int(len(r))}
        ranks[f"test@{name}"] = r
    n_epochs = len(fit.curve)
    record.update(
        status="ok", error=None, metrics=metrics, extra_evals=extra_evals,
        data={"name": entry.dataset, "sha256": full.sha256, "n_users": int(seqs.n_users),
              "n_users_full": int(full.n_users), "n_items": int(full.n_items - 1), "head_rule": HEAD_RULE},
        checkpoint={"rule": fit.checkpoint_rule, "best_epoch": fit.best_epoch,
                    "best_epoch_by_metric": fit.best_epoch_by_metric, "stage": fit.stage,
                    "stopped_by": fit.stopped_by, "converged": fit.stopped_by == "patience",
                    "stopping_users": None if watched is None else int(len(watched)),
                    "stopping_rule": STOPPING_RULE if watched is not None else None},
        resume={"segments": state.meta["segments"], "state_saves": state.meta["saves"],
                "state_save_s": state.meta["save_s"]},
        curve=fit.curve,
        timing={"train_s": fit.train_s, "eval_s": fit.eval_s, "test_eval_s": fit.test_eval_s,
                "epochs_run": n_epochs, "s_per_epoch": fit.train_s / max(n_epochs, 1),
                "s_per_batch": fit.train_s / max(fit.n_batches, 1),
                "batches_per_epoch": fit.n_batches / max(n_epochs, 1),
                "n_train_instances": int(len(train)), "n_eval_users": int(len(test))},
    )
    return record, ranks
