"""reports/<profile>/fidelity.md: DiffuRec's recipes, single-cause runs and DiffuRec vs SASRec, from a fake store."""
import numpy as np
import pandas as pd
import pytest

from bench import report, store
from bench.report import fidelity
from bench.profiles import load_profile
from bench.report.collect import collect
from tests.test_report import DIFFUREC_PARAMS, PROFILE, write_fake_run

CFG = load_profile("full")["fidelity"]  # the recipes and causes the real campaign declares


def _variant(root, model, base, seed, counts, params):
    write_fake_run(root, "beauty", model, seed, counts, base_model=base,
                   variant={"name": model, "params": params}, params={**DIFFUREC_PARAMS, **params}
                   if base == "DiffuRec" else params)


@pytest.fixture(scope="module")
def store_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("fid") / "results"
    for seed, off in enumerate((0, 2, -1)):
        write_fake_run(root, "beauty", "DiffuRec", seed, (40 + off, 20, 20), params=DIFFUREC_PARAMS)
        write_fake_run(root, "beauty", "SASRec", seed, (50 + off, 20, 20))
    _variant(root, "DiffuRec-paper-es", "DiffuRec", 0, (60, 20, 20), {"protocol": "paper"})
    _variant(root, "DiffuRec-embinit", "DiffuRec", 0, (40, 20, 20), {"embedding_init_std": 1.0})
    _variant(root, "DiffuRec-padattn", "DiffuRec", 0, (20, 20, 20), {"attention_padding": "release"})
    _variant(root, "SASRec-paper", "SASRec", 0, (45, 20, 20), {"protocol": "paper"})
    return root


def test_paired_difference_matches_the_hand_computed_mean_and_pairs_only_common_seeds():
    a = {0: np.tile([1.0, 0.0, 1.0, 1.0], (6, 1)), 1: np.tile([0.0, 0.0, 1.0, 1.0], (6, 1))}
    b = {0: np.tile([0.0, 0.0, 1.0, 0.0], (6, 1))}
    d = fidelity.paired_difference(a, b, "NDCG@10")
    assert d["seeds"] == [0] and d["n_users"] == 4
    assert d["diff"] == pytest.approx(0.5)  # seed 1 of a has no partner and is left out
    assert d["ci_low"] < 0.5 < d["ci_high"]
    assert fidelity.paired_difference(a, {5: b[0]}, "NDCG@10")["n_seeds"] == 0


def test_share_of_the_gap_closed_divides_points_by_points():
    # clean hits 2 of 100 users (2 %), the cause run 4 of 100: +2 points of the paper's 7.9125 - 2 gap
    n = len(fidelity.METRICS)
    clean, cause = np.zeros((n, 100)), np.zeros((n, 100))
    clean[:, :2], cause[:, :4] = 1.0, 1.0
    cfg = {**CFG, "causes": {"DiffuRec-embinit": "init"}}
    causes = fidelity.cause_frame(cfg, "beauty", {"DiffuRec": {0: clean}, "DiffuRec-embinit": {0: cause}})
    row = causes.set_index("metric").loc["HR@10"]
    paper = fidelity.references("beauty")["paper"]["HR@10"]
    assert row["diff_pct"] == pytest.approx(2.0)
    assert row["gap_closed"] == pytest.approx(100 * 2.0 / (paper - 2.0))  # about 34 %, not 0.34 %


def test_frames_follow_the_records(store_root):
    col = collect(store_root, PROFILE, fidelity.fidelity_models(CFG))
    values = {m: fidelity.seed_values(col, "beauty", m) for m in fidelity.fidelity_models(CFG)}
    recipes = fidelity.recipe_frame(CFG, "beauty", values)
    assert set(recipes["recipe"]) == {"clean", "paper-es"}  # no DiffuRec-paper record: not shown
    clean = recipes[(recipes["recipe"] == "clean") & (recipes["metric"] == "HR@5")].iloc[0]
    assert clean["n_seeds"] == 3 and clean["mean_pct"] == pytest.approx(100 * np.mean([40, 42, 39]) / 200)
    assert clean["paper_pct"] == pytest.approx(5.5758) and np.isfinite(clean["sd_pct"])
    causes = fidelity.cause_frame(CFG, "beauty", values).set_index(["model", "metric"])
    # padattn has 20 fewer rank-0 users than clean seed 0 (40): HR@10 drops 20/200 = 10 points
    assert causes.loc[("DiffuRec-padattn", "HR@10"), "diff_pct"] == pytest.approx(-10.0)
    assert causes.loc[("DiffuRec-padattn", "HR@10"), "seeds"] == "0"
    assert causes.loc[("DiffuRec-embinit", "HR@10"), "diff_pct"] == pytest.approx(0.0)
    # ... and against clean SASRec of the same seed (50 rank-0 users): 30 fewer, -15 points, seed 0 only
    assert causes.loc[("DiffuRec-padattn", "HR@10"), "sasrec_diff_pct"] == pytest.approx(-15.0)
    assert causes.loc[("DiffuRec-padattn", "HR@10"), "sasrec_seeds"] == "0"
    assert causes.loc[("DiffuRec-padattn", "HR@10"), "sasrec_ci_high_pct"] < 0
    versus = fidelity.versus_sasrec_frame(CFG, "beauty", values).set_index(["recipe", "metric"])
    assert versus.loc[("paper-es", "HR@10"), "diff_pct"] == pytest.approx(100 * (80 - 65) / 200)
    assert versus.loc[("clean", "HR@10"), "seeds"] == "0,1,2"


def test_render_writes_fidelity_with_a_generated_verdict_and_curves(store_root, tmp_path):
    paths = report.render(store_root, tmp_path, PROFILE, data_dir=tmp_path / "no-data", fidelity=CFG)
    md = (tmp_path / PROFILE / "fidelity.md").read_text()
    assert md.startswith("# Fidelity")
    assert "**Beauty, NDCG@10:** clean DiffuRec" in md and "`paper-es`" in md
    assert "Not finished yet: `paper`" in md
    assert "DiffuRec-padattn" in md and "DiffuRec-bidir" not in md.split("## Beauty")[1].split("### DiffuRec against")[0]
    assert (tmp_path / PROFILE / "figures" / "fidelity_curves_beauty.png") in paths
    csv = pd.read_csv(tmp_path / PROFILE / "fidelity.csv")
    assert set(csv["part"]) == {"recipe", "cause", "versus_sasrec"}


def test_a_recipe_in_training_shows_its_curve_so_far_and_hours_left(store_root, tmp_path):
    """DiffuRec-paper has no record: from the committed snapshot of `bench progress` its curve so far and
    its hours left appear in an "In training" section (and dashed in the figure), in no results table."""
    import json

    from bench.progress import progress_json, snapshot_path

    curve = [{"epoch": 1, "train_loss": 26.0, "valid_ndcg10": None}, {"epoch": 2, "train_loss": 14.6, "valid_ndcg10": 0.0021},
             {"epoch": 4, "train_loss": 9.2, "valid_ndcg10": 0.0054}]
    runs = [{"dataset": "beauty", "model": "DiffuRec-paper", "seed": 0, "epochs_done": 4, "s_per_epoch": 690.0,
             "best_epoch": 3, "hours_left_least": 3.5, "hours_left_most": 120.0, "segments": 2, "curve": curve},
            {"dataset": "beauty", "model": "SASRec", "seed": 3, "epochs_done": 1, "s_per_epoch": 60.0,  # not fidelity's
             "best_epoch": 0, "hours_left_least": 0.1, "hours_left_most": 1.0, "segments": 1, "curve": []}]
    out = tmp_path / "reports"
    snapshot_path(out, PROFILE).parent.mkdir(parents=True)
    snapshot_path(out, PROFILE).write_text(json.dumps(progress_json(PROFILE, runs, when="2026-12-06 17:00 UTC")))
    report.render(store_root, out, PROFILE, data_dir=tmp_path / "no-data", fidelity=CFG)
    md = (out / PROFILE / "fidelity.md").read_text()
    section = md.split("### In training (snapshot of 2026-12-06 17:00 UTC)")[1].split("###")[0]
    assert "| DiffuRec-paper (seed 0) | recipe `paper` | 4 | 0.540 (epoch 4) |" in section
    assert "| 9.200 | 3.5–120.0 |" in section and "SASRec (seed 3)" not in section
    assert "the runs in training are below" in md
    csv = pd.read_csv(out / PROFILE / "fidelity.csv")
    assert "DiffuRec-paper" not in set(csv.get("model", pd.Series(dtype=str)).dropna())  # no results table uses it
    frame = fidelity.curve_frame(CFG, collect(store_root, PROFILE, fidelity.fidelity_models(CFG)), "beauty",
                                 fidelity.training_runs(CFG, json.loads(snapshot_path(out, PROFILE).read_text()),
                                                        "beauty"))
    live = frame[frame["in_training"]]
    assert set(live["model"]) == {"DiffuRec-paper"} and list(live["epoch"]) == [1, 2, 4]


def test_no_fidelity_report_without_a_release_or_cause_run(tmp_path):
    root = tmp_path / "results"
    write_fake_run(root, "beauty", "DiffuRec", 0, (40, 20, 20), params=DIFFUREC_PARAMS)
    report.render(root, tmp_path / "reports", PROFILE, data_dir=tmp_path / "no-data", fidelity=CFG)
    assert not (tmp_path / "reports" / PROFILE / "fidelity.md").exists()


def test_the_profile_not_the_report_names_the_recipes(store_root, tmp_path):
    """Runs are recipes because the profile's ``fidelity:`` says so: without it no report; with other
    names, those runs."""
    report.render(store_root, tmp_path / "none", PROFILE, data_dir=tmp_path / "no-data")
    assert not (tmp_path / "none" / PROFILE / "fidelity.md").exists()
    cfg = {"recipes": {"suite": {"diffurec": "DiffuRec", "sasrec": "SASRec", "text": "ours"},
                       "release": {"diffurec": "DiffuRec-padattn", "sasrec": "SASRec-paper", "text": "theirs"}}}
    report.render(store_root, tmp_path / "other", PROFILE, data_dir=tmp_path / "no-data", fidelity=cfg)
    md = (tmp_path / "other" / PROFILE / "fidelity.md").read_text()
    assert "suite DiffuRec" in md and "`release`: theirs" in md and "DiffuRec-paper-es" not in md
    assert "No single-cause run" in md


def test_verdict_judges_reproduction_only_at_the_papers_budget():
    recipes = pd.DataFrame([
        {"recipe": "clean", "metric": "NDCG@10", "mean_pct": 3.9, "ratio_to_paper": 0.82, "paper_pct": 4.75,
         "n_seeds": 3, "users_ci_low_pct": 3.8, "users_ci_high_pct": 4.0},
        {"recipe": "paper-es", "metric": "NDCG@10", "mean_pct": 4.7, "ratio_to_paper": 0.99, "paper_pct": 4.75,
         "n_seeds": 1, "users_ci_low_pct": 4.5, "users_ci_high_pct": 4.9}])
    assert "reproduces the authors' DiffuRec" in fidelity.verdict(recipes, "beauty", comparable=True)
    reduced = fidelity.verdict(recipes, "beauty", comparable=False)
    assert "reduced budget" in reduced and "reproduces" not in reduced
    recipes.loc[1, ["mean_pct", "users_ci_low_pct", "users_ci_high_pct"]] = [4.0, 3.8, 4.2]
    assert "does not reach the paper's number" in fidelity.verdict(recipes, "beauty", comparable=True)


def test_diffurec_against_sasrec_uses_the_headline_test_over_seeds_and_users(store_root):
    col = collect(store_root, PROFILE, fidelity.fidelity_models(CFG))
    values = {m: fidelity.seed_values(col, "beauty", m) for m in fidelity.fidelity_models(CFG)}
    v = fidelity.versus_sasrec_frame(CFG, "beauty", values).set_index(["recipe", "metric"])
    clean = v.loc[("clean", "HR@10")]
    assert clean["n_seeds_diffurec"] == 3 and clean["n_seeds_sasrec"] == 3
    # seeds vary: the two-level interval is wider than the one conditional on the trained models
    assert clean["hb_ci_high_pct"] - clean["hb_ci_low_pct"] > clean["ci_high_pct"] - clean["ci_low_pct"]
    assert clean["hb_ci_low_pct"] <= clean["diff_pct"] <= clean["hb_ci_high_pct"]
    assert 0 <= clean["hb_p"] <= 1 and 0 <= clean["p_diffurec_beats"] < 0.5  # DiffuRec (fake) below SASRec
