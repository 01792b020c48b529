"""``ResultsView``: the ok records of a profile as the claim rules and the protocol section read them."""
from __future__ import annotations

import math
import warnings
from collections import defaultdict

import numpy as np

from bench import store
from bench.fmt import finite, order_datasets

METRICS = store.METRICS


class ResultsView:
    """The ok records of a profile, with seed values and per-user matrices on demand."""

    def __init__(self, records: list, controls: dict | None = None):
        """records: a profile's records (only the ok ones are kept); controls: the profile's ``controls:``
        (model -> what it isolates), whose Holm family ``controls`` the control claims quote."""
        self.records = [r for r in records if r.get("status") == "ok"]
        self.controls = dict(controls or {})
        self._reports = {}
        self.by_model = defaultdict(list)
        for r in self.records:
            self.by_model[(r["dataset"], r["model"])].append(r)
        self._per_user, self._info, self._per_seed = {}, {}, {}

    @property
    def report(self):
        """The report's :class:`~bench.report.context.Context` of these records and the profile's controls:
        its comparison frames (``vs_best``: Holm family ``table2``; ``vs_reference``: ``table3``;
        ``bench.report.controls.controls_frame``: ``controls``) are what the claims quote, so a claim shows
        the adjusted p of the significance table for the same comparison."""
        return self.report_with(self.controls)

    def report_with(self, controls: dict | None):
        """:attr:`report` with the given controls (made once per set of controls)."""
        from bench.report.collect import collect_records
        from bench.report.context import Context
        from bench.report.tuning import stand_in_runs

        controls = dict(controls or {})
        key = tuple(sorted(controls))
        if key not in self._reports:
            lend = (lambda ok: stand_in_runs(ok, controls)) if controls else None  # as bench.report.build.render
            self._reports[key] = Context(collect_records(self.records, list(controls), lend, warn=False),
                                         controls=controls)
        return self._reports[key]

    @property
    def datasets(self) -> list[str]:
        """Datasets with ok records, in the paper's order."""
        return order_datasets({r["dataset"] for r in self.records})

    def models(self, dataset: str) -> list[str]:
        return sorted({m for d, m in self.by_model if d == dataset})

    def main_models(self, dataset: str) -> list[str]:
        """Models run without a variant (the Table 2 rows)."""
        return [m for m in self.models(dataset) if not self.by_model[(dataset, m)][0].get("variant")]

    def first(self, dataset: str, model: str) -> dict:
        return self.by_model[(dataset, model)][0]

    def base(self, dataset: str, model: str) -> str:
        r = self.first(dataset, model)
        return r.get("base_model") or r["model"]

    def variant_keys(self, dataset: str, model: str) -> set:
        variant = self.first(dataset, model).get("variant") or {}
        return set((variant.get("params") or {}).keys())

    def seeds(self, dataset: str, model: str, metric: str) -> np.ndarray:
        """(n_seeds,) finite test values of ``metric``."""
        vals = [((r.get("metrics") or {}).get("test") or {}).get(metric)
                for r in self.by_model.get((dataset, model), [])]
        return np.array([v for v in vals if finite(v)], dtype=np.float64)

    def mean(self, dataset: str, model: str, metric: str) -> float:
        v = self.seeds(dataset, model, metric)
        return float(v.mean()) if len(v) else math.nan

    def info(self, dataset: str) -> dict | None:
        """users, hist_len, test_is_head of the dataset's evaluated users (from its first readable run)."""
        if dataset not in self._info:
            self._info[dataset] = None
            for r in (r for r in self.records if r["dataset"] == dataset):
                try:
                    ranks = store.read_ranks(r["_dir"])
                except (OSError, ValueError, KeyError):
                    continue
                if all(k in ranks for k in ("users", "hist_len", "test_is_head")):
                    order = np.argsort(ranks["users"], kind="stable")
                    self._info[dataset] = {"users": ranks["users"][order], "hist_len": ranks["hist_len"][order],
                                           "test_is_head": ranks["test_is_head"][order].astype(bool)}
                    break
        return self._info[dataset]

    def per_user(self, dataset: str, model: str) -> np.ndarray | None:
        """(len(METRICS), n_users) seed-averaged per-user values aligned with ``info(dataset)['users']``."""
        key = (dataset, model)
        if key not in self._per_user:
            info = self.info(dataset)
            self._per_user[key] = None if info is None else self._average_over_seeds(key, info["users"])
        return self._per_user[key]

    def per_seed(self, dataset: str, model: str) -> dict:
        """{seed: (len(METRICS), n_users) per-user values} aligned with ``info(dataset)['users']``
        (NaN for a user a run did not rank); {} without readable ranks."""
        key = (dataset, model)
        if key not in self._per_seed:
            info = self.info(dataset)
            self._per_seed[key] = {} if info is None else self._seed_matrices(key, info["users"])
        return self._per_seed[key]

    def _seed_matrices(self, key: tuple, ref: np.ndarray) -> dict:
        out = {}
        for r in self.by_model.get(key, []):
            try:
                ranks = store.read_ranks(r["_dir"])
            except (OSError, ValueError, KeyError):
                continue
            if "test" not in ranks or "users" not in ranks:
                continue
            mat = np.stack([store.per_user_metric(ranks.get(f"test@{m}", ranks["test"]), m) for m in METRICS])
            pos = np.clip(np.searchsorted(ref, ranks["users"]), 0, len(ref) - 1)
            hit = ref[pos] == ranks["users"]
            aligned = np.full((len(METRICS), len(ref)), np.nan, np.float32)
            aligned[:, pos[hit]] = mat[:, hit]
            out[r.get("seed")] = aligned
        return out

    def _average_over_seeds(self, key: tuple, ref: np.ndarray) -> np.ndarray | None:
        mats = self.per_seed(*key)
        if not mats:
            return None
        stack = np.stack(list(mats.values())).astype(np.float64)
        with warnings.catch_warnings():  # a user no run ranked stays NaN
            warnings.simplefilter("ignore", RuntimeWarning)
            return np.nanmean(stack, axis=0)
