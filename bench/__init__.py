"""DiffuRec benchmark harness: profiles, run grid, training/evaluation, results store,
statistics, reports and the ``bench`` command line.  Knows nothing model-specific."""
from bench import compat  # noqa: F401  (must run before any RecBole import)
