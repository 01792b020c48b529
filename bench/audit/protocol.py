"""Protocol sensitivity: DiffuRec and SASRec under the ``clean`` and the ``paper`` protocol, side by side."""
from __future__ import annotations

import json
import math
from pathlib import Path

from bench import stats
from bench.audit.claims.base import headline_test
from bench.audit.view import METRICS, ResultsView

MODELS_DIR = Path(__file__).resolve().parent.parent.parent / "models"
PROTOCOL_MODELS = ("DiffuRec", "SASRec")
PROTOCOL_TEXT = {
    "clean": ("one checkpoint per run: the epoch with the best validation NDCG@10 (patience "
              "`stopping_step` validations); every test metric is read from that checkpoint's ranks."),
    "paper": ("the DiffuRec authors' release (WHUIR/DiffuRec f6f70c9, src/trainer.py): one checkpoint per run, "
              "the model at the last validation where any of the six metrics improved (each the mean over "
              "batches of 512 users, in percent, rounded to 4 decimals), and the test set ranked once with it; "
              "validation after 0-based epochs 20, 40, ... on every user, never at the last epoch; 500 epochs, "
              "StepLR(100, 0.1), patience `stopping_step` validations without a gain in any metric "
              "(bench/zoo.py PROTOCOL_DEFAULTS; a variant may shorten the schedule). Records whose checkpoint "
              "rule is `per-metric` were made under the suite's earlier approximation of this protocol: each "
              "metric at its own best validation epoch, which is more generous than the release and not the "
              "authors' rule. Model defaults may also change under this protocol (`protocol_overrides.paper` "
              "in the model YAML); they are listed below from the records' params."),
}


def yaml_comment(base_model: str, key: str) -> str:
    """The comment of ``key`` in ``models/<base>.yaml`` (first occurrence), else ''."""
    path = MODELS_DIR / f"{base_model.lower()}.yaml"
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return ""
    for line in lines:
        body, _, comment = line.partition("#")
        if body.strip().startswith(f"{key}:") and comment:
            text = comment.strip()
            return text.split(":", 1)[1].strip() if ":" in text[:12] else text
    return ""


def _pair(view: ResultsView, dataset: str, base: str) -> tuple[str, str] | None:
    """(clean model, paper model) of ``base`` on ``dataset``: per protocol the run changing the fewest other params."""
    chosen = {}
    for model in view.models(dataset):
        if view.base(dataset, model) != base:
            continue
        protocol = view.first(dataset, model).get("protocol")
        rank = (len(view.variant_keys(dataset, model) - {"protocol"}), model)  # budget keys may come with it
        if protocol not in chosen or rank < chosen[protocol][0]:
            chosen[protocol] = (rank, model)
    if "clean" not in chosen or "paper" not in chosen:
        return None
    return chosen["clean"][1], chosen["paper"][1]


def _changed_params(view: ResultsView, dataset: str, base: str, clean: str, paper: str) -> dict:
    """{param: {clean, paper, meaning}} of the params that differ between the two runs."""
    pc, pp = view.first(dataset, clean).get("params") or {}, view.first(dataset, paper).get("params") or {}
    return {key: {"clean": pc.get(key), "paper": pp.get(key), "meaning": yaml_comment(base, key)}
            for key in sorted(set(pc) | set(pp))
            if json.dumps(pc.get(key), default=str) != json.dumps(pp.get(key), default=str)}


def _metric_rows(view: ResultsView, dataset: str, base: str, clean: str, paper: str) -> list[dict]:
    """One row per metric: seed means, paper − clean, and the headline test (two-level bootstrap)."""
    rows = []
    for metric in METRICS:
        mc, mp = view.mean(dataset, clean, metric), view.mean(dataset, paper, metric)
        hb = headline_test(view, dataset, paper, clean, metric)
        rows.append({"dataset": dataset, "base_model": base, "metric": metric, "clean_model": clean,
                     "paper_model": paper, "clean": mc, "paper": mp, "diff": mp - mc,
                     "rel_pct": 100 * (mp / mc - 1) if mc else math.nan,
                     "n_seeds_clean": len(view.seeds(dataset, clean, metric)),
                     "n_seeds_paper": len(view.seeds(dataset, paper, metric)), "hb_p": hb["hb_p"],
                     "hb_ci_low": hb["hb_ci_low"], "hb_ci_high": hb["hb_ci_high"]})
    return rows


def protocol_sensitivity(view: ResultsView) -> dict:
    """DiffuRec and SASRec under the clean and the paper protocol, side by side (Holm over all rows)."""
    rows, params_changed, pairs = [], {}, []
    for base in PROTOCOL_MODELS:
        for dataset in view.datasets:
            pair = _pair(view, dataset, base)
            if pair is None:
                continue
            clean, paper = pair
            pairs.append({"dataset": dataset, "base_model": base, "clean": clean, "paper": paper})
            for key, change in _changed_params(view, dataset, base, clean, paper).items():
                params_changed.setdefault(base, {})[key] = change
            rows += _metric_rows(view, dataset, base, clean, paper)
    if rows:
        for r, a in zip(rows, stats.holm([r["hb_p"] for r in rows])):
            r["hb_p_holm"] = float(a)
    return {"status": "ok" if rows else "not run in this profile", "pairs": pairs, "rows": rows,
            "params_changed": params_changed, "protocols": PROTOCOL_TEXT}
