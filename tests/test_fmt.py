"""bench.fmt: the numbers, tables and paths every report shares."""
import math

import numpy as np

from bench.fmt import (REPO_ROOT, cell, display_path, error_text, md_table, num, order_datasets, p_value,
                       p_value_short, pct, scrub_paths, tex)


def test_numbers():
    assert pct(0.012345) == "1.234" and pct(np.float64(0.5), 1) == "50.0"
    assert pct(None) == pct(math.nan) == pct("x") == "–"
    assert cell(0.0123, 0.001) == "1.230 ± 0.100" and cell(0.0123, math.nan) == "1.230" and cell(math.nan, 0) == "–"
    assert num(1.23456) == "1.235" and num(None) == num(math.inf) == "–" and num(2, "{:+.1f}") == "+2.0"
    assert p_value(0.0123) == "0.012" and p_value(2.5e-5) == "2.50e-05" and p_value(None) == "–"
    assert p_value_short(0.0123) == "0.0123" and p_value_short(2.5e-5) == "<1e-4" and p_value_short(math.nan) == "–"


def test_markdown_latex_and_names():
    assert md_table(["a", "b"], [["x|y", "1\n2"]]) == "| a | b |\n|---|---|\n| x\\|y | 1 2 |\n"
    assert tex("50% of a_b & c") == r"50\% of a\_b \& c"
    assert order_datasets({"zeta", "ml-1m", "beauty"}) == ["beauty", "ml-1m", "zeta"]
    assert error_text({"error": {"type": "E", "message": "a\n  b"}}) == "E: a b"
    assert error_text({}) == "unknown error" and error_text({}, unknown="unknown") == "unknown"


def test_paths_are_shown_relative_to_the_repository_or_as_given():
    assert display_path(REPO_ROOT / "results") == "results"
    assert display_path(REPO_ROOT / "results" / "quick" / "beauty") == "results/quick/beauty"
    default = REPO_ROOT.parent / "shared" / "data"
    assert display_path(default, default=default) == "../shared/data"
    assert display_path("/elsewhere/results") == "/elsewhere/results"
    text = f"data file not found: {default}/steam.txt"
    assert scrub_paths(text, {str(default): "../shared/data"}) == "data file not found: ../shared/data/steam.txt"
    assert scrub_paths("no data here", {"data": "x"}) == "no data here"  # relative folders are left alone
