"""Fault injection at the suite's write points, so kills and full disks are testable.

``BENCH_FAULT="point[@file]:n[:action][,...]"`` acts the ``n``-th time (1-based, counted per
process) that ``point`` is reached (for a file whose name is ``file``, when given):

points   ``open`` (before the temporary file is created), ``fsync`` (data written, before
         fsync), ``rename`` (fsynced, before the rename onto the target), ``rotate`` (a run
         state about to rotate ``state.pt`` to ``state.prev.pt``), ``record`` (``ranks.npz``
         written, ``record.json`` not yet), ``segment`` (a process registered as a segment,
         before training).
actions  ``kill`` (default: SIGKILL this process, as the OOM killer or a power cut would),
         ``enospc`` (raise ``OSError(ENOSPC)``, a full disk), ``eacces`` (``OSError(EACCES)``).

Unset (the normal case) every ``hit`` is one dictionary lookup.
"""
from __future__ import annotations

import errno
import os
import signal
from collections import Counter

_COUNTS: Counter = Counter()
ACTIONS = ("kill", "enospc", "eacces")


def _rules(spec: str) -> list[tuple[str, str | None, int, str]]:
    out = []
    for part in filter(None, (p.strip() for p in spec.split(","))):
        fields = part.split(":")
        point, _, name = fields[0].partition("@")
        n = int(fields[1]) if len(fields) > 1 else 1
        action = fields[2] if len(fields) > 2 else "kill"
        if action not in ACTIONS:
            raise ValueError(f"BENCH_FAULT: unknown action '{action}' (known: {', '.join(ACTIONS)})")
        out.append((point, name or None, n, action))
    return out


def hit(point: str, path=None) -> None:
    """Called at a write point; acts when ``$BENCH_FAULT`` names this occurrence."""
    spec = os.environ.get("BENCH_FAULT")
    if not spec:
        return
    name = os.path.basename(str(path)) if path is not None else None
    for rule_point, rule_name, n, action in _rules(spec):
        if rule_point != point or (rule_name is not None and rule_name != name):
            continue
        key = (rule_point, rule_name)
        _COUNTS[key] += 1
        if _COUNTS[key] != n:
            continue
        if action == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
        code = errno.ENOSPC if action == "enospc" else errno.EACCES
        raise OSError(code, os.strerror(code), str(path) if path is not None else None)


def reset() -> None:
    """Forget the counts (tests that set ``BENCH_FAULT`` in-process)."""
    _COUNTS.clear()
