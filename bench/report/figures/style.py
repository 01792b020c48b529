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


def colors(models: Sequence[str]) -> dict:
    """{model: RGBA}: tab10 by the paper's model order, other models after it."""
    import matplotlib

    cmap = matplotlib.colormaps["tab10"]
    rank = {m: i for i, m in enumerate(PAPER_MODELS)}
    out, extra = {}, len(PAPER_MODELS)
    for m in models:
        i = rank.get(m)
        if i is None:
            i, extra = extra, extra + 1
        out[m] = cmap(i % 10)
    return out


def errbar(std):
    """Error-bar half-lengths: a non-finite std (one seed) draws no bar."""
    return np.where(np.isfinite(std), std, 0.0)
