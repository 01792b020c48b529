"""Saved training state, so that a killed run resumes from its last saved epoch.

One folder per run under the state directory (``--state-dir``, else ``$BENCH_STATE_DIR``,
else ``.cache/runs`` in the repository; git-ignored), named by the run's config hash:

``state.pt``       the latest state: a SHA-256 line, then ``torch.save`` of the payload
                   (model, optimizers, schedulers, the fit's progress, every RNG state,
                   and ``meta``: the config hash and the process segments so far);
``state.prev.pt``  the state before it, the fallback when ``state.pt`` is damaged;
``segments.json``  every process that worked on the run (``meta.segments``), written when the
                   process starts, so a process killed before its first save still counts;
``lock``           held (``flock``) by the process training the run, so that two grids
                   over one state folder never train the same run (the run's record folder
                   has its own lock, ``bench.store.RunLock``, which the runner takes first).

A save writes the new state to a temporary file (fsync) *before* it rotates ``state.pt``
to ``state.prev.pt`` and renames the new one in, so a kill at any point leaves at least
one whole state.  A ``state.pt`` found damaged is never rotated over a good
``state.prev.pt``: the next save replaces it and keeps the previous one.  A state whose
digest or config hash does not match is reported in one line naming the file and is never
loaded; the resume line names the file the run resumed from.  A failed write (disk full)
raises ``WriteError`` naming the file, with the earlier states untouched.  The folder is
deleted once the run's record is written.  docs/resuming.md states what the tests prove.
"""
from __future__ import annotations

import fcntl
import hashlib
import io
import os
import shutil
import time
from pathlib import Path

import json

import torch

from bench import faults
from bench.errors import WriteError
from bench.store import _atomic_write, clean_temporaries

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
        self.resumed_path = None   # the file the run resumed from
        self._latest_bad = False   # state.pt was found damaged: never rotate it over state.prev.pt
        self._loaded = False
        self._payload = None
        self._last = time.monotonic()
        self._lock = None

    @property
    def path(self) -> Path:
        return self.folder / "state.pt"

    # ------------------------------------------------------------------ lock
    def acquire(self) -> None:
        """Take the run's lock or raise ``StateBusy``; ``WriteError`` naming the folder when the
        state directory cannot be written (found before any training).  Deletes the temporary
        files a killed save left."""
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            handle = open(self.folder / "lock", "a+")
        except OSError as err:
            raise WriteError.of(self.folder, err, "state directory not writable:") from None
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            raise StateBusy(str(self.folder)) from None
        self._lock = handle
        from bench.store import check_writable

        check_writable(self.folder, "state directory not writable:")
        clean_temporaries(self.folder, ("state.pt", ".state.pt.new", "segments.json"))

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
                self._latest_bad = self._latest_bad or path == self.path
                continue
            self.meta = payload["meta"]
            self.meta.setdefault("saves", 0)
            self.resumed_from = int(payload["progress"].epoch)
            self.resumed_path = path
            return payload
        return None

    @property
    def segments_path(self) -> Path:
        return self.folder / "segments.json"

    def start_segment(self, segment: dict) -> None:
        """Register this process as a segment of the run, on disk at once.

        ``segments.json`` holds every segment so far, those killed before their first save
        included (a state's ``meta.segments`` only knows the segments up to that save)."""
        self.load()
        known = self.meta.get("segments", [])
        try:
            listed = json.loads(self.segments_path.read_text())
            if isinstance(listed, list) and len(listed) >= len(known) and listed[:len(known)] == known:
                known = listed
        except (OSError, ValueError):
            pass  # absent (a fresh run, or a state from before segments.json) or damaged: the state's list
        self.meta["segments"] = [*known, segment]
        _atomic_write(self.segments_path, json.dumps(self.meta["segments"]).encode())
        faults.hit("segment", self.segments_path)

    def maybe_save(self, make_payload, result=None, force: bool = False) -> bool:
        """Save ``make_payload()`` if ``every_s`` has passed since the last save (or ``force``)."""
        if not force and time.monotonic() - self._last < self.every_s:
            return False
        t0 = time.perf_counter()
        # the saved meta counts this save: a process killed after it still has it counted
        meta = {**self.meta, "saves": self.meta.get("saves", 0) + 1}
        payload = dict(make_payload(), meta=meta, format=FORMAT)
        buffer = io.BytesIO()
        torch.save(payload, buffer)
        blob = buffer.getvalue()
        self._write(hashlib.sha256(blob).hexdigest().encode() + b"\n" + blob)
        self.meta = meta
        self.meta["save_s"] += time.perf_counter() - t0  # carried by the next save: totals over segments
        self._last = time.monotonic()
        return True

    def _write(self, data: bytes) -> None:
        """New state in a temporary file first; then rotate (unless ``state.pt`` is known bad) and
        rename.  A kill anywhere leaves ``state.pt`` or ``state.prev.pt`` whole."""
        new = self.folder / ".state.pt.new"
        _atomic_write(new, data)
        try:
            if self.path.exists() and not self._latest_bad:
                faults.hit("rotate", self.path)
                os.replace(self.path, self.folder / "state.prev.pt")
            os.replace(new, self.path)
        except OSError as err:
            raise WriteError.of(self.path, err) from None
        self._latest_bad = False

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
