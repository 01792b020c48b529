"""bench.report: render a small fake results store and check what comes out."""
import csv
import math
import re
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bench import report, store
from bench.report.collect import per_metric_ranks

PROFILE = "fake"
DIFFUREC_PARAMS = {"approximator": "transformer", "rounding": "inner_product", "noise_schedule": "truncated_linear",
                   "lambda_scale": 0.001, "reverse_steps": 32}


def fake_ranks(counts, n_users, rng):
    """0-based ranks with exactly h1 users at rank 0, h2 at rank 7, h3 at rank 15, the rest at 100+.

    HR@5 = h1/n, HR@10 = (h1+h2)/n, HR@20 = (h1+h2+h3)/n; shuffled so that users pair up randomly.
    """
    h1, h2, h3 = counts
    rest = n_users - h1 - h2 - h3
    ranks = np.concatenate([np.zeros(h1), np.full(h2, 7), np.full(h3, 15), 100 + rng.integers(0, 500, rest)])
    return rng.permutation(ranks).astype(np.int32)


def write_fake_run(root, dataset, model, seed, counts, n_users=200, base_model=None, variant=None, params=None,
                   extra_evals=None, status="ok", profile=PROFILE):
    """One run folder written with ``store.write_run``, shaped like the runner's records."""
    base_model = base_model or model
    folder = store.run_dir(root, profile, dataset, model, seed)
    record = {"schema": store.SCHEMA, "status": status, "profile": profile, "dataset": dataset, "model": model,
              "base_model": base_model, "seed": seed, "protocol": "clean",
              "params": {"epochs": 20, "train_batch_size": 256, **(params or {})},
              "variant": variant, "budget": {"max_users": n_users, "max_train_prefixes": None},
              "env": {"python": "3.11.9", "torch": "2.13.0", "recbole": "1.2.1", "numpy": "2.4.6",
                      "platform": "Linux", "cpu": "fake", "device": "cpu", "git_revision": "abc1234",
                      "git_dirty": False}}
    if status != "ok":
        record.update(error={"type": "RuntimeError", "message": "boom: out of memory", "traceback": "..."})
        store.write_run(folder, record, None)
        return
    ds_rng = np.random.default_rng(zlib.crc32(dataset.encode()))
    rng = np.random.default_rng([seed, zlib.crc32(f"{dataset}/{model}".encode())])
    test = fake_ranks(counts, n_users, rng)
    ranks = {"users": np.arange(n_users, dtype=np.int64), "test": test, "valid": fake_ranks(counts, n_users, rng),
             "hist_len": ds_rng.integers(3, 60, n_users).astype(np.int32),
             "test_item": ds_rng.integers(1, 1000, n_users).astype(np.int32),
             "test_is_head": ds_rng.random(n_users) < 0.4}
    evals = {}
    for steps in extra_evals or ():
        r = fake_ranks((max(counts[0] - 5, 0), counts[1], counts[2]), n_users, rng)
        name = f"reverse_steps={steps}"
        ranks[f"test@{name}"] = r
        evals[name] = {"params": {"reverse_steps": steps}, "metrics": {"test": store.metrics_from_ranks(r)},
                       "eval_s": 0.01 * steps, "n_users": n_users}
    epochs = 5 + seed
    record.update(
        error=None, extra_evals=evals,
        metrics={"test": store.metrics_from_ranks(test), "valid": store.metrics_from_ranks(ranks["valid"])},
        curve=[{"epoch": e, "train_loss": 5.0 / (e + 1) + 0.01 * seed, "train_s": 1.0,
                "valid": {"NDCG@10": 0.1}} for e in range(epochs)],
        timing={"train_s": 10.0, "eval_s": 0.5 * epochs, "test_eval_s": 0.5, "epochs_run": epochs,
                "s_per_epoch": 2.0, "s_per_batch": 0.1 + 0.01 * len(model) + 0.005 * seed,
                "batches_per_epoch": 20, "n_train_instances": 5000, "n_eval_users": n_users},
        data={"name": dataset, "sha256": "0" * 64, "n_users": n_users, "n_users_full": 22363, "n_items": 12101,
              "head_rule": "head = top 20% items by frequency"},
        checkpoint={"rule": "NDCG@10", "best_epoch": 2})
    store.write_run(folder, record, ranks)


# (h1, h2, h3) per model; per-seed offsets on h1.  beauty: DiffuRec >> SASRec > GRU4Rec;
# toys: SASRec just above DiffuRec in every metric (no significant difference) > GRU4Rec.
COUNTS = {
    ("beauty", "GRU4Rec"): ((10, 10, 10), (0, 1, 2)),
    ("beauty", "SASRec"): ((30, 20, 20), (1, 0, 2)),
    ("beauty", "DiffuRec"): ((60, 30, 30), (0, 2, -1)),
    ("toys", "GRU4Rec"): ((10, 10, 10), (2, 0, 1)),
    ("toys", "SASRec"): ((41, 20, 20), (0, 1, -1)),
    ("toys", "DiffuRec"): ((40, 20, 20), (1, -1, 0)),
}


def build_store(root):
    for (dataset, model), (counts, offsets) in COUNTS.items():
        for seed, off in enumerate(offsets):
            params = dict(DIFFUREC_PARAMS) if model == "DiffuRec" else {}
            write_fake_run(root, dataset, model, seed, (counts[0] + off, *counts[1:]), params=params,
                           extra_evals=(4, 8) if model == "DiffuRec" else None)
    for seed, off in enumerate((0, 1, -1)):  # ablation: GRU approximator, clearly worse
        write_fake_run(root, "beauty", "DiffuRec-GRU", seed, (45 + off, 25, 25), base_model="DiffuRec",
                       variant={"name": "DiffuRec-GRU", "params": {"approximator": "gru"}},
                       params={**DIFFUREC_PARAMS, "approximator": "gru"})
    for seed in range(2):  # one other noise schedule: Fig. 3 on beauty only
        write_fake_run(root, "beauty", "DiffuRec-cosine", seed, (55 + seed, 30, 30), base_model="DiffuRec",
                       variant={"name": "DiffuRec-cosine", "params": {"noise_schedule": "cosine"}},
                       params={**DIFFUREC_PARAMS, "noise_schedule": "cosine"})
    write_fake_run(root, "toys", "SASRec", 3, None, status="failed")


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    root = tmp_path_factory.mktemp("store")
    build_store(root / "results")
    expected = [(d, m, s) for (d, m) in COUNTS for s in range(3)] + [("toys", "SASRec", 3), ("toys", "GRU4Rec", 5)]
    paths = report.render(root / "results", root / "reports", PROFILE, data_dir=root / "no-data", expected=expected)
    return root / "reports" / PROFILE, paths


def test_render_writes_tables_figures_and_index(rendered):
    out, paths = rendered
    names = {p.relative_to(out).as_posix() for p in paths}
    for stem in ("table1", "table2", "table3", "gap_to_paper", "significance_table2", "significance_table3",
                 "significance_pairs_beauty", "significance_pairs_toys", "summary_all_runs", "breakdown_head_tail",
                 "breakdown_length"):
        assert f"{stem}.md" in names and f"{stem}.csv" in names, stem
    assert {"table2.tex", "table3.tex", "index.md"} <= names
    for fig in ("fig8_head_tail_beauty", "fig9_seq_length_toys", "fig10_loss_beauty", "fig11_efficiency_toys",
                "fig12_reverse_steps_beauty", "fig3_schedules_beauty"):
        for ext in ("png", "pdf"):
            assert (out / "figures" / f"{fig}.{ext}").stat().st_size > 1000, fig
    assert not (out / "figures" / "fig3_schedules_toys.png").exists()
    assert all(p.exists() for p in paths)
    index = (out / "index.md").read_text()
    for link in re.findall(r"\]\(([^)]+)\)", index):
        assert (out / link).exists(), link
    assert "Fig. 3 (Toys)" in index and "Fig. 5 (Beauty)" in index  # listed as not drawn
    t1 = pd.read_csv(out / "table1.csv")
    assert list(t1["dataset"]) == ["beauty", "toys"] and t1["status"].str.startswith("unavailable").all()


def test_table2_bold_underline_direction_marks(rendered):
    out, _ = rendered
    cells = pd.read_csv(out / "table2.csv").set_index(["dataset", "metric", "model"]).sort_index()
    for metric in store.METRICS:
        b = cells.loc[("beauty", metric)]
        assert b.loc["DiffuRec", "best"] and b.loc["SASRec", "second"] and b.loc["DiffuRec", "mark"] == "▲"
        assert b.loc["DiffuRec", "family"] == "table2" and b.loc["DiffuRec", "hb_p_holm"] < 0.05
        assert not b.loc["GRU4Rec", ["best", "second"]].any()
        assert b.loc["DiffuRec", "best_baseline"] == "SASRec" and b.loc["DiffuRec", "improv_pct"] > 50
        t = cells.loc[("toys", metric)]
        assert t.loc["SASRec", "best"] and t.loc["DiffuRec", "second"] and pd.isna(t.loc["DiffuRec", "mark"])
        assert t.loc["DiffuRec", "improv_pct"] < 0
    # HR@5 on beauty: DiffuRec h1 = 60, 62, 59 of 200 users
    assert cells.loc[("beauty", "HR@5", "DiffuRec"), "mean_pct"] == pytest.approx(100 * np.mean([60, 62, 59]) / 200)
    md = (out / "table2.md").read_text()
    row = next(line for line in md.splitlines() if line.startswith("| Beauty | HR@5 |"))
    cols = [c.strip() for c in row.strip("|").split("|")]
    assert cols[2].count("**") == 0 and cols[3].startswith("<u>") and cols[4].startswith("**")
    assert cols[4].endswith("▲") and cols[5].endswith("%")
    assert "sample standard deviation" in md and "▼ significantly worse" in md and "Holm family" in md
    row = next(line for line in md.splitlines() if line.startswith("| Toys | HR@5 |"))
    cols = [c.strip() for c in row.strip("|").split("|")]
    assert cols[3].startswith("**") and cols[4].startswith("<u>") and not cols[4].endswith(("▲", "▼"))
    tex = (out / "table2.tex").read_text()
    assert r"\toprule" in tex and r"\textbf{" in tex and r"\underline{" in tex and r"$^{\blacktriangle}$" in tex


def test_table3_and_gap(rendered):
    out, _ = rendered
    t3 = pd.read_csv(out / "table3.csv")
    gru = t3[(t3["ablation"] == "w GRU") & (t3["metric"] == "HR@5")].iloc[0]
    assert gru["model"] == "DiffuRec-GRU" and gru["mark"] == "▼" and gru["change_vs_diffurec_pct"] < 0
    assert set(t3["dataset"]) == {"beauty"}
    gap = pd.read_csv(out / "gap_to_paper.csv")
    assert len(gap) == 240 + 72
    row = gap[(gap["table"] == 2) & (gap["dataset"] == "beauty") & (gap["model"] == "DiffuRec")
              & (gap["metric"] == "HR@5")].iloc[0]
    assert row["paper_pct"] == pytest.approx(5.5758) and row["n_seeds"] == 3
    assert row["ratio"] == pytest.approx(row["ours_pct"] / 5.5758)
    assert row["ci95_low_pct"] < row["ours_pct"] < row["ci95_high_pct"] and row["paper_in_ci95"] in (False, "False")
    assert gap[(gap["dataset"] == "steam")]["n_seeds"].eq(0).all()


def test_index_lists_missing_and_failed(rendered):
    out, _ = rendered
    index = (out / "index.md").read_text()
    assert "- Toys (1 expected run): not runnable" in index  # no data in this test: apart, not in the matrix
    assert "| toys | SASRec | 3 |" not in index.split("Failed")[0]  # failed, not missing
    assert "RuntimeError: boom: out of memory" in index
    assert "abc1234" in index and "Protocol: clean" in index and "2.13.0" in index
    assert "Welch" in index and "Holm" in index


def test_paper_tables_transcription_consistent():
    """The paper's Improv. column, recomputed from the transcribed values, matches its printed text."""
    improv = {"beauty": [57.26, 26.21, 15.80, 56.72, 47.02, 47.75], "toys": [22.76, 7.48, 3.49, 34.34, 22.98, 22.60],
              "ml-1m": [10.78, 10.76, 10.71, 11.36, 11.16, 11.06], "steam": [10.95, 11.19, 11.84, 10.80, 10.97, 11.39]}
    t2, t3 = report.paper_table("table2"), report.paper_table("table3")
    assert len(t2) == 240 and len(t3) == 72 and set(t2["model"]) == set(report.PAPER_MODELS)
    for dataset, values in improv.items():
        for metric, printed in zip(store.METRICS, values):
            s = t2[(t2["dataset"] == dataset) & (t2["metric"] == metric)].set_index("model")["value_percent"]
            ours = 100 * (s["DiffuRec"] / s.drop("DiffuRec").max() - 1)
            assert ours == pytest.approx(printed, abs=0.006), (dataset, metric)
    full = t3[t3["ablation"] == "DiffuRec"].set_index(["dataset", "metric"])["value_percent"]
    same = t2[t2["model"] == "DiffuRec"].set_index(["dataset", "metric"])["value_percent"]
    assert (full - same.loc[full.index]).abs().max() == 0


def test_render_empty_store(tmp_path):
    paths = report.render(tmp_path / "results", tmp_path / "reports", "nothing", data_dir=tmp_path,
                          expected=[("beauty", "SASRec", 0)])
    index = (tmp_path / "reports" / "nothing" / "index.md").read_text()
    assert "- Beauty (1 expected run): not runnable" in index and any(p.name == "table1.md" for p in paths)


def test_paper_protocol_uses_per_metric_ranks():
    a, b = np.array([0, 50]), np.array([50, 0])
    assert per_metric_ranks({"test": a, "test@HR@10": b}, "HR@10") is b
    assert per_metric_ranks({"test": a, "test@HR@10": b}, "NDCG@10") is a


def test_tuning_table_marks_the_best_validation_setting():
    from bench.report import tuning_table

    def rec(model, seed, valid, test=0.01):
        return {"dataset": "beauty", "model": model, "base_model": "STOSA", "seed": seed,
                "metrics": {"valid": {"NDCG@10": valid}, "test": {"NDCG@10": test}}}

    records = [rec("STOSA", 0, 0.02), rec("STOSA", 1, 0.5),  # seed 1 was not tuned: ignored
               rec("STOSA-tune-attn_dropout_prob=0.2", 0, 0.03)]
    frame = tuning_table(records).set_index("setting")
    assert frame.loc["default", "seeds"] == 1 and frame.loc["default", "valid_NDCG10"] == 0.02
    assert bool(frame.loc["attn_dropout_prob=0.2", "best"]) and not bool(frame.loc["default", "best"])


def test_validation_choice_and_the_tuned_runs_that_must_match_it():
    from bench.report.tuning import choice_problem, validation_choice

    def rec(model, seed, valid, params):
        return {"dataset": "beauty", "model": model, "base_model": "SASRec", "seed": seed, "status": "ok",
                "params": {"epochs": 200, **params}, "metrics": {"valid": {"NDCG@10": valid}, "test": {"NDCG@10": 0.9}}}

    grid = [rec("SASRec", 0, 0.020, {"hidden_size": 64}), rec("SASRec-tune-h128", 0, 0.030, {"hidden_size": 128}),
            rec("SASRec-tune-h32", 0, 0.010, {"hidden_size": 32})]
    failed = {**rec("SASRec-tune-h16", 0, 0.9, {"hidden_size": 16}), "status": "failed"}  # never chosen
    choice = validation_choice(grid + [failed], "beauty", "SASRec")
    assert choice["setting"] == "h128" and choice["params"]["hidden_size"] == 128 and choice["n_settings"] == 3
    good = [rec("SASRec-tuned", s, 0.0, {"hidden_size": 128}) for s in (0, 1, 2)]
    assert choice_problem(grid + good, "beauty", "SASRec-tuned", 3) == ""
    assert "has 3 of 6 settings" in choice_problem(grid + good, "beauty", "SASRec-tuned", 6)
    bad = good[:2] + [rec("SASRec-tuned", 2, 0.0, {"hidden_size": 32})]  # test-picked, say
    assert "seed 2 is not the validation-best setting h128" in choice_problem(grid + bad, "beauty", "SASRec-tuned", 3)


def test_the_chosen_settings_own_runs_stand_for_the_tuned_models_missing_seeds():
    """No `<model>-tuned` rerun of a seed the chosen setting already ran: it would repeat it bit for bit."""
    from bench.report.tuning import _tuning_md, choice_problem, stand_in_runs, tuning_table

    def rec(model, seed, valid, params):
        return {"dataset": "beauty", "model": model, "base_model": "SASRec", "seed": seed, "status": "ok",
                "params": {"epochs": 200, **params}, "variant": {"name": model, "params": params} if params else None,
                "metrics": {"valid": {"NDCG@10": valid}, "test": {"NDCG@10": 0.9}}, "_dir": f"/{model}/{seed}"}

    base = [rec("SASRec", s, 0.030, {"hidden_size": 64}) for s in (0, 1, 2)]
    grid = base + [rec("SASRec-tune-h128", 0, 0.020, {"hidden_size": 128})]
    lent = stand_in_runs(grid, ["SASRec-tuned"])  # the default is chosen: all three base runs
    assert [(r["model"], r["seed"], r["stands_in_from"], r["_dir"]) for r in lent] == [
        ("SASRec-tuned", s, "SASRec", f"/SASRec/{s}") for s in (0, 1, 2)]
    assert all(r["variant"]["name"] == "SASRec-tuned" for r in lent)  # never a Table 2 row
    assert stand_in_runs(grid + lent, ["SASRec-tuned"]) == []        # idempotent
    assert choice_problem(grid, "beauty", "SASRec-tuned", 2) == ""
    assert "has 2 of 6 settings" in choice_problem(grid, "beauty", "SASRec-tuned", 6)
    assert "seeds 0, 1, 2 are `SASRec`'s runs" in _tuning_md(tuning_table(grid), grid)

    better = grid + [rec("SASRec-tune-d0.2", 0, 0.040, {"dropout": 0.2})]  # a setting beats the default
    assert [(r["seed"], r["stands_in_from"]) for r in stand_in_runs(better, ["SASRec-tuned"])] == [
        (0, "SASRec-tune-d0.2")]  # only the seed that setting ran
    own = [rec("SASRec-tuned", s, 0.0, {"dropout": 0.2}) for s in (1, 2)]
    assert choice_problem(better + own, "beauty", "SASRec-tuned", 3) == ""
    md = _tuning_md(tuning_table(better + own), better + own)
    assert "`SASRec-tuned` runs it on seeds 1, 2; seed 0 is `SASRec-tune-d0.2`'s run" in md
    assert choice_problem(better + own[:1], "beauty", "SASRec-tuned", 3) == ""
    assert "seed 0 is `SASRec-tune-d0.2`'s run (the same config and seed); seed 2 has no run yet" in _tuning_md(
        tuning_table(better), better + own[:1])
    wrong = [rec("SASRec-tuned", 1, 0.0, {"hidden_size": 128})]  # runs another setting than validation's
    assert "seed 1 is not the validation-best setting d0.2" in choice_problem(better + wrong, "beauty",
                                                                              "SASRec-tuned", 3)
    assert stand_in_runs(better, ["SASRec-matched"]) == []  # only <model>-tuned names borrow


def test_controls_table_tables_the_runs_that_stand_for_a_tuned_control(tmp_path):
    """Default chosen: SASRec's run is SASRec-tuned's seed 0.  A setting chosen: its tuning run is seed 0
    and SASRec-tuned's own run seed 1, averaged together; neither copy becomes a Table 2 row."""
    write_fake_run(tmp_path, "beauty", "DiffuRec", 0, (60, 30, 30), params=DIFFUREC_PARAMS)
    write_fake_run(tmp_path, "beauty", "SASRec", 0, (70, 30, 30))
    write_fake_run(tmp_path, "beauty", "SASRec-tune-d0.2", 0, (20, 10, 10), base_model="SASRec",
                   variant={"name": "SASRec-tune-d0.2", "params": {"dropout": 0.2}}, params={"dropout": 0.2})
    out = tmp_path / "reports" / PROFILE
    report.render(tmp_path, tmp_path / "reports", PROFILE, controls={"SASRec-tuned": "tuning budget"})
    frame = pd.read_csv(out / "controls.csv")
    summary = pd.read_csv(out / "summary_all_runs.csv")
    assert set(frame["model_a"]) == {"SASRec-tuned"}
    hr10 = frame[frame["metric"] == "HR@10"].iloc[0]
    ours = summary[(summary["model"] == "SASRec") & (summary["metric"] == "HR@10")]["mean"].iloc[0]
    assert np.isclose(hr10["mean_a"], ours) and hr10["n_seeds_a"] == 1  # SASRec's own run, under the control's name
    assert "validation picks `default` of the 2 tuning settings with records so far; seed 0 is `SASRec`'s run" \
        in (out / "controls.md").read_text()
    assert "SASRec-tuned" not in (out / "table2.md").read_text()

    # a better setting: its seed-0 tuning run plus SASRec-tuned's own seed 1
    write_fake_run(tmp_path, "beauty", "SASRec-tune-h128", 0, (90, 30, 30), base_model="SASRec",
                   variant={"name": "SASRec-tune-h128", "params": {"hidden_size": 128}}, params={"hidden_size": 128})
    write_fake_run(tmp_path, "beauty", "SASRec-tuned", 1, (50, 30, 30), base_model="SASRec",
                   variant={"name": "SASRec-tuned", "params": {"hidden_size": 128}}, params={"hidden_size": 128})
    records = {r["model"] + str(r["seed"]): r for r in store.load_records(tmp_path, PROFILE)}
    for r in records.values():  # validation as test, so the better setting is picked
        r["metrics"]["valid"] = dict(r["metrics"]["test"])
        store.write_json(Path(r["_dir"]) / "record.json", {k: v for k, v in r.items() if k != "_dir"})
    report.render(tmp_path, tmp_path / "reports", PROFILE, controls={"SASRec-tuned": "tuning budget"})
    frame = pd.read_csv(out / "controls.csv")
    hr10 = frame[frame["metric"] == "HR@10"].iloc[0]
    both = [records[k]["metrics"]["test"]["HR@10"] for k in ("SASRec-tune-h1280", "SASRec-tuned1")]
    assert hr10["n_seeds_a"] == 2 and np.isclose(hr10["mean_a"], np.mean(both))
    md = (out / "controls.md").read_text()
    assert "validation picks `h128` of the 3 tuning settings with records so far; seed 0 is `SASRec-tune-h128`'s run" in md
    assert "`SASRec-tuned` runs it on seed 1; seed 0 is `SASRec-tune-h128`'s run" in (out / "tuning.md").read_text()
    assert len(store.load_records(tmp_path, PROFILE)) == 5  # nothing written under the borrowed name


def test_partial_grid_shows_seed_counts_missing_models_and_unconverged_runs(tmp_path):
    """A store mid-campaign: each cell says how many seeds it rests on, absent models are named,
    and a run stopped at the epoch cap is marked in Table 2 and listed in the index."""
    for seed in (0, 1):
        write_fake_run(tmp_path, "beauty", "DiffuRec", seed, (60, 30, 30), params=DIFFUREC_PARAMS)
    write_fake_run(tmp_path, "beauty", "SASRec", 0, (30, 20, 20))
    record = store.read_record(store.run_dir(tmp_path, PROFILE, "beauty", "SASRec", 0))
    record["checkpoint"].update(converged=False, stopped_by="epoch_cap")
    store.write_json(store.run_dir(tmp_path, PROFILE, "beauty", "SASRec", 0) / "record.json",
                     {k: v for k, v in record.items() if k != "_dir"})
    expected = [("beauty", m, s) for m in ("GRU4Rec", "SASRec", "DiffuRec") for s in (0, 1)]
    report.render(tmp_path, tmp_path / "reports", PROFILE, expected=expected)
    table2 = (tmp_path / "reports" / PROFILE / "table2.md").read_text()
    sasrec_row = next(line for line in table2.splitlines() if line.startswith("| Beauty | HR@10"))
    assert "(n=1)†" in sasrec_row and sasrec_row.count("(n=") == 1  # DiffuRec has both seeds
    assert "Partial grid" in table2 and "GRU4Rec 0/2" in table2 and "SASRec 1/2" in table2
    index = (tmp_path / "reports" / PROFILE / "index.md").read_text()
    assert "Not converged (stopped at the epoch cap" in index


def test_controls_table_pairs_each_control_with_diffurec(tmp_path):
    """A control run and an extra evaluation of DiffuRec (x_T = 0) each against DiffuRec, per user."""
    for seed in (0, 1):
        write_fake_run(tmp_path, "beauty", "DiffuRec", seed, (60, 30, 30), params=DIFFUREC_PARAMS,
                       extra_evals=(1,))
        write_fake_run(tmp_path, "beauty", "DiffuRec-nodiff", seed, (40, 20, 20), base_model="DiffuRec",
                       variant={"name": "DiffuRec-nodiff", "params": {"lambda_scale": 0.0}},
                       params={**DIFFUREC_PARAMS, "lambda_scale": 0.0})
    controls = {"DiffuRec-nodiff": "no diffusion", "DiffuRec@reverse_steps=1": "one step", "SASRec-tuned": "absent"}
    report.render(tmp_path, tmp_path / "reports", PROFILE, controls=controls)
    frame = pd.read_csv(tmp_path / "reports" / PROFILE / "controls.csv")
    assert set(frame["model_a"]) == {"DiffuRec-nodiff", "DiffuRec@reverse_steps=1"} and set(frame["model_b"]) == {"DiffuRec"}
    nodiff = frame[(frame["model_a"] == "DiffuRec-nodiff") & (frame["metric"] == "HR@10")].iloc[0]
    assert nodiff["paired_diff"] < 0 and nodiff["paired_ci_high"] < 0  # 60 vs 40 users at rank 0
    assert np.isclose(nodiff["mean_a"] - nodiff["mean_b"], -0.15)     # (40+20 - 60-30) / 200
    # same users and seeds on both sides: the paired mean difference is the difference of means, in every row
    assert np.allclose(frame["paired_diff"], frame["mean_a"] - frame["mean_b"])
    md = (tmp_path / "reports" / PROFILE / "controls.md").read_text()
    assert "no diffusion" in md and "SASRec-tuned" not in md


def test_tuning_md_names_the_choice_and_the_variant_to_add():
    from bench.report.tuning import _tuning_md, tuning_table

    def rec(model, valid, params):
        return {"dataset": "beauty", "model": model, "base_model": "SASRec", "seed": 0, "status": "ok",
                "params": {"epochs": 200, **params}, "variant": {"name": model, "params": params} if params else None,
                "metrics": {"valid": {"NDCG@10": valid}, "test": {"NDCG@10": 0.9}}}

    records = [rec("SASRec", 0.02, {}), rec("SASRec-tune-h128", 0.03, {"hidden_size": 128})]
    md = _tuning_md(tuning_table(records), records)
    assert "validation picks `h128` of 2 settings" in md
    assert "seed 0 is `SASRec-tune-h128`'s run (the same config and seed)" in md  # seed 0 needs no rerun
    assert "`{name: SASRec-tuned, model: SASRec, params: {hidden_size: 128}, datasets: [beauty], seeds: [1, 2]}`" in md


def test_the_palette_stays_distinct_for_any_number_of_models():
    """Eleven models (or thirty) never wrap onto a colour already in use; the paper's ten keep theirs."""
    from bench.report.figures.style import colors

    names = list(report.PAPER_MODELS) + [f"Extra{i:02d}" for i in range(20)]
    palette = colors(names)
    assert len({tuple(palette[m]) for m in names}) == len(names)
    assert colors(["SASRec"])["SASRec"] == palette["SASRec"]


def test_index_opens_with_the_audits_verdict_and_flags_a_stale_audit(tmp_path):
    """index.md states its record set; beside an audit.json of the same set it opens with its claims,
    beside one of another set it says the audit is stale."""
    import json

    from bench.report.index import records_stamp

    build_store(tmp_path / "results")
    out = tmp_path / "reports" / PROFILE
    out.mkdir(parents=True)
    stamp = records_stamp(store.load_records(tmp_path / "results", PROFILE, status=None))
    claims = [{"id": "T2-beats-all", "verdict": "does not hold", "statement": "DiffuRec beats all.", "source": "Table 2",
               "evidence": [{"dataset": "beauty", "metric": "HR@10", "target": 0.07, "best_baseline": "SASRec",
                             "baseline": 0.08, "improv_pct": -12.5, "hb_p_holm": 0.02, "family": "table2", "p_a_beats_b": 0.1,
                             "n_seeds": "3/3"}]}]
    for audit_stamp, said in ((stamp, "rendered from the same record set"), ({**stamp, "ok": 1}, "The audit is stale")):
        (out / "audit.json").write_text(json.dumps({"records_stamp": audit_stamp, "claims": claims,
                                                    "integrity": {"passed": True}, "determinism": {}}))
        (out / "audit.md").write_text("# Audit\n")
        report.render(tmp_path / "results", tmp_path / "reports", PROFILE)
        index = (out / "index.md").read_text()
        assert f"record set {stamp['digest']}" in index and said in index
        assert index.index("## Verdict") < index.index("## Budget")
        assert "T2-beats-all — **does not hold**" in index and "| Beauty | HR@10 | 7.00 | SASRec | 8.00 | -12.5% |" in index


def test_an_audit_names_no_machine_path(tmp_path):
    from bench.audit.build import _shown_paths

    shown = _shown_paths(tmp_path / "check", tmp_path / "data")
    assert set(shown.values()) == {"<outside the repository>/check", "<outside the repository>/data"}


@pytest.mark.skipif(not (Path(__file__).resolve().parent.parent / "results" / "quick").exists(),
                    reason="no committed quick records")
def test_committed_quick_reports_re_render_byte_identical(tmp_path, repo_root):
    """reports/quick is what its committed records give today: re-rendered, every Markdown and CSV file
    (index.md included, which opens with the committed audit's verdict) comes out byte for byte."""
    from conftest import AVAILABLE  # Table 1 and the index's unrunnable-dataset lines read the data

    if len(AVAILABLE) < 3:
        pytest.skip("the released splits are needed (Table 1, the index's unrunnable datasets)")
    from bench.grid import expected_entries
    from bench.profiles import load_profile

    committed = repo_root / "reports" / "quick"
    out = tmp_path / "reports"
    (out / "quick").mkdir(parents=True)
    for name in ("audit.json", "audit.md"):
        (out / "quick" / name).write_bytes((committed / name).read_bytes())
    (out / "speed").mkdir()
    for page in (repo_root / "reports" / "speed").glob("*.md"):  # the index links the cost pages that exist
        (out / "speed" / page.name).write_bytes(page.read_bytes())
    profile = load_profile("quick")
    report.render(repo_root / "results", out, "quick",
                  expected=[(e.dataset, e.model, e.seed) for e in expected_entries(profile)],
                  controls=profile.get("controls"), fidelity=profile.get("fidelity"))
    for path in sorted(committed.glob("*.md")):
        assert (out / "quick" / path.name).read_bytes() == path.read_bytes(), f"reports/quick/{path.name} is stale"
    for path in sorted(committed.glob("*.csv")):
        _assert_same_table(out / "quick" / path.name, path)


def _assert_same_table(fresh, committed):
    """The CSVs carry full float precision, so a sum taken in another order (another CPU's SIMD width,
    another BLAS) moves their tenth digit; the Markdown, rounded for reading, is compared byte for byte.
    Cells are equal as text, or as numbers to a relative 1e-6, which no change of a result survives."""
    rows_new = list(csv.reader(fresh.open()))
    rows_old = list(csv.reader(committed.open()))
    name = f"reports/quick/{committed.name}"
    assert len(rows_new) == len(rows_old), f"{name} is stale: {len(rows_new)} rows against {len(rows_old)}"
    for i, (a, b) in enumerate(zip(rows_new, rows_old)):
        assert len(a) == len(b), f"{name} is stale: row {i} has {len(a)} cells against {len(b)}"
        for j, (x, y) in enumerate(zip(a, b)):
            if x == y:
                continue
            try:
                close = math.isclose(float(x), float(y), rel_tol=1e-6, abs_tol=1e-12)
            except ValueError:
                close = False
            assert close, f"{name} is stale: row {i}, column {rows_old[0][j]!r}: {x!r} against {y!r}"
