"""The look of every figure (single-column size, fonts, colours) and how figures are saved.

Figures are saved with fixed metadata (no creation date), so re-rendering unchanged
records writes byte-identical PNG and PDF files.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from bench.report.collect import PAPER_MODELS

COLUMN_IN = 3.5  # single-column figure width, inches
FIG_RC = {
    "font.size": 7, "axes.titlesize": 7, "axes.labelsize": 7, "xtick.labelsize": 6,
    "ytick.labelsize": 6, "legend.fontsize": 6, "legend.title_fontsize": 6, "lines.linewidth": 1.0,
    "lines.markersize": 3, "axes.linewidth": 0.6, "errorbar.capsize": 1.5, "pdf.fonttype": 42,
    "savefig.dpi": 200,
}
FORMATS = ("png", "pdf")
# matplotlib stamps a PDF with its creation date and an SVG with a date; None leaves them out
# (PNG carries no date, only the matplotlib version)
METADATA = {"png": {}, "pdf": {"CreationDate": None}, "svg": {"Date": None}}


def rc():
    """The rc context every figure is built and saved in (fonts, line widths, dpi, PDF font type)."""
    import matplotlib

    return matplotlib.rc_context(FIG_RC)


def new_fig(height: float, nrows: int = 1, ncols: int = 1, **kw):
    """(Figure, axes array of shape (nrows, ncols)), one column wide, constrained layout."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(COLUMN_IN, height), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False, **kw)
    return fig, axes


def save(fig, folder: Path, stem: str, formats: Sequence[str] = FORMATS) -> list[Path]:
    """Write ``<folder>/<stem>.<ext>`` for each format with fixed metadata; returns the paths."""
    folder.mkdir(parents=True, exist_ok=True)
    fig.draw_without_rendering()  # lay out once, then keep those positions for both formats
    fig.set_layout_engine("none")
    paths = []
    for ext in formats:
        path = folder / f"{stem}.{ext}"
        fig.savefig(path, metadata=METADATA.get(ext, {}))
        paths.append(path)
    return paths


def palette_color(i: int):
    """The i-th colour of the suite's palette: tab20's ten dark shades, then its ten light shades, then
    evenly spread hues (golden-ratio steps) for any further model, so no two models share a colour."""
    import matplotlib

    if i < 20:
        tab20 = matplotlib.colormaps["tab20"]
        return tab20(2 * i if i < 10 else 2 * (i - 10) + 1)
    hue = (0.13 + 0.618034 * (i - 20)) % 1.0
    return (*matplotlib.colors.hsv_to_rgb((hue, 0.75, 0.55)), 1.0)


def colors(models: Sequence[str]) -> dict:
    """{model: RGBA}: a fixed colour for each of the paper's ten models (tab10's order), and for every other
    model of the zoo (and any other name given) the next colour of ``palette_color`` in name order, so a model keeps its colour in every
    figure of a report and eleven or more models never wrap onto a colour in use."""
    from bench.zoo import discover

    rank = {m: i for i, m in enumerate(PAPER_MODELS)}
    others = sorted(({spec.name for spec in discover().values()} | set(models)) - set(rank))
    slot = {m: len(PAPER_MODELS) + i for i, m in enumerate(others)}
    return {m: palette_color(rank.get(m, slot.get(m))) for m in models}


def errbar(std):
    """Error-bar half-lengths: a non-finite std (one seed) draws no bar."""
    return np.where(np.isfinite(std), std, 0.0)


def errbar_clipped(mean, std) -> np.ndarray:
    """(2, n) asymmetric error bars of mean ± std with the lower bar stopped at zero (times, rates and
    metrics cannot be negative); a non-finite std (one seed) draws no bar."""
    mean, half = np.nan_to_num(np.asarray(mean, float)), errbar(np.asarray(std, float))
    return np.vstack([np.minimum(half, np.maximum(mean, 0.0)), half])


def seed_label(model: str, n_seeds: int) -> str:
    """'SASRec (n=3)': a model's name with the number of seeds its mean rests on."""
    return f"{model} (n={int(n_seeds)})"
