"""The paper's analysis figures, one module per family; each figure is one function.

``breakdown`` (Figs. 8, 9), ``settings`` (Figs. 3, 5), ``reverse_steps`` (Fig. 12),
``loss`` (Fig. 10), ``efficiency`` (Fig. 11); ``style`` holds the shared look and the
saving with fixed metadata.  The functions are registered in
``bench.report.registry.FIGURES``; ``bench/report/README.md`` says how to add one.
"""
