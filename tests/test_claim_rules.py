"""Every registered claim rule, run on a small synthetic store: a verdict with a reason and its evidence.

A rule added to ``bench.audit.claims.RULES`` is picked up here without editing this file;
it needs a claim in ``bench/claims.yaml`` that uses it, and a docstring naming that claim.
"""
from pathlib import Path

import numpy as np
import pytest

from bench import store
from bench.audit.claims import RULES, VERDICTS, evaluate_claims, load_claims
from bench.audit.render import PCT_COLUMNS
from bench.audit.view import ResultsView

N_USERS = 120
DIFFUREC = {"approximator": "transformer", "rounding": "inner_product", "noise_schedule": "truncated_linear",
            "lambda_scale": 0.001}
# model -> (rank scale k: smaller is better, variant params or None)
MODELS = {"GRU4Rec": (100, None), "SASRec": (50, None), "DiffuRec": (30, None),
          "DiffuRec-gru": (40, {"approximator": "gru"}), "DiffuRec-rstar": (150, {"rounding": "neg_sq_distance"}),
          "DiffuRec-linear": (35, {"noise_schedule": "linear"}), "DiffuRec-d1": (70, {"lambda_scale": 1.0}),
          "DiffuRec-nodiff": (32, {"lambda_scale": 0.0}),
          "SASRec-matched": (45, {"hidden_size": 128, "n_layers": 4}), "SASRec-tuned": (28, {"hidden_size": 128}),
          # SASRec's tuning grid: the default (SASRec) and five settings; validation picks width 128
          "SASRec-tune-h128": (28, {"hidden_size": 128}), "SASRec-tune-d0.2": (55, {"hidden_dropout_prob": 0.2}),
          "SASRec-tune-b4": (60, {"n_layers": 4}), "SASRec-tune-h32": (70, {"hidden_size": 32}),
          "SASRec-tune-b1": (65, {"n_layers": 1})}


def write_run(root, dataset, model, seed):
    """One ok record whose ranks are floor(u * k) (u shared by all models: comparisons are monotone)."""
    k, variant = MODELS[model]
    base = model.split("-")[0]
    rng = np.random.default_rng(11)
    u, hist, head = rng.random(N_USERS), rng.integers(2, 60, N_USERS).astype(np.int32), rng.random(N_USERS) < 0.3
    jitter = np.random.default_rng(seed).normal(0, 0.01, N_USERS)
    test = np.floor(np.clip(u + jitter, 0, 0.999) * k).astype(np.int32)
    ranks = {"users": np.arange(N_USERS), "test": test, "valid": test.copy(), "hist_len": hist,
             "test_item": np.arange(N_USERS, dtype=np.int32) + 1, "test_is_head": head}
    params = {"epochs": 20, **(DIFFUREC if base == "DiffuRec" else {}), **(variant or {})}
    best_epoch = 3 if base == "DiffuRec" else 9
    record = {"status": "ok", "profile": "synthetic", "dataset": dataset, "model": model, "base_model": base,
              "seed": seed, "protocol": "clean", "params": params,
              "variant": {"name": model, "params": variant} if variant else None,
              "metrics": {"test": store.metrics_from_ranks(test), "valid": store.metrics_from_ranks(test)},
              "checkpoint": {"best_epoch": best_epoch}, "timing": {"epochs_run": best_epoch + 3},
              "curve": [{"epoch": e, "train_loss": 5 / (e + 1)} for e in range(best_epoch + 3)],
              "env": {}, "data": {"sha256": "0" * 64}}
    store.write_run(store.run_dir(root, "synthetic", dataset, model, seed), record, ranks)


@pytest.fixture(scope="module")
def view(tmp_path_factory):
    root = tmp_path_factory.mktemp("synthetic")
    for dataset in ("beauty", "ml-1m"):
        for model in MODELS:
            for seed in (0, 1):
                write_run(root, dataset, model, seed)
    return ResultsView(store.load_records(root, "synthetic"))


def claims_of(kind: str) -> list[dict]:
    return [c for c in load_claims()["claims"] if c["rule"]["kind"] == kind]


def config() -> dict:
    spec = load_claims()
    return {"alpha": spec.get("alpha", 0.05), "baselines": spec.get("baselines", [])}


@pytest.mark.parametrize("kind", sorted(RULES))
def test_rule_is_used_and_documented(kind):
    claims = claims_of(kind)
    assert claims, f"rule {kind} is registered but no claim in bench/claims.yaml uses it"
    doc = RULES[kind].__doc__ or ""
    for claim in claims:
        assert claim["id"] in doc, f"the docstring of rule {kind} should name claim {claim['id']}"


@pytest.mark.parametrize("kind", sorted(RULES))
def test_rule_judges_the_synthetic_store(kind, view):
    for claim in claims_of(kind):
        res = RULES[kind](view, claim["rule"], config())
        assert res["verdict"] in VERDICTS and res["reason"], (claim["id"], res)
        assert res["evidence"], (claim["id"], res["reason"])
        for row in res["evidence"]:
            assert set(res["columns"]) <= set(row), (claim["id"], set(res["columns"]) - set(row))
            # audit.md prints these columns as percentages: a name or a fraction there would read as a metric
            shown = [c for c in res["columns"] if c in PCT_COLUMNS and row[c] is not None]
            assert all(isinstance(row[c], (int, float)) for c in shown), (claim["id"], {c: row[c] for c in shown})


@pytest.mark.parametrize("kind", sorted(RULES))
def test_rule_on_an_empty_store_is_not_testable(kind):
    for claim in claims_of(kind):
        res = RULES[kind](ResultsView([]), claim["rule"], config())
        assert res["verdict"] == "not testable" and res["reason"], (claim["id"], res)


def test_the_synthetic_store_supports_the_claims_it_was_built_for(view):
    by_id = {c["id"]: c for c in evaluate_claims(view)}
    for cid in ("T2-beats-all", "F3-truncated-linear", "F5-delta-0.001", "T3-transformer-over-gru",
                "T3-inner-product-over-rstar", "F10-convergence-ml1m"):
        assert by_id[cid]["verdict"] == "holds", by_id[cid]


def test_controls_rule_reads_the_direction_of_each_control(view):
    """DiffuRec (k=30) vs a weaker matched SASRec (k=45): holds; vs a stronger tuned SASRec (k=28): does not."""
    by_id = {c["id"]: c for c in load_claims()["claims"]}
    matched = RULES["beats_model"](view, by_id["C2-beats-matched-sasrec"]["rule"], config())
    tuned = RULES["beats_model"](view, by_id["C3-beats-tuned-sasrec"]["rule"], config())
    assert matched["verdict"] == "holds", matched["reason"]
    assert tuned["verdict"] == "does not hold" and "not below" in tuned["reason"]


def test_tuned_control_is_judged_only_on_the_validation_choice(view):
    """C3 needs the whole tuning grid and SASRec-tuned running its validation-best setting."""
    import copy
    rule = {c["id"]: c for c in load_claims()["claims"]}["C3-beats-tuned-sasrec"]["rule"]
    assert rule.get("tuning_settings") == 6
    picked_elsewhere = copy.deepcopy(view.records)
    for r in picked_elsewhere:
        if r["model"] == "SASRec-tuned" and r["seed"] == 1:
            r["params"]["n_layers"] = 4  # as if chosen by another criterion
    res = RULES["beats_model"](ResultsView(picked_elsewhere), rule, config())
    assert res["verdict"] == "not testable", res
    assert "seed 1 is not the validation-best setting h128 (differs in n_layers)" in res["reason"]
    partial = [r for r in view.records if r["model"] != "SASRec-tune-b1"]
    res = RULES["beats_model"](ResultsView(partial), rule, config())
    assert res["verdict"] == "not testable" and "has 5 of 6 settings" in res["reason"], res


def test_tuned_control_picked_as_the_default_is_judged_on_the_base_runs(view):
    """Validation picks SASRec's default (k=50) over every remaining setting: SASRec's runs stand for SASRec-tuned."""
    rule = {**{c["id"]: c for c in load_claims()["claims"]}["C3-beats-tuned-sasrec"]["rule"], "tuning_settings": 5}
    records = [r for r in view.records if r["model"] not in ("SASRec-tuned", "SASRec-tune-h128")]
    res = RULES["beats_model"](ResultsView(records), rule, config())
    assert res["verdict"] == "holds", res  # DiffuRec (k=30) above SASRec (k=50)
    assert "beauty: SASRec-tuned's seeds 0, 1 are `SASRec`'s runs (the same config and seed)" in res["reason"]
    default = RULES["beats_model"](ResultsView([r for r in records if r["model"] != "SASRec-tuned"]),
                                   {**rule, "other": "SASRec"}, config())
    assert [row["other"] for row in res["evidence"]] == [row["other"] for row in default["evidence"]]


def test_tuned_control_borrows_the_seeds_its_chosen_setting_already_ran(view):
    """SASRec-tuned ran seed 1 only; the tuning run of its setting (h128) is its seed 0: judged on both."""
    rule = {c["id"]: c for c in load_claims()["claims"]}["C3-beats-tuned-sasrec"]["rule"]
    records = [r for r in view.records if not (r["model"] == "SASRec-tuned" and r["seed"] == 0)
               and not (r["model"] == "SASRec-tune-h128" and r["seed"] == 1)]
    res = RULES["beats_model"](ResultsView(records), rule, config())
    assert "beauty: SASRec-tuned's seed 0 is `SASRec-tune-h128`'s run (the same config and seed)" in res["reason"]
    assert {row["n_seeds"] for row in res["evidence"]} == {"2/2"}
    whole = RULES["beats_model"](view, rule, config())  # the same seeds under SASRec-tuned's own name
    assert res["verdict"] == whole["verdict"] == "does not hold"  # SASRec-tuned (k=28) is above DiffuRec (k=30)
    assert [row["other"] for row in res["evidence"]] == pytest.approx([row["other"] for row in whole["evidence"]])


@pytest.fixture(scope="module")
def report_ctx(view):
    """The report's context of the synthetic store, as ``bench report`` builds it (controls declared)."""
    from bench.report.collect import collect
    from bench.report.context import Context
    from bench.report.tuning import stand_in_runs

    root = Path(view.records[0]["_dir"]).parents[3]
    controls = {"DiffuRec-nodiff": "no diffusion", "SASRec-matched": "capacity", "SASRec-tuned": "tuning"}
    return Context(collect(root, "synthetic", list(controls), lambda ok: stand_in_runs(ok, controls)),
                   controls=controls)


def _quoted(frame, d, metric, a, b):
    row = frame[(frame["dataset"] == d) & (frame["metric"] == metric) & (frame["model_a"] == a)
                & (frame["model_b"] == b)]
    assert len(row) == 1, (d, metric, a, b)
    return float(row["hb_p_holm"].iloc[0]), row["family"].iloc[0]


def test_claims_quote_the_adjusted_p_of_the_significance_tables(view, report_ctx):
    """T2 claims quote significance_table2's headline p (family table2), T3 claims significance_table3's
    (table3), the control claims controls.md's (controls): the same adjusted p for the same comparison."""
    from bench.report.controls import controls_frame
    from bench.report.tables import table2, table3

    sig2 = next(t.csv for t in table2(report_ctx) if t.stem == "significance_table2")
    sig3 = next(t.csv for t in table3(report_ctx) if t.stem == "significance_table3")
    ctrl = controls_frame(report_ctx)
    with_controls = ResultsView(view.records, controls=report_ctx.controls)
    by_id = {c["id"]: c for c in evaluate_claims(with_controls)}
    checked = 0
    for cid in ("T2-beats-all", "T2-significant"):
        for r in by_id[cid]["evidence"]:
            p, fam = _quoted(sig2, r["dataset"], r["metric"], "DiffuRec", r["best_baseline"])
            assert (r["hb_p_holm"], r["family"]) == (p, fam) == (p, "table2")
            checked += 1
    for cid in ("T3-transformer-over-gru", "T3-inner-product-over-rstar"):
        for r in by_id[cid]["evidence"]:
            p, fam = _quoted(sig3, r["dataset"], r["metric"], r["variant"], "DiffuRec")
            assert (r["hb_p_holm"], r["family"]) == (p, "table3")
            checked += 1
    for cid in ("C1-diffusion-adds-accuracy", "C2-beats-matched-sasrec"):
        for r in by_id[cid]["evidence"]:
            p, fam = _quoted(ctrl, r["dataset"], r["metric"], r["control"], "DiffuRec")
            assert (r["hb_p_holm"], r["family"]) == (p, "controls")
            checked += 1
    assert checked >= 12 + 12 + 8
