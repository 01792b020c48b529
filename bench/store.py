"""The results store: one folder per run, written atomically.

Layout: ``<results>/<profile>/<dataset>/<model>/seed-<S>/`` with

``record.json`` — everything about the run (see ``RECORD_FIELDS``), and
``ranks.npz``   — per-user arrays, aligned, ``np.savez_compressed``:
    users (int64, user index in the full dataset), test / valid (int32, 0-based rank
    of the held-out item among all items), hist_len (int32, length of the test-time
    history before truncation), test_item (int32), test_is_head (bool), and optional
    ``test@<name>`` arrays (per-metric checkpoints of the paper protocol, extra
    evaluations such as other reverse-step counts).

A rank r gives HR@k = [r < k] and NDCG@k = [r < k] / log2(r + 2): every metric,
breakdown and paired test downstream is computed from these arrays alone.

``.lock`` (present while a process trains the run) is the run's lock (``RunLock``): it
belongs to the record, so two processes never train one run whatever their state folders.
Every write is atomic (``_atomic_write``: temporary ``.<name>.*`` file, fsync, rename); a
kill leaves at most a temporary file, which the next run of that folder deletes
(``clean_temporaries``).  A file that cannot be read raises ``DamagedFile`` naming it; one
that cannot be written raises ``WriteError`` naming it.  See docs/resuming.md.
"""
from __future__ import annotations

import fcntl
import hashlib
import io
import json
import os
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from bench import faults
from bench.errors import DamagedFile, WriteError

SCHEMA = 1
RECORD_FIELDS = (
    "schema", "status", "profile", "dataset", "model", "base_model", "seed", "protocol",
    "params", "config_hash", "data", "env", "metrics", "checkpoint", "curve", "timing",
    "extra_evals", "error", "created", "ranks_sha256",
)
METRICS = ("HR@5", "HR@10", "HR@20", "NDCG@5", "NDCG@10", "NDCG@20")


def metrics_from_ranks(ranks: np.ndarray, names=METRICS) -> dict[str, float]:
    """HR@k and NDCG@k means from 0-based ranks (any k named ``HR@k``/``NDCG@k``)."""
    ranks = np.asarray(ranks, dtype=np.float64)
    out = {}
    for name in names:
        kind, k = name.split("@")
        hit = ranks < int(k)
        value = hit if kind == "HR" else hit / np.log2(ranks + 2.0)
        out[name] = float(np.mean(value)) if len(ranks) else float("nan")
    return out


def per_user_metric(ranks: np.ndarray, name: str) -> np.ndarray:
    """(n_users,) float64 per-user value of metric ``name`` (mean = the metric)."""
    kind, k = name.split("@")
    ranks = np.asarray(ranks, dtype=np.float64)
    hit = ranks < int(k)
    return hit.astype(np.float64) if kind == "HR" else hit / np.log2(ranks + 2.0)


def converged(record: dict) -> bool:
    """Did the run stop by early stopping (not at the epoch cap)?  Records made before
    ``checkpoint.converged`` existed: it stopped before its epoch cap."""
    flag = (record.get("checkpoint") or {}).get("converged")
    if flag is not None:
        return bool(flag)
    epochs = (record.get("params") or {}).get("epochs")
    return not epochs or int((record.get("timing") or {}).get("epochs_run", 0)) < int(epochs)


def config_hash(payload: dict) -> str:
    """SHA-256 of the canonical JSON of what determines a run's result."""
    text = json.dumps(payload, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def ranks_digest(ranks: dict) -> str:
    """SHA-256 over every array of a ``ranks.npz`` (name, dtype, shape, bytes; sorted by name).

    Stored as ``record["ranks_sha256"]`` so that an edited rank is caught even when it
    changes no metric.
    """
    digest = hashlib.sha256()
    for name in sorted(ranks):
        arr = np.ascontiguousarray(ranks[name])
        digest.update(f"{name}|{arr.dtype.str}|{arr.shape}|".encode())
        digest.update(arr.tobytes())
    return digest.hexdigest()


def run_dir(results_dir, profile: str, dataset: str, model: str, seed: int) -> Path:
    return Path(results_dir) / profile / dataset / model / f"seed-{seed}"


def _atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` whole or not at all: a temporary file beside it, fsync, rename.

    Raises ``WriteError`` naming ``path`` (disk full, no permission, ...); the file that was
    there before is then untouched and the temporary file removed.
    """
    path = Path(path)
    tmp = None
    try:
        faults.hit("open", path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            faults.hit("fsync", path)
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)
        faults.hit("rename", path)
        os.replace(tmp, path)
    except OSError as err:
        _discard(tmp)
        raise WriteError.of(path, err) from None
    except BaseException:
        _discard(tmp)
        raise


def _discard(tmp) -> None:
    if tmp is not None and os.path.exists(tmp):
        os.unlink(tmp)


# Files of a run folder written through _atomic_write: their temporaries are ".<name>.<random>".
RUN_FILES = ("ranks.npz", "record.json", "failed.json", "code.diff.gz")


def clean_temporaries(folder: Path, names=RUN_FILES) -> list[Path]:
    """Delete the temporary files a killed write left in ``folder`` (call it holding the lock)."""
    removed = []
    for name in names:
        for tmp in Path(folder).glob(f".{name}.*"):
            tmp.unlink(missing_ok=True)
            removed.append(tmp)
    return removed


class RunBusy(Exception):
    """Another process holds the run's lock."""


class RunLock:
    """``flock`` on ``<run folder>/.lock``: held by the one process training that run.

    ``acquire()`` creates the folder (so an unwritable results store is found before any
    training: ``WriteError``), or raises ``RunBusy``.  ``release()`` deletes the file; a
    process that locked a file deleted meanwhile retries on the new one, so two processes
    never both hold the lock.
    """

    def __init__(self, folder: Path):
        self.path = Path(folder) / ".lock"
        self._handle = None

    def acquire(self) -> None:
        while True:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                handle = open(self.path, "a+")
            except OSError as err:
                raise WriteError.of(self.path.parent, err, "results folder not writable:") from None
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.close()
                raise RunBusy(str(self.path)) from None
            try:
                same = os.stat(self.path).st_ino == os.fstat(handle.fileno()).st_ino
            except FileNotFoundError:
                same = False
            if same:
                self._handle = handle
                check_writable(self.path.parent, "results folder not writable:")
                return
            handle.close()  # released and deleted between our open and our flock: take the new one

    def release(self) -> None:
        if self._handle is not None:
            self.path.unlink(missing_ok=True)
            fcntl.flock(self._handle, fcntl.LOCK_UN)
            self._handle.close()
            self._handle = None


def check_writable(folder: Path, what: str = "cannot write in") -> None:
    """Create and delete a temporary file in ``folder`` (``WriteError`` naming it if that fails)."""
    try:
        faults.hit("open", Path(folder) / ".probe")
        Path(folder).mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".probe.")
        os.close(fd)
        os.unlink(tmp)
    except OSError as err:
        raise WriteError.of(folder, err, what) from None


def write_run(folder: Path, record: dict, ranks: dict[str, np.ndarray] | None) -> None:
    """Write ranks first, then the record: a record exists only for a complete run."""
    folder = Path(folder)
    if ranks is not None:
        buffer = io.BytesIO()
        np.savez_compressed(buffer, **ranks)
        _atomic_write(folder / "ranks.npz", buffer.getvalue())
        faults.hit("record", folder / "record.json")
    write_json(folder / "record.json", record)


def write_bytes(path: Path, data: bytes) -> None:
    """Atomically write ``data``."""
    _atomic_write(Path(path), data)


def write_json(path: Path, obj) -> None:
    """Atomically write ``obj`` as JSON."""
    _atomic_write(Path(path), json.dumps(obj, indent=1, sort_keys=True, default=_json_default).encode())


def _json_default(value):
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)


def read_record(folder: Path) -> dict | None:
    """The record of a run folder (None if it has none); ``DamagedFile`` naming the file when it is
    not a JSON object."""
    path = Path(folder) / "record.json"
    if not path.exists():
        return None
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise DamagedFile(f"{path}: damaged record ({_why(err)}); delete it (or rerun with --force) "
                          "to make it again") from None
    if not isinstance(record, dict):
        raise DamagedFile(f"{path}: damaged record (a JSON {type(record).__name__}, not an object)")
    record["_dir"] = str(folder)
    return record


def _why(err: Exception) -> str:
    if isinstance(err, OSError):
        return err.strerror or str(err)
    return f"{type(err).__name__}: {err}".replace("\n", " ")


def read_ranks(folder: Path) -> dict[str, np.ndarray]:
    """Every array of a run's ``ranks.npz``; ``DamagedFile`` naming it when it is unreadable
    (``FileNotFoundError`` when it is absent)."""
    path = Path(folder) / "ranks.npz"
    try:
        with np.load(path) as z:
            return {key: z[key] for key in z.files}
    except FileNotFoundError:
        raise
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as err:
        raise DamagedFile(f"{path}: damaged ranks file ({_why(err)})") from None


def iter_records(results_dir, profile: str, problems: list | None = None):
    """Every record of a profile (ok and failed), in a stable order.

    A damaged record raises ``DamagedFile``; with ``problems`` (a list) it is left out and
    its one-line description appended there instead.
    """
    root = Path(results_dir) / profile
    for path in sorted(root.glob("*/*/seed-*/record.json")):
        try:
            record = read_record(path.parent)
        except DamagedFile as err:
            if problems is None:
                raise
            problems.append(str(err))
            continue
        if record is not None:
            yield record


def load_records(results_dir, profile: str, status: str | None = "ok", problems: list | None = None) -> list[dict]:
    return [r for r in iter_records(results_dir, profile, problems) if status is None or r.get("status") == status]
