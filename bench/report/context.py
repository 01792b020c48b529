"""What a table or figure function receives (:class:`Context`) and returns (:class:`Table`).

``Context`` wraps the collected store (:class:`bench.report.collect.Collected`) and
computes the frames several tables and figures share once, on first use: the seed
values of the Table 2 and Table 3 models, DiffuRec against the best baseline, the
ablations against DiffuRec, and the breakdown summary.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from functools import cached_property
from typing import Sequence

import pandas as pd

from bench import stats
from bench.fmt import display_path, order_datasets
from bench.report.collect import METRICS, TARGET, Collected


@dataclass
class Table:
    """One table as the index links it: title, file stem, and each format it is written in.

    md: Markdown text; csv: the frame behind it (written with ``float_format='%.10g'``);
    tex: LaTeX text.  A format left None is not written.
    """

    title: str
    stem: str
    md: str | None = None
    csv: pd.DataFrame | None = None
    tex: str | None = None


class Context:
    """The collected store of one profile, with shared derived frames computed once.

    col:       the records and per-user matrices (:class:`Collected`)
    data_dir:  the data folder given on the command line (Table 1 reads the data)
    expected:  (dataset, model, seed) triples of the profile's grid, or None
    controls:  {control model: what it isolates} of the profile (``bench.report.controls``)
    fidelity:  the profile's ``fidelity:`` recipes and single causes (``bench.report.fidelity``)
    in_training: the committed snapshot of runs still training (``bench.progress.progress_json``), or None
    notes:     warnings a table function adds for ``index.md`` ("Table 3 not written: …")
    """

    def __init__(self, col: Collected, data_dir=None, expected: Sequence[tuple[str, str, int]] | None = None,
                 controls: dict | None = None, fidelity: dict | None = None, in_training: dict | None = None):
        self.col, self.data_dir, self.expected = col, data_dir, expected
        self.in_training = in_training  # shown as work in progress only, never in a results table
        self.controls = dict(controls or {})  # the profile's controls: name -> what it isolates
        self.fidelity = dict(fidelity or {})  # the profile's fidelity report: recipes, causes
        self.notes: list[str] = []

    @cached_property
    def shown_paths(self) -> dict:
        """{absolute data folder: how reports name it}: relative to the repository, or as given."""
        from datasets.prepare import DEFAULT_DATA_DIR, resolve_data_dir

        folder = resolve_data_dir(self.data_dir)
        return {os.path.abspath(folder): display_path(folder, default=DEFAULT_DATA_DIR)}

    @property
    def datasets(self) -> list[str]:
        """Datasets with at least one ok run, in the paper's order."""
        return order_datasets(set(self.col.runs["dataset"]) if len(self.col.runs) else set())

    def _values_of(self, pairs: list[tuple[str, str]]) -> pd.DataFrame:
        if not len(self.col.values):
            return self.col.values
        return self.col.values.merge(pd.DataFrame(pairs, columns=["dataset", "model"]), on=["dataset", "model"])

    @cached_property
    def main_values(self) -> pd.DataFrame:
        """Seed-value frame of the Table 2 models."""
        return self._values_of([(d, m) for d, ms in self.col.main_models.items() for m in ms])

    @cached_property
    def ablation_values(self) -> pd.DataFrame:
        """Seed-value frame of the Table 3 rows (DiffuRec and its ablations)."""
        return self._values_of([(d, m) for d, ls in self.col.ablation_models.items() for m in ls.values()])

    @cached_property
    def comparer(self) -> "stats.Comparer":
        """Every model comparison of the report, sharing the bootstrap's user draws (``stats.Comparer``)."""
        return stats.Comparer(self.col.values, self.col.per_seed)

    @cached_property
    def vs_best(self) -> pd.DataFrame:
        """DiffuRec against the best baseline of each (dataset, metric): ``stats.versus_best``, Holm family
        ``table2``."""
        baselines = [m for ms in self.col.main_models.values() for m in ms if m != TARGET]
        return stats.versus_best(self.main_values, self.col.per_seed, METRICS, TARGET, baselines,
                                 comparer=self.comparer, family="table2")

    @cached_property
    def vs_reference(self) -> pd.DataFrame:
        """Each ablation (A) against full DiffuRec (B): ``stats.versus_reference``, Holm family ``table3``."""
        others = sorted({m for ls in self.col.ablation_models.values() for lbl, m in ls.items() if lbl != "DiffuRec"})
        return stats.versus_reference(self.ablation_values, self.col.per_seed, METRICS, TARGET, others,
                                      comparer=self.comparer, family="table3")

    @cached_property
    def breakdown(self) -> pd.DataFrame:
        """Seed summary of the head/long-tail and length-group rows (the data of Figs. 8 and 9)."""
        if len(self.col.breakdown) == 0:
            return self.col.breakdown
        return stats.summarize_breakdown(self.col.breakdown)


@dataclass
class Drawn:
    """A figure a figure function drew: ``bench.report.build`` saves it as ``figures/<stem>.png|pdf``.

    fig_id: the paper's figure number ('8'); what: the index's one-line description.
    """

    fig_id: str
    dataset: str
    stem: str
    what: str
    figure: object  # matplotlib.figure.Figure


@dataclass
class Missing:
    """A figure (or part of one) not drawn, with why: listed under 'Not drawn' in ``index.md``."""

    text: str
