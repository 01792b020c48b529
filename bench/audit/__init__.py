"""Reviewer-style checks of a results store: ``bench check`` and ``bench reproduce``.

``bench check --profile P`` writes ``<reports>/<P>/audit.md`` and ``audit.json``:

1. Integrity (a failure here exits 1): every record against its ranks, its own config
   hash, the config resolved today and the data; missing, failed and extra runs
   (``integrity``).
2. Determinism: a few runs re-run twice at a reduced budget into a temporary store
   and compared rank by rank (``determinism``; profile key ``determinism``).
3. Protocol sensitivity: DiffuRec and SASRec under the ``clean`` and ``paper``
   protocols (``protocol``).
4. Claims: the paper's claims of ``bench/claims.yaml`` evaluated on the records, one
   rule function per kind (``claims/``; registry ``claims.RULES``).
5. Environment of the check and of every record; version differences are flagged
   (``environment``).

``build.audit`` runs them into one dict, ``render`` writes it; ``view.ResultsView`` is
how sections 3-4 read the records, ``keys`` what identifies a run.

``bench reproduce <record-dir>`` (``reproduce``) re-runs one record into a temporary
store, shows both environments side by side (``bench.machine``), measures how far every
stored ranking moved and judges it ``identical`` / ``equivalent`` / ``different`` by the
rule in ``verdict`` (exit 0 / 3 / 1); ``--all`` (``reproduce_all``) does so for a whole
profile into ``reports/<P>/reproduce.md``; ``--with-recorded-code`` (``recorded_code``)
reruns in a temporary worktree of the record's revision plus its stored diff.
"""
from bench.audit.build import audit
from bench.audit.claims import RULES, VERDICTS, evaluate_claims, load_claims
from bench.audit.integrity import ranks_digest
from bench.audit.protocol import protocol_sensitivity, yaml_comment
from bench.audit.render import write_audit
from bench.audit.reproduce import reproduce
from bench.audit.view import ResultsView

__all__ = ["RULES", "VERDICTS", "ResultsView", "audit", "evaluate_claims", "load_claims", "protocol_sensitivity",
           "ranks_digest", "reproduce", "write_audit", "yaml_comment"]
