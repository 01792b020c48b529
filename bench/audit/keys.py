"""What identifies a run: its id, its config key (as the runner would build it today, and
as its record stores it), and the fields in which two keys differ."""
from __future__ import annotations

import json

import numpy as np

from bench import store
from bench.profiles import Entry, _freeze


def run_id(r) -> str:
    """'<dataset>/<model>/seed-<S>' of an :class:`Entry` or a record."""
    if isinstance(r, Entry):
        return f"{r.dataset}/{r.model}/seed-{r.seed}"
    return f"{r.get('dataset')}/{r.get('model')}/seed-{r.get('seed')}"


def expected_key(entry: Entry, profile: dict, data_sha256: str, n_users_full: int) -> dict:
    """What ``bench.runner.run_entry`` hashes into ``config_hash`` for ``entry`` today."""
    from bench.runner import config_key

    return config_key(entry, profile, data_sha256, n_users_full)


def stored_key(record: dict, users: np.ndarray) -> dict:
    """The same key rebuilt from a record's own fields and its ranks' ``users``."""
    extra = {name: ev.get("params") for name, ev in (record.get("extra_evals") or {}).items()}
    return {"model": record.get("base_model"), "dataset": record.get("dataset"), "seed": record.get("seed"),
            "protocol": record.get("protocol"), "params": record.get("params"),
            "data_sha256": (record.get("data") or {}).get("sha256"), "budget": record.get("budget"),
            "extra_evals": extra, "users": store.config_hash({"u": np.asarray(users).tolist()})}


def entry_from_record(record: dict) -> Entry:
    """The grid entry a record was run from (its variant params frozen as in the profile)."""
    variant = record.get("variant") or {}
    params = variant.get("params") or {}
    return Entry(record["dataset"], record["model"], int(record["seed"]), record.get("base_model") or record["model"],
                 _freeze(params) if variant else ())


def short(value, n: int = 60) -> str:
    """``value`` as compact JSON (text as is), cut to ``n`` characters."""
    text = json.dumps(value, sort_keys=True, default=str) if not isinstance(value, str) else value
    return text if len(text) <= n else text[: n - 1] + "…"


def key_differences(expected: dict, stored: dict) -> list[str]:
    """One line per differing field ('params.<key>: now …, recorded …'), params key by key."""
    out = []
    for field in ("model", "dataset", "seed", "protocol", "data_sha256", "budget", "extra_evals", "users"):
        if json.dumps(expected.get(field), sort_keys=True, default=str) != json.dumps(stored.get(field), sort_keys=True,
                                                                                       default=str):
            what = "evaluated users" if field == "users" else field
            out.append(f"{what}: now {short(expected.get(field))}, recorded {short(stored.get(field))}")
    pe, ps = expected.get("params") or {}, stored.get("params") or {}
    for key in sorted(set(pe) | set(ps)):
        if json.dumps(pe.get(key), default=str) != json.dumps(ps.get(key), default=str):
            now, then = short(pe.get(key, "(absent)")), short(ps.get(key, "(absent)"))
            out.append(f"params.{key}: now {now}, recorded {then}")
    return out
