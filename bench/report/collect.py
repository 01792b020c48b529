"""Read a profile's records and ranks once into :class:`Collected`.

Every table and figure reads this object (through :class:`bench.report.context.Context`);
nothing downstream opens a record or a ``ranks.npz`` again.  Here also live the
names and order the report uses for models (the paper's order) and the rules that
sort a record into Table 2 ('main'), Table 3 ('ablation:<label>') or neither.
"""
from __future__ import annotations

import json
import sys
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import pandas as pd

from bench import stats, store

METRICS = store.METRICS
PAPER_MODELS = ("GRU4Rec", "Caser", "SASRec", "BERT4Rec", "ComiRec", "TiMiRec", "SVAE", "ACVAE",
                "STOSA", "DiffuRec")
TARGET = "DiffuRec"
ABLATIONS = ("w GRU", "w R*", "DiffuRec")  # the paper's row order in Table 3


@dataclass
class Collected:
    """Everything the tables and figures need, read from the store once.

    runs:      one row per ok record: dataset, model, base_model, variant (name or None),
               seed, protocol, dir, role ('main' = Table 2 model, 'ablation:<label>', 'other')
    values:    seed-value frame (dataset, model, seed, metric, value) of the test metrics
    per_user:  {(dataset, model): (len(METRICS), n_users) seed-averaged per-user values}
    per_seed:  {(dataset, model): {seed: (len(METRICS), n_users) float32 per-user values}}: what the
               headline test (``bench.stats.hierarchical_bootstrap``) resamples
    breakdown: per-run breakdown rows (dataset, model, seed, kind, group, metric, value, n_users)
    lent:      the relabelled copies ``collect(lend=)`` tabled as runs (not in ``records``)
    """

    records: list
    failed: list
    failed_reruns: list
    runs: pd.DataFrame
    values: pd.DataFrame
    per_user: dict
    breakdown: pd.DataFrame
    length_labels: dict
    main_models: dict            # dataset -> [model names of Table 2, paper order]
    ablation_models: dict        # dataset -> {label: model name}
    problems: list = field(default_factory=list)
    lent: list = field(default_factory=list)
    left_out: list = field(default_factory=list)  # ok records not tabled: ranks missing, damaged or edited
    per_seed: dict = field(default_factory=dict)

    @property
    def ok_records(self) -> list:
        return [r for r in self.records if r.get("status") == "ok"]


# =========================================================================== record roles
def order_models(names: Iterable[str], base_of: dict) -> list[str]:
    """Models in the paper's order of their base model, then by name."""
    rank = {m: i for i, m in enumerate(PAPER_MODELS)}
    return sorted(set(names), key=lambda m: (rank.get(base_of.get(m, m), len(rank)), m))


def variant_keys(record: dict) -> set:
    """The params a variant record overrides (empty for a base run)."""
    variant = record.get("variant") or {}
    return set((variant.get("params") or {}).keys())


def is_main(record: dict) -> bool:
    """A base run (no variant): a Table 2 model."""
    return not record.get("variant")


def ablation_label(record: dict) -> str | None:
    """'w GRU' / 'w R*' for a DiffuRec variant that is one of the paper's ablations."""
    if record.get("base_model") != TARGET or is_main(record):
        return None
    params = record.get("params") or {}
    gru = str(params.get("approximator", "")).lower() == "gru"
    rstar = str(params.get("rounding", "")).lower() == "neg_sq_distance"
    if gru and not rstar:
        return "w GRU"
    if rstar and not gru:
        return "w R*"
    return None


def _choose(models_by_label: dict, variant_sizes: dict) -> dict:
    """One model per ablation label: the one overriding fewest params, then by name."""
    return {label: sorted(names, key=lambda m: (variant_sizes.get(m, 0), m))[0]
            for label, names in models_by_label.items() if names}


def per_metric_ranks(ranks: dict, metric: str) -> np.ndarray:
    """Ranks behind ``metric``: the paper protocol's ``test@<metric>`` checkpoint if stored."""
    return ranks.get(f"test@{metric}", ranks["test"])


# =========================================================================== collection
def _failed_reruns(results_dir, profile: str) -> list:
    """``failed.json`` beside an ok record: a re-run that failed (the ok record is kept)."""
    out = []
    for path in sorted((Path(results_dir) / profile).glob("*/*/seed-*/failed.json")):
        try:
            rec = json.loads(path.read_text())
        except (OSError, ValueError):
            rec = {"error": {"message": f"unreadable {path}"}}
        rec["_dir"] = str(path.parent)
        out.append(rec)
    return out


def extra_eval_of(name: str) -> tuple[str, str] | None:
    """``"DiffuRec@x_T=0"`` -> ("DiffuRec", "x_T=0"): a model's extra evaluation read as a model of its own."""
    base, sep, ev = name.partition("@")
    return (base, ev) if sep and base and ev else None


def collect(results_dir, profile: str, controls: Iterable[str] = (),
            lend: Callable[[list], list] | None = None) -> Collected:
    """Read the profile's records and needed ranks (each ``ranks.npz`` once).

    controls: the controls table's models, whose per-user values are read too.  A name
    ``<model>@<extra evaluation>`` is collected as a model of its own: seed values from the
    record's ``extra_evals``, per-user values from its ``test@<extra evaluation>`` ranks, so
    it pairs with the run user by user.  ``lend(ok records)`` returns relabelled copies of runs
    that stand for runs not made under their own name (``tuning.stand_in_runs``): they are
    tabled like runs, but ``records`` (what the index and the audit count) holds only real ones.
    """
    problems = []
    records = store.load_records(results_dir, profile, status=None, problems=problems)
    return collect_records(records, controls, lend, problems, _failed_reruns(results_dir, profile))


def collect_records(records: list, controls: Iterable[str] = (), lend: Callable[[list], list] | None = None,
                    problems: list | None = None, failed_reruns: list = (), warn: bool = True) -> Collected:
    """:func:`collect` of records already loaded (``store.load_records``, in its order): what the audit
    uses, so that its claims quote the comparisons the report shows (the same users in the same order).

    problems: lines already found while loading (extended here); failed_reruns: ``_failed_reruns``;
    warn: print each problem to stderr (the report does; the audit lists them itself).
    """
    controls = list(controls)
    extra_models = [n for n in controls if extra_eval_of(n)]
    problems = [] if problems is None else problems
    every = _whole_records(records, problems)
    ranks_of, left_out = _verify_ranks([r for r in every if r.get("status") == "ok"], problems)
    every = [r for r in every if r["_dir"] not in {x["_dir"] for x in left_out}]
    for line in problems if warn else ():  # visible where the report is made, not only inside index.md
        print(f"bench report: warning: {line}", file=sys.stderr)
    ok = [r for r in every if r.get("status") == "ok"]
    failed = [r for r in every if r.get("status") != "ok"]
    lent = lend(ok) if lend else []
    if lent:  # in the store's order (its folder paths), as if they were stored
        ok = sorted(ok + lent, key=lambda r: (r["dataset"], r["model"], f"seed-{r.get('seed')}"))

    base_of = {r["model"]: r.get("base_model", r["model"]) for r in ok}
    rows, value_rows = [], []
    main_models, ablation_candidates, variant_sizes = defaultdict(set), defaultdict(lambda: defaultdict(set)), {}
    for r in ok:
        label = ablation_label(r)
        role = "main" if is_main(r) else (f"ablation:{label}" if label else "other")
        if role == "main":
            main_models[r["dataset"]].add(r["model"])
        elif label:
            ablation_candidates[r["dataset"]][label].add(r["model"])
            variant_sizes[r["model"]] = len(variant_keys(r))
        rows.append({"dataset": r["dataset"], "model": r["model"], "base_model": r.get("base_model"),
                     "variant": (r.get("variant") or {}).get("name"), "seed": r.get("seed"),
                     "protocol": r.get("protocol"), "dir": r["_dir"], "role": role})
        test = ((r.get("metrics") or {}).get("test")) or {}
        for metric in METRICS:
            if metric in test and test[metric] is not None:
                value_rows.append((r["dataset"], r["model"], r.get("seed"), metric, float(test[metric])))
        for name in extra_models:
            base, ev = extra_eval_of(name) or (None, None)
            extra = ((r.get("extra_evals") or {}).get(ev) or {}).get("metrics", {}).get("test", {})
            if base == r["model"] and extra:
                value_rows += [(r["dataset"], name, r.get("seed"), m, float(extra[m])) for m in METRICS if m in extra]
    runs = pd.DataFrame(rows, columns=["dataset", "model", "base_model", "variant", "seed", "protocol",
                                       "dir", "role"])
    values = pd.DataFrame(value_rows, columns=["dataset", "model", "seed", "metric", "value"])
    main = {d: order_models(ms, base_of) for d, ms in main_models.items()}
    ablation = {d: _choose(c, variant_sizes) for d, c in ablation_candidates.items()}
    for d in main:
        if TARGET in main[d]:
            ablation.setdefault(d, {})["DiffuRec"] = TARGET
    col = Collected(every, failed, list(failed_reruns), runs, values, {}, pd.DataFrame(), {},
                    main, ablation, problems=problems, lent=lent, left_out=left_out)
    _read_ranks(col, ok, extra_models, [n for n in controls if not extra_eval_of(n)], ranks_of)
    return col


REQUIRED_FIELDS = ("status", "dataset", "model", "seed")


def _whole_records(records: list, problems: list) -> list:
    """Records with the fields every table keys on; the others are left out, each with one line."""
    out = []
    for r in records:
        lacking = [k for k in REQUIRED_FIELDS if k not in r]
        if lacking:
            problems.append(f"{Path(r['_dir']) / 'record.json'}: lacks {', '.join(lacking)}; left out of the report")
        else:
            out.append(r)
    return out


def _verify_ranks(ok: list, problems: list) -> tuple[dict, list]:
    """({run folder: ranks}, left-out records): every ok run's ``ranks.npz`` read once and checked
    against the record's ``ranks_sha256``.  A run whose ranks are missing, unreadable or do not
    match is left out of every table (Table 2 as well as the rank-based ones), with one line."""
    ranks_of, left_out = {}, []
    for r in ok:
        path = Path(r["_dir"]) / "ranks.npz"
        why = None
        try:
            ranks = store.read_ranks(r["_dir"])
        except FileNotFoundError:
            why = "missing"
        except (store.DamagedFile, OSError) as err:
            why = f"unreadable ({err})"
        else:
            if r.get("ranks_sha256") and store.ranks_digest(ranks) != r["ranks_sha256"]:
                why = "does not match the record's ranks_sha256 (edited or replaced)"
        if why is None:
            ranks_of[r["_dir"]] = ranks
        else:
            problems.append(f"{r['dataset']}/{r['model']}/seed-{r.get('seed')}: {path} {why}; "
                            "run left out of every table")
            left_out.append(r)
    return ranks_of, left_out


def _align(col: Collected, r: dict, mat: np.ndarray, users: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """(n_metrics, len(ref)) per-user values of one run on the dataset's reference users (NaN where absent)."""
    if len(users) == len(ref) and np.array_equal(users, ref):
        return mat
    # should not happen: all runs of a (profile, dataset) rank the same users
    col.problems.append(f"{r['dataset']}/{r['model']}/seed-{r.get('seed')}: evaluated users differ from "
                        "the dataset's first run; paired tests use the common users")
    sorter = np.argsort(ref)
    pos = np.clip(np.searchsorted(ref, users, sorter=sorter), 0, len(ref) - 1)
    hit = ref[sorter[pos]] == users
    aligned = np.full((len(METRICS), len(ref)), np.nan)
    aligned[:, sorter[pos[hit]]] = mat[:, hit]
    return aligned


def _breakdown_rows(r: dict, ranks: dict, mat: np.ndarray, edges, labels) -> list[tuple]:
    """Head/long-tail and length-group means of one run: (dataset, model, seed, kind, group, metric, value, n)."""
    rows = []
    if "test_is_head" in ranks:
        group = np.where(ranks["test_is_head"].astype(bool), 0, 1)
        means, n = stats.group_means(mat, group, 2)
        for gi, gname in enumerate(("head", "long-tail")):
            for mi, metric in enumerate(METRICS):
                rows.append((r["dataset"], r["model"], r.get("seed"), "head_tail", gname, metric, means[mi, gi], n[gi]))
    hist = ranks.get("hist_len")
    if hist is not None and edges is not None:
        group = stats.assign_length_groups(hist, edges)
        means, n = stats.group_means(mat, group, len(edges) + 1)
        for gi, gname in enumerate(labels):
            for mi, metric in enumerate(METRICS):
                rows.append((r["dataset"], r["model"], r.get("seed"), "length", gname, metric, means[mi, gi], n[gi]))
    return rows


def _read_ranks(col: Collected, ok: list, extra_models: list[str] = (), more_models: Iterable[str] = (),
                ranks_of: dict | None = None) -> None:
    """Per-user seed averages and breakdown rows from the ranks of Table 2/3 runs (and of
    ``more_models``, and the ``extra_models`` read from their base runs' ranks)."""
    needed = {(d, m) for d, ms in col.main_models.items() for m in ms}
    needed |= {(d, m) for d, labels in col.ablation_models.items() for m in labels.values()}
    needed |= {(r["dataset"], m) for r in ok for m in more_models if r["model"] == m}
    extra_of = {}
    for name in extra_models:
        base, ev = extra_eval_of(name)
        extra_of.setdefault(base, []).append((name, ev))
    ref_users, edges, sums, counts = {}, {}, {}, {}
    breakdown_rows = []
    nm = len(METRICS)
    for r in ok:
        key = (r["dataset"], r["model"])
        if key not in needed and r["model"] not in extra_of:
            continue
        try:
            ranks = ranks_of[r["_dir"]] if ranks_of and r["_dir"] in ranks_of else store.read_ranks(r["_dir"])
        except (OSError, ValueError, KeyError) as err:
            col.problems.append(f"{r['dataset']}/{r['model']}/seed-{r.get('seed')}: no readable ranks.npz ({err})")
            continue
        if "test" not in ranks or "users" not in ranks:
            col.problems.append(f"{r['dataset']}/{r['model']}/seed-{r.get('seed')}: ranks.npz lacks test/users")
            continue
        dataset = r["dataset"]
        mat = np.stack([store.per_user_metric(per_metric_ranks(ranks, m), m) for m in METRICS])
        if dataset not in ref_users:
            ref_users[dataset] = ranks["users"]
            if ranks.get("hist_len") is not None:
                _, edges[dataset], col.length_labels[dataset] = stats.length_groups(ranks["hist_len"])
        parts = [(key, mat)] if key in needed else []
        parts += [((dataset, name), np.stack([store.per_user_metric(ranks[f"test@{ev}"], m) for m in METRICS]))
                  for name, ev in extra_of.get(r["model"], []) if f"test@{ev}" in ranks]
        for part_key, part in parts:
            aligned = _align(col, r, part, ranks["users"], ref_users[dataset])
            if part_key not in sums:
                sums[part_key], counts[part_key] = np.zeros((nm, aligned.shape[1])), np.zeros((nm, aligned.shape[1]))
            col.per_seed.setdefault(part_key, {})[r.get("seed")] = aligned.astype(np.float32)
            finite = np.isfinite(aligned)
            sums[part_key] += np.where(finite, aligned, 0.0)
            counts[part_key] += finite
        if key in needed:
            breakdown_rows += _breakdown_rows(r, ranks, mat, edges.get(dataset), col.length_labels.get(dataset))
    with np.errstate(invalid="ignore", divide="ignore"):
        col.per_user = {k: sums[k] / counts[k] for k in sums}
    col.breakdown = pd.DataFrame(breakdown_rows, columns=["dataset", "model", "seed", "kind", "group",
                                                          "metric", "value", "n_users"])

