"""Statistics over the results store: seed summaries, significance tests, breakdowns.

Every function is pure: it takes pandas DataFrames / numpy arrays (shapes in the
docstrings) and returns new ones; nothing here reads files.  The report layer
(``bench/report``, ``bench/audit``) turns records and ``ranks.npz`` arrays into these inputs.

Conventions
-----------
* A *seed-value frame* is long-form, one row per (dataset, model, seed, metric)
  with a float ``value`` (a fraction in [0, 1], as in the records).
* A *per-user matrix* is a float64 array of shape ``(n_metrics, n_users)``: row i
  is the per-user value of metric ``metrics[i]`` (``bench.store.per_user_metric``),
  averaged over the seeds of one (dataset, model).  All runs of one (profile,
  dataset) evaluate the same users in the same order, so columns line up.
* Tests are two-sided at level ``ALPHA``.

* A *per-seed frame* (``per_seed``) is {(dataset, model): {seed: (len(METRICS), n_users)}}:
  what the headline test resamples.

The headline test of every comparison of two models is a two-level bootstrap over seeds and
users (``hierarchical_bootstrap``; docs/statistics.md says why).  Beside it, as secondary
columns: Welch's t-test over seeds (conditional on the test users) and a paired t-test with the
Wilcoxon signed-rank test over users on the common seeds (conditional on the trained models).
Multiple comparisons: Holm–Bonferroni within one declared family per report (``families``).

One module per thing, named after it: ``summarize`` (seed summaries), ``hierarchical_bootstrap``
(the headline test), ``welch`` (over seeds), ``paired`` (over users), ``holm`` and ``families``
(multiple comparisons), ``compare`` (the tables' model-vs-model rows, built from the tests),
``length_groups`` (Fig. 9's groups), ``notes`` (the constants and the texts the reports print).
Everything is re-exported here: ``stats.welch(...)``.
"""
from bench.stats.compare import COLUMNS, P_COLUMNS, Comparer, pairwise, versus_best, versus_reference
from bench.stats.families import adjust as holm_family
from bench.stats.families import quote as quote_family
from bench.stats.hierarchical_bootstrap import BootstrapResult, compare_ranks, compare_runs
from bench.stats.holm import add_holm, holm
from bench.stats.length_groups import assign_length_groups, group_means, length_groups
from bench.stats.notes import ALPHA, HEADLINE_NOTE, HOLM_NOTE, LENGTH_RULE, LEVEL, PAIRED_NOTE, WELCH_NOTE
from bench.stats.paired import paired
from bench.stats.summarize import best_and_second, summarize, summarize_breakdown, t_interval
from bench.stats.welch import cohens_d, welch, welch_interval

__all__ = ["ALPHA", "BootstrapResult", "COLUMNS", "Comparer", "HEADLINE_NOTE", "compare_ranks", "compare_runs",
           "holm_family", "quote_family", "HOLM_NOTE", "LENGTH_RULE", "LEVEL", "PAIRED_NOTE", "P_COLUMNS", "WELCH_NOTE", "add_holm",
           "assign_length_groups", "best_and_second", "cohens_d", "group_means", "holm", "length_groups",
           "paired", "pairwise", "summarize", "summarize_breakdown", "t_interval", "versus_best",
           "versus_reference", "welch", "welch_interval"]
