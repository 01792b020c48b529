"""Saved training state, so that a killed run resumes from its last saved epoch.

One folder per run under the state directory (``--state-dir``, else ``$BENCH_STATE_DIR``,
else ``.cache/runs`` in the repository; git-ignored), named by the run's config hash:

``state.pt``       the latest state: a SHA-256 line, then ``torch.save`` of the payload
                   (model, optimizers, schedulers, the fit's progress, every RNG state,
                   and ``meta``: the config hash and the process segments so far);
``state.prev.pt``  the state before it, the fallback when ``state.pt`` is damaged;
``lock``           held (``flock``) by the process training the run, so that two grids
                   over one store never train the same run.

Writes are atomic (temporary file, fsync, rename), so a kill mid-write leaves the
previous state whole.  A state whose digest or config hash does not match is reported
in one line naming the file and is never loaded.  The folder is deleted once the run's
record is written.
"""
from __future__ import annotations

import fcntl
import hashlib
import io
import os
import shutil
import time
from pathlib import Path

import torch

from bench.store import _atomic_write

REPO_ROOT = Path(__file__).resolve().parent.parent
FORMAT = 1
# Seconds between saves.  A save happens at the end of the first epoch that ends at least
# this long after the previous one: every epoch for full-data runs (minutes per epoch),
# every few minutes for small ones, where saving every epoch would cost more than 5 %.
DEFAULT_EVERY_S = 120.0


def state_dir(given=None) -> Path:
    """--state-dir, else $BENCH_STATE_DIR, else .cache/runs in the repository."""
    return Path(given or os.environ.get("BENCH_STATE_DIR") or REPO_ROOT / ".cache" / "runs")


class StateBusy(Exception):
    """Another process holds the run's lock."""


class RunState:
    """The saved state of one run (see module doc).

    ``load()`` returns the payload to resume from (or None) and sets ``resumed_from``
    (the epoch the run continues at); ``maybe_save(make_payload, result)`` saves when
    ``every_s`` seconds have passed since the last save (or ``force``); ``clear()``
    deletes the folder.  ``meta`` travels with every save.
    """

    def __init__(self, root, config_hash: str, every_s: float = DEFAULT_EVERY_S, notify=print):
        self.folder = Path(root) / config_hash[:24]
        self.config_hash = config_hash
        self.every_s = float(every_s)
        self.notify = notify
        self.meta = {"config_hash": config_hash, "segments": [], "save_s": 0.0, "saves": 0}
        self.resumed_from = None
        self._loaded = False
        self._payload = None
        self._last = time.monotonic()
        self._lock = None

    @property
    def path(self) -> Path:
        return self.folder / "state.pt"

    # ------------------------------------------------------------------ lock
    def acquire(self) -> None:
        """Take the run's lock or raise ``StateBusy``."""
        self.folder.mkdir(parents=True, exist_ok=True)
        handle = open(self.folder / "lock", "a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            raise StateBusy(str(self.folder)) from None
        self._lock = handle

    def release(self) -> None:
        if self._lock is not None:
            fcntl.flock(self._lock, fcntl.LOCK_UN)
            self._lock.close()
            self._lock = None

    # ------------------------------------------------------------------ load / save
    def load(self) -> dict | None:
        """The newest intact state of this config, or None (then the run starts afresh).

        Read once: later calls return the same payload."""
        if not self._loaded:
            self._payload, self._loaded = self._read_newest(), True
        return self._payload

    def _read_newest(self) -> dict | None:
        for path in (self.path, self.folder / "state.prev.pt"):
            if not path.exists():
                continue
            payload, why = _read(path)
            if payload is not None and payload.get("meta", {}).get("config_hash") != self.config_hash:
                payload, why = None, "it belongs to another config"
            if payload is None:
                self.notify(f"run state {path} not used: {why}")
                continue
            self.meta = payload["meta"]
            self.resumed_from = int(payload["progress"].epoch)
            return payload
        return None

    def maybe_save(self, make_payload, result=None, force: bool = False) -> bool:
        """Save ``make_payload()`` if ``every_s`` has passed since the last save (or ``force``)."""
        if not force and time.monotonic() - self._last < self.every_s:
            return False
        t0 = time.perf_counter()
        payload = dict(make_payload(), meta=self.meta, format=FORMAT)
        buffer = io.BytesIO()
        torch.save(payload, buffer)
        blob = buffer.getvalue()
        self.folder.mkdir(parents=True, exist_ok=True)
        if self.path.exists():
            os.replace(self.path, self.folder / "state.prev.pt")
        _atomic_write(self.path, hashlib.sha256(blob).hexdigest().encode() + b"\n" + blob)
        self.meta["save_s"] += time.perf_counter() - t0  # carried by the next save: totals over segments
        self.meta["saves"] += 1
        self._last = time.monotonic()
        return True

    def clear(self) -> None:
        self.release()
        shutil.rmtree(self.folder, ignore_errors=True)


def _read(path: Path) -> tuple[dict | None, str]:
    """(payload, '') or (None, why): the digest line must match the bytes after it."""
    try:
        data = path.read_bytes()
    except OSError as err:
        return None, f"unreadable ({err.strerror})"
    digest, sep, blob = data.partition(b"\n")
    if not sep or hashlib.sha256(blob).hexdigest().encode() != digest:
        return None, "damaged (SHA-256 mismatch: truncated or corrupt)"
    try:
        payload = torch.load(io.BytesIO(blob), map_location="cpu", weights_only=False)
    except Exception as err:  # a digest-valid file that torch cannot read: another version
        return None, f"unreadable by torch {torch.__version__} ({type(err).__name__})"
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        return None, f"not a format-{FORMAT} run state"
    return payload, ""
