"""How the suite writes numbers, tables, names and paths into its reports.

One home for the formatting that ``bench.report`` (tables, figures, index) and
``bench.audit`` (``audit.md``/``audit.json``) share, so a cell, a p-value or a path
reads the same in every file.  Pure functions of their arguments; nothing here reads
records or imports another ``bench`` module.

* numbers: :func:`finite`, :func:`pct`, :func:`cell`, :func:`num`, :func:`p_value`,
  :func:`p_value_short`
* Markdown / LaTeX: :func:`md_table`, :func:`tex`, :func:`tex_table`
* datasets: :data:`DATASET_ORDER`, :func:`order_datasets`, :func:`dataset_title`
* records: :func:`error_text`, :func:`jsonable`
* paths: :func:`display_path`, :func:`scrub_paths` (reports carry no absolute machine paths)
"""
from __future__ import annotations

import math
import os
import re
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent
MISSING = "–"  # what an empty or non-finite cell shows

# =========================================================================== datasets
DATASET_ORDER = ("beauty", "toys", "ml-1m", "steam")  # the paper's order
DATASET_TITLES = {"beauty": "Beauty", "toys": "Toys", "ml-1m": "ML-1M", "steam": "Steam"}


def order_datasets(names: Iterable[str]) -> list[str]:
    """The paper's datasets in the paper's order, then any others by name."""
    names = set(names)
    return [d for d in DATASET_ORDER if d in names] + sorted(names - set(DATASET_ORDER))


def dataset_title(dataset: str) -> str:
    """'ml-1m' -> 'ML-1M' (the paper's spelling); unknown names unchanged."""
    return DATASET_TITLES.get(dataset, dataset)


# =========================================================================== numbers
def finite(x) -> bool:
    """True for a finite int/float (numpy scalars included); False for None, NaN, ±inf, text."""
    return x is not None and isinstance(x, (int, float, np.floating, np.integer)) and math.isfinite(float(x))


def pct(x, digits: int = 3) -> str:
    """A fraction as percent without the sign: 0.01234 -> '1.234'."""
    return f"{100 * float(x):.{digits}f}" if finite(x) else MISSING


def cell(mean, std, digits: int = 3) -> str:
    """'mean ± std' in percent of two fractions; the mean alone when std is not finite."""
    if mean is None or not np.isfinite(mean):
        return MISSING
    if std is None or not np.isfinite(std):
        return f"{100 * mean:.{digits}f}"
    return f"{100 * mean:.{digits}f} ± {100 * std:.{digits}f}"


def num(x, fmt: str = "{:.3f}") -> str:
    """``fmt`` applied to a finite number, else '–'."""
    return fmt.format(float(x)) if finite(x) else MISSING


def p_value(x) -> str:
    """A p-value in the report tables: '2.31e-05' below 1e-3, else '0.123'."""
    if not finite(x):
        return MISSING
    return f"{x:.2e}" if x < 1e-3 else f"{x:.3f}"


def p_value_short(x) -> str:
    """A p-value in the audit: '<1e-4' below 1e-4, else '0.1234'."""
    if not finite(x):
        return MISSING
    return "<1e-4" if x < 1e-4 else f"{x:.4f}"


# =========================================================================== Markdown and LaTeX
def md_table(header: Sequence[str], rows: Iterable[Sequence]) -> str:
    """A GitHub Markdown table; '|' in a cell is escaped and a newline becomes a space."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c).replace("|", "\\|").replace("\n", " ") for c in row) + " |"
              for row in rows]
    return "\n".join(lines) + "\n"


_TEX_ESCAPE = {"&": r"\&", "%": r"\%", "_": r"\_", "#": r"\#", "$": r"\$", "{": r"\{", "}": r"\}",
               "~": r"\textasciitilde{}", "^": r"\^{}"}


def tex(text) -> str:
    """``text`` with LaTeX's special characters escaped."""
    return re.sub(r"[&%_#${}~^]", lambda m: _TEX_ESCAPE[m.group()], str(text))


def tex_table(header: Sequence[str], rows: Sequence[Sequence[str]], caption: str, label: str,
              blocks_of: int | None = None, align: str | None = None) -> str:
    """A booktabs ``table*``; ``rows`` are already LaTeX; a \\midrule every ``blocks_of`` rows."""
    align = align or ("ll" + "c" * (len(header) - 2))
    lines = [r"% requires \usepackage{booktabs}", r"\begin{table*}[t]", r"\centering", r"\scriptsize",
             rf"\caption{{{caption}}}", rf"\label{{{label}}}", r"\setlength{\tabcolsep}{2pt}",
             rf"\begin{{tabular}}{{{align}}}", r"\toprule",
             " & ".join(tex(h) for h in header) + r" \\", r"\midrule"]
    for i, row in enumerate(rows):
        if blocks_of and i and i % blocks_of == 0:
            lines.append(r"\midrule")
        lines.append(" & ".join(row) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}", r"\end{table*}", ""]
    return "\n".join(lines)


# =========================================================================== records
def error_text(record: dict, unknown: str = "unknown error", limit: int = 300) -> str:
    """'Type: message' of a failed record on one line, cut to ``limit`` characters."""
    err = record.get("error")
    text = f"{err.get('type', 'Error')}: {err.get('message', '')}" if isinstance(err, dict) else str(err or unknown)
    text = " ".join(text.split())
    return text[:limit] + ("…" if len(text) > limit else "")


def jsonable(obj):
    """``obj`` for ``json.dumps``: NaN/inf -> None, numpy -> Python, tuples -> lists, keys -> str."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return [jsonable(v) for v in obj.tolist()]
    if isinstance(obj, (np.bool_, bool)):
        return bool(obj)
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        return float(obj) if math.isfinite(float(obj)) else None
    return obj


# =========================================================================== paths
def display_path(path, default=None) -> str:
    """How a report names a folder: relative to the repository when inside it, else as given.

    ``default``: the folder the suite falls back to when none was given (e.g. the data
    folder ``../shared/data/diffurec``); when ``path`` is that folder it is shown relative
    to the repository too (``../…``), because nobody typed its absolute form.
    """
    full = Path(os.path.abspath(path))
    try:
        return full.relative_to(REPO_ROOT).as_posix() or "."
    except ValueError:
        pass
    if default is not None and full == Path(os.path.abspath(default)):
        return Path(os.path.relpath(full, REPO_ROOT)).as_posix()
    return str(path)


def scrub_paths(text: str, folders: dict) -> str:
    """``text`` with each absolute folder of ``folders`` ({folder: shown}) replaced by its shown form.

    Relative folders are left alone: their text may occur in ordinary words ("data").
    """
    for folder, shown in sorted(folders.items(), key=lambda kv: -len(str(kv[0]))):  # longest first
        folder = str(folder)
        if os.path.isabs(folder) and folder != shown:
            text = text.replace(folder, shown)
    return text
