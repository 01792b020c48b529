"""bench.stats: tests, Holm, intervals, breakdown groups."""
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from bench import stats


def test_identical_models_are_not_significant():
    rng = np.random.default_rng(0)
    seeds = rng.normal(0.05, 0.002, size=5)
    w = stats.welch(seeds, seeds.copy())
    assert w["p"] == pytest.approx(1.0) and w["cohen_d"] == 0.0
    users = rng.random(1000)
    p = stats.paired(users, users.copy())
    assert p["p_t"] == 1.0 and p["p_w"] == 1.0 and p["mean_diff"] == 0.0
    assert (p["ci_low"], p["ci_high"]) == (0.0, 0.0)
    # identical constants on both sides (zero variance) are not "significant" either
    assert stats.welch([0.1, 0.1, 0.1], [0.1, 0.1, 0.1])["p"] == 1.0


def test_constant_shift_is_significant():
    rng = np.random.default_rng(1)
    a = rng.normal(0.05, 0.001, size=5)
    w = stats.welch(a + 0.01, a)
    assert w["p"] < 1e-4 and w["diff"] == pytest.approx(0.01) and w["cohen_d"] > 5
    ref = sps.ttest_ind(a + 0.01, a, equal_var=False)
    assert w["p"] == pytest.approx(ref.pvalue) and w["df"] == pytest.approx(ref.df)
    x = rng.random(500)
    p = stats.paired(x + 0.01 + rng.normal(0, 0.001, 500), x)
    assert p["p_t"] < 1e-10 and p["p_w"] < 1e-10
    assert p["ci_low"] < 0.01 < p["ci_high"] and p["mean_diff"] == pytest.approx(0.01, abs=5e-4)


def test_holm_hand_checked():
    # sorted: 0.005*4=0.02, 0.01*3=0.03, 0.03*2=0.06, 0.04*1=0.04 -> running max 0.06
    adj = stats.holm([0.01, 0.04, 0.03, 0.005])
    np.testing.assert_allclose(adj, [0.03, 0.06, 0.06, 0.02])
    adj = stats.holm([0.5, np.nan, 0.01])  # NaNs are kept and not counted (m = 2)
    np.testing.assert_allclose(adj, [0.5, np.nan, 0.02])
    assert stats.holm([0.9, 0.8])[0] == 1.0  # capped at 1
    frame = pd.DataFrame({"g": ["a", "a", "b"], "p": [0.01, 0.04, 0.04]})
    out = stats.add_holm(frame, ["p"], family=["g"])
    np.testing.assert_allclose(out["p_holm"], [0.02, 0.04, 0.04])


def test_t_interval_covers_known_mean():
    rng = np.random.default_rng(2)
    covered = 0
    for _ in range(400):
        lo, hi = stats.t_interval(rng.normal(3.0, 1.0, size=5))
        covered += lo <= 3.0 <= hi
    assert 0.92 <= covered / 400 <= 0.98
    lo, hi = stats.t_interval([1.0, 2.0, 3.0])  # mean 2, sd 1, t(0.975, 2) = 4.3027
    assert (lo, hi) == pytest.approx((2 - 4.302653 / math.sqrt(3), 2 + 4.302653 / math.sqrt(3)), rel=1e-6)
    assert all(math.isnan(v) for v in stats.t_interval([1.0]))


def test_summarize_and_versus_best():
    rows = []
    for seed, (g, s, d) in enumerate([(0.01, 0.030, 0.060), (0.012, 0.031, 0.062), (0.011, 0.029, 0.061)]):
        for model, v in (("GRU4Rec", g), ("SASRec", s), ("DiffuRec", d)):
            rows.append(("beauty", model, seed, "HR@10", v))
    values = pd.DataFrame(rows, columns=["dataset", "model", "seed", "metric", "value"])
    summ = stats.summarize(values).set_index("model")
    assert summ.loc["SASRec", "mean"] == pytest.approx(0.030)
    assert summ.loc["SASRec", "std"] == pytest.approx(np.std([0.030, 0.031, 0.029], ddof=1))
    vb = stats.versus_best(values, {}, ["HR@10"], "DiffuRec")
    row = vb.iloc[0]
    assert row["model_b"] == "SASRec" and row["improv_pct"] == pytest.approx(100 * (0.061 / 0.030 - 1))
    assert row["seeds_test"] == "Welch" and row["seeds_p_holm"] < 0.05
    assert math.isnan(row["paired_p"]) and math.isnan(row["hb_p"])  # no per-user data given
    assert row["family"] == "table2"
    pairs = stats.pairwise(values, {}, ["HR@10"])
    assert len(pairs) == 3 and set(pairs.columns) >= {"hb_p", "seeds_p", "paired_p", "wilcoxon_p", "p_a_beats_b"}


def _per_seed(mats: dict) -> dict:
    """{(dataset, model): {seed: (len(METRICS), n_users)}} from {(dataset, model): {seed: {metric: (n_users,)}}}."""
    from bench.store import METRICS

    out = {}
    for key, seeds in mats.items():
        out[key] = {}
        for s, by_metric in seeds.items():
            n = len(next(iter(by_metric.values())))
            out[key][s] = np.stack([by_metric.get(m, np.zeros(n)) for m in METRICS])
    return out


def test_pairwise_tests_over_users_pair_the_common_seeds():
    rng = np.random.default_rng(3)
    n = 300
    hit = {s: (rng.random(n) < 0.2).astype(float) for s in range(3)}
    better = {s: np.minimum(hit[s] + (rng.random(n) < 0.3), 1) for s in range(3)}
    per_seed = _per_seed({("d", "A"): {s: {"HR@10": hit[s]} for s in range(3)},
                          ("d", "B"): {s: {"HR@10": hit[s].copy()} for s in range(3)},
                          ("d", "C"): {0: {"HR@10": better[0]}}})  # one seed only
    values = pd.DataFrame([("d", m, s, "HR@10", float(per_seed[("d", m)][s][1].mean()))
                           for m in "ABC" for s in per_seed[("d", m)]],
                          columns=["dataset", "model", "seed", "metric", "value"])
    out = stats.pairwise(values, per_seed, ["HR@10"]).set_index(["model_a", "model_b"])
    ab, ac = out.loc[("A", "B")], out.loc[("A", "C")]
    assert ab["paired_p"] == 1.0 and ab["common_seeds"] == "0,1,2" and ab["hb_p"] == 1.0
    # A against one-seed C: over users on seed 0 only; no over-seeds statistic, no effect size
    assert ac["common_seeds"] == "0" and ac["paired_diff"] == pytest.approx(hit[0].mean() - better[0].mean())
    assert ac["wilcoxon_p"] < 1e-6 and math.isnan(ac["seeds_p"]) and math.isnan(ac["cohen_d"])
    assert "B has one seed" in ac["hb_note"] and ac["paired_p"] < ac["hb_p"] < 0.5 and ac["p_a_beats_b"] < 0.2


def test_wilcoxon_keeps_zero_differences_by_pratt():
    from scipy import stats as sps

    rng = np.random.default_rng(4)
    x = (rng.random(500) < 0.1).astype(float)
    y = np.where(rng.random(500) < 0.05, 1 - x, x)  # mostly zero differences
    got = stats.paired(x, y)
    assert got["p_w"] == pytest.approx(sps.wilcoxon(x - y, zero_method="pratt").pvalue)


def test_families_quote_one_adjusted_p():
    frame = pd.DataFrame({"dataset": ["d"] * 3, "metric": ["HR@10"] * 3, "model_a": ["A", "A", "B"],
                          "model_b": ["B", "C", "C"], "hb_p": [0.01, 0.02, 0.04]})
    first = stats.holm_family(frame.iloc[[0]], "table2", ["hb_p"])
    assert first["hb_p_holm"].tolist() == [0.01]
    pairs = stats.quote_family(frame, [first], "pairs-d", ["hb_p"])
    assert pairs["family"].tolist() == ["table2", "pairs-d", "pairs-d"]
    assert pairs["hb_p_holm"].tolist() == pytest.approx([0.01, 0.04, 0.04])  # Holm over the two new rows


def test_length_groups_half_open():
    hist = np.arange(1, 11)  # quantiles 2.8, 4.6, 6.4, 8.2
    group, edges, labels = stats.length_groups(hist)
    np.testing.assert_allclose(edges, np.quantile(hist, [0.2, 0.4, 0.6, 0.8]))
    assert group.tolist() == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4]
    assert labels[0] == "[1, 2.8]" and labels[1] == "(2.8, 4.6]" and labels[-1] == "(8.2, 10]"
    # ties at the minimum (short-sequence data): edges 4, 4, 5, 6; a boundary value goes to the lower group
    group, edges, _ = stats.length_groups(np.array([4, 4, 4, 4, 5, 5, 6, 6, 9, 12]))
    np.testing.assert_allclose(edges, [4, 4.6, 5.4, 6.6])
    assert group.tolist() == [0, 0, 0, 0, 2, 2, 3, 3, 4, 4]  # G2 = (4, 4.6] holds no integer: empty
    means, counts = stats.group_means(np.array([[1.0, 0.0, 1.0, 1.0]]), np.array([0, 0, 1, 3]), 4)
    np.testing.assert_allclose(means[0], [0.5, 1.0, np.nan, 1.0])
    assert counts.tolist() == [2, 1, 0, 1]


def test_best_and_second_ties():
    best, second = stats.best_and_second(pd.Series({"a": 1.0, "b": 3.0, "c": 3.0, "d": 2.0}))
    assert best == {"b", "c"} and second == {"d"}
