"""``render``: run every registered table and figure on one profile's store and write the files."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import pandas as pd

from bench.report.collect import collect
from bench.report.context import Context, Drawn, Missing, Table
from bench.report.fidelity import fidelity_models
from bench.report.figures import style
from bench.report.index import index_md
from bench.report.readme import update_readme
from bench.report.registry import FIGURES, TABLES
from bench.report.tuning import stand_in_runs


def _write_text(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def _write_csv(path: Path, frame: pd.DataFrame) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(path, index=False, float_format="%.10g")
    return path


def write_table(table: Table, out: Path) -> list[Path]:
    """``<stem>.md``, ``.tex``, ``.csv`` of the formats the table has, in that order (the index's link order)."""
    paths = []
    if table.md is not None:
        paths.append(_write_text(out / f"{table.stem}.md", table.md))
    if table.tex is not None:
        paths.append(_write_text(out / f"{table.stem}.tex", table.tex))
    if table.csv is not None:
        paths.append(_write_csv(out / f"{table.stem}.csv", table.csv))
    return paths


def draw_figures(ctx: Context, folder: Path) -> tuple[list[Path], list[Drawn], list[str]]:
    """Every registered figure on every dataset: (written paths, drawn figures, 'not drawn' lines)."""
    written, drawn, missing = [], [], []
    for dataset in ctx.datasets:
        for figure_fn in FIGURES:
            with style.rc():  # rcParams apply when artists are made and when the file is written
                for outcome in figure_fn(ctx, dataset):
                    if isinstance(outcome, Missing):
                        missing.append(outcome.text)
                        continue
                    written += style.save(outcome.figure, folder, outcome.stem)
                    drawn.append(outcome)
    return written, drawn, missing


def render(results_dir, reports_dir, profile: str, data_dir=None,
           expected: Sequence[tuple[str, str, int]] | None = None, controls: dict | None = None,
           fidelity: dict | None = None) -> list[Path]:
    """Write every table, figure and ``index.md`` of ``profile``; returns the written paths.

    expected: (dataset, model, seed) triples the profile should hold; those without any
    record are listed as missing in ``index.md``.  ``data_dir`` is passed to Table 1.
    controls: the profile's ``controls:`` (model -> what it isolates) for the controls table.
    fidelity: the profile's ``fidelity:`` (recipes and single causes) for ``fidelity.md``.
    """
    out = Path(reports_dir) / profile
    out.mkdir(parents=True, exist_ok=True)
    # a tuned control's seeds that validation's chosen setting already ran are that setting's runs
    lend = (lambda ok: stand_in_runs(ok, controls)) if controls else None
    paired = [*(controls or {}), *fidelity_models(fidelity)]  # models whose per-user values are read
    from bench.progress import read_snapshot  # reports/speed/in-progress-<profile>.json, by `bench progress --out`

    ctx = Context(collect(results_dir, profile, paired, lend), data_dir, expected, controls, fidelity,
                  read_snapshot(reports_dir, profile))
    written: list[Path] = []
    links: dict[str, list[Path]] = {}
    for table_fn in TABLES:
        for table in table_fn(ctx):
            paths = write_table(table, out)
            written += paths
            links[table.title] = paths
    fig_paths, drawn, missing_figs = draw_figures(ctx, out / "figures")
    written += fig_paths
    present = {(r.get("dataset"), r.get("model"), r.get("seed")) for r in ctx.col.records}
    missing_runs = None if expected is None else [tuple(e) for e in expected if (e[0], e[1], e[2]) not in present]
    index = index_md(profile, ctx.col, links, drawn, missing_figs, missing_runs, ctx.notes, out, data_dir)
    written.append(_write_text(out / "index.md", index))
    readme = update_readme(reports_dir, profile)  # only for the README's profile, into the repository's reports/
    if readme is not None:
        written.append(readme)
    return written
