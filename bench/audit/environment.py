"""Environment: the versions every record was made with, against the ones running the check."""
from __future__ import annotations

from collections import Counter

from bench.audit.keys import run_id

VERSION_KEYS = ("python", "torch", "recbole", "numpy")
ENV_KEYS = ("python", "torch", "recbole", "numpy", "device", "cpu", "git_revision", "git_dirty")


def environment_section(records: list) -> dict:
    """{current, keys, groups (distinct record environments with run counts), flagged (version differences)}."""
    from bench.runner import environment

    current = dict(environment())
    groups = Counter()
    flagged = []
    for r in records:
        env = r.get("env") or {}
        groups[tuple(str(env.get(k, "–")) for k in ENV_KEYS)] += 1
        diff = {k: {"record": env.get(k), "now": current.get(k)} for k in VERSION_KEYS
                if str(env.get(k)) != str(current.get(k))}
        if diff:
            flagged.append({"run": run_id(r), "differs": diff})
    return {"current": current, "keys": list(ENV_KEYS),
            "groups": [{**dict(zip(ENV_KEYS, key)), "runs": n} for key, n in groups.most_common()],
            "flagged": flagged}
