"""The paper's claims (``bench/claims.yaml``) judged on a profile's records.

Each claim names a rule kind and its arguments; ``RULES`` maps each kind to one
function, grouped in modules by what the rule compares:

==================  ==========================================================
``baselines``       DiffuRec vs the Table 2 baselines (beats them; improvement size)
``variants``        DiffuRec vs its own variants (best setting; ablation)
``groups``          inside user groups (head/long-tail, length groups)
``convergence``     epochs to the best checkpoint
``controls``        DiffuRec vs the controls that isolate the diffusion (docs/protocols.md, "Controls")
``base``            what the rules share: verdict dict, scope, baselines, Holm
==================  ==========================================================

A rule is ``rule(view, rule, cfg) -> dict``: ``view`` a :class:`ResultsView`, ``rule``
the claim's ``rule:`` mapping, ``cfg`` = {alpha, baselines} from the claims file; it
returns ``base.result(verdict, reason, evidence, columns)``.  To add one, see
``bench/report/README.md``.
"""
from __future__ import annotations

from pathlib import Path

import yaml

from bench.audit.claims import baselines, controls, convergence, groups, variants
from bench.audit.claims.base import VERDICTS, result
from bench.audit.view import ResultsView
from bench.errors import BenchError

CLAIMS_FILE = Path(__file__).resolve().parent.parent.parent / "claims.yaml"

RULES = {
    "beats_baselines": baselines.beats_baselines,
    "improvement_matches": baselines.improvement_matches,
    "best_setting": variants.best_setting,
    "beats_variant": variants.beats_variant,
    "beats_baselines_in_groups": groups.beats_baselines_in_groups,
    "group_order": groups.group_order,
    "converges_faster": convergence.converges_faster,
    "beats_model": controls.beats_model,
}


def load_claims(path=CLAIMS_FILE) -> dict:
    """The claims file, checked: every claim has id, statement, source and a known rule kind."""
    try:
        spec = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as err:
        raise BenchError(f"cannot read claims file {path}: {err}".replace("\n", " ")) from None
    if not isinstance(spec, dict) or not isinstance(spec.get("claims"), list):
        raise BenchError(f"{path}: expected a mapping with a 'claims' list")
    for c in spec["claims"]:
        for key in ("id", "statement", "source", "rule"):
            if key not in c:
                raise BenchError(f"{path}: claim {c.get('id', '?')} lacks '{key}'")
        if c["rule"].get("kind") not in RULES:
            raise BenchError(f"{path}: claim {c['id']}: unknown rule kind '{c['rule'].get('kind')}' "
                             f"(known: {', '.join(RULES)})")
    return spec


def evaluate_claims(records_or_view, claims_file=CLAIMS_FILE) -> list[dict]:
    """Every claim of ``claims_file`` with its verdict, reason and evidence."""
    view = records_or_view if isinstance(records_or_view, ResultsView) else ResultsView(records_or_view)
    spec = load_claims(claims_file)
    cfg = {"alpha": spec.get("alpha", 0.05), "baselines": spec.get("baselines", [])}
    out = []
    for claim in spec["claims"]:
        head = {k: claim[k] for k in ("id", "statement", "source")}
        head["rule"] = claim["rule"]
        try:
            res = RULES[claim["rule"]["kind"]](view, claim["rule"], cfg)
        except (KeyError, ValueError, BenchError) as err:
            res = result("not testable", f"rule could not be evaluated: {type(err).__name__}: {err}")
        out.append({**head, **res})
    return out


__all__ = ["CLAIMS_FILE", "RULES", "VERDICTS", "evaluate_claims", "load_claims"]
