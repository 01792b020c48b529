"""Render a profile's results store into tables, figures and an index: ``bench report``.

``render(results_dir, reports_dir, profile)`` reads every record of the profile
(``bench.store.load_records``) and every needed ``ranks.npz`` exactly once, and writes
under ``<reports_dir>/<profile>/``:

* ``table1``  dataset statistics, ours next to the paper's (``datasets.prepare.stats_rows``)
* ``table2``  models x metrics x datasets, mean ± std over seeds (percent), best bold,
  second underlined, ``*`` = DiffuRec vs the best baseline significant (Welch, Holm over
  the table), "Improv." = DiffuRec over the best baseline in percent, as in the paper
* ``table3``  the ablation: DiffuRec, w GRU (approximator = gru), w R* (rounding =
  neg_sq_distance); ``*`` = different from full DiffuRec (Welch, Holm over the table)
* ``gap_to_paper``  every cell of the paper's Tables 2-3 next to ours with our 95% CI
* ``significance_*``  all pairs per dataset, DiffuRec vs best baseline, ablations
* ``breakdown_*``  head/long-tail and sequence-length groups (the data of Figs. 8-9)
* ``figures/``  Figs. 3, 5, 8, 9, 10, 11, 12 per dataset, PNG and PDF
* ``index.md``  links, budget, protocol, environment, missing / failed runs

Tables come as Markdown, CSV and (Tables 2-3) LaTeX with booktabs.  A figure or table
whose runs do not exist is listed as missing in ``index.md``, never an error.

Layout (one module per family; see ``bench/report/README.md`` to add a table or figure):

========================  ==============================================================
``collect``               records and ranks read once (:class:`Collected`), model order
``context``               what table/figure functions get (``Context``) and return
``tables``                Tables 1-3 (with the tests behind Tables 2-3's stars)
``significance``          all-pairs tests; the layout of every significance table
``tuning``, ``gap``,      baseline tuning; gap to the paper; all-runs summary and
``summaries``             breakdown tables
``figures/``              one module per figure family; ``style`` = look and saving
``index``                 ``index.md``
``registry``              ``TABLES`` and ``FIGURES``: the order in which they are written
``build``                 :func:`render`
========================  ==============================================================
"""
from bench.report.build import render
from bench.report.collect import PAPER_MODELS, TARGET, Collected, collect
from bench.report.gap import paper_table
from bench.report.tuning import tuning_table

__all__ = ["PAPER_MODELS", "TARGET", "Collected", "collect", "paper_table", "render", "tuning_table"]
