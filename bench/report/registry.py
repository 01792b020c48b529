"""The one place where tables and figures are registered, in the order ``index.md`` lists them.

A table function takes the :class:`~bench.report.context.Context` and returns a list
of :class:`~bench.report.context.Table` (empty when its runs are missing; it may add a
note to ``ctx.notes``).  A figure function takes the context and one dataset and
returns a list of :class:`~bench.report.context.Drawn` and
:class:`~bench.report.context.Missing`.  See ``bench/report/README.md``.
"""
from __future__ import annotations

from bench.report import controls, diagnosis, fidelity, gap, power, significance, summaries, tables, tuning
from bench.report.figures import breakdown, efficiency, loss, reverse_steps, settings

TABLES = (
    tables.table1,              # table1: dataset statistics
    tables.table2,              # table2, significance_table2
    tables.table3,              # table3, significance_table3
    controls.controls,          # controls (profiles with `controls:`)
    fidelity.fidelity,          # fidelity: DiffuRec as its authors train it (issue 25)
    tuning.tuning,              # tuning (profiles with `tuning:`)
    summaries.all_runs,         # summary_all_runs
    gap.gap_to_paper,           # gap_to_paper
    diagnosis.diagnosis,        # diagnosis (models outside 0.8-1.25x the paper; notes in bench/diagnosis.yaml)
    significance.all_pairs,     # significance_pairs_<dataset>
    power.power,                # power: detectable differences of Table 2's comparisons, 3 and 5 seeds (issue 26)
    summaries.breakdowns,       # breakdown_head_tail, breakdown_length
)

FIGURES = (  # drawn for every dataset with runs
    breakdown.fig8_head_tail,
    breakdown.fig9_seq_length,
    settings.fig3_schedules,
    settings.fig5_delta,
    reverse_steps.fig12_reverse_steps,
    loss.fig10_loss,
    efficiency.fig11_efficiency,
    fidelity.fidelity_curves,
)
