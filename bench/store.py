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
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import tempfile
from pathlib import Path

import numpy as np

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
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_run(folder: Path, record: dict, ranks: dict[str, np.ndarray] | None) -> None:
    """Write ranks first, then the record: a record exists only for a complete run."""
    folder = Path(folder)
    if ranks is not None:
        buffer = io.BytesIO()
        np.savez_compressed(buffer, **ranks)
        _atomic_write(folder / "ranks.npz", buffer.getvalue())
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
    path = Path(folder) / "record.json"
    if not path.exists():
        return None
    record = json.loads(path.read_text())
    record["_dir"] = str(folder)
    return record


def read_ranks(folder: Path) -> dict[str, np.ndarray]:
    with np.load(Path(folder) / "ranks.npz") as z:
        return {key: z[key] for key in z.files}


def iter_records(results_dir, profile: str):
    """Every record of a profile (ok and failed), in a stable order."""
    root = Path(results_dir) / profile
    for path in sorted(root.glob("*/*/seed-*/record.json")):
        record = read_record(path.parent)
        if record is not None:
            yield record


def load_records(results_dir, profile: str, status: str | None = "ok") -> list[dict]:
    return [r for r in iter_records(results_dir, profile) if status is None or r["status"] == status]
