"""The two-level bootstrap (bench/stats/hierarchical_bootstrap.py) on synthetic stores with known effects.

A store: per-user values x[m, s, u] = user difficulty u + model-by-user term + effect(m)
+ seed effect (m, s) + noise (m, s, u), users drawn afresh per experiment, so the true
difference is exactly ``effect`` over both sources of variation.  The validation figures of
docs/statistics.md are these tests' measurements (run with -s to print them).
"""
import math

import numpy as np
import pytest
from scipy import stats as sps

from bench.stats.hierarchical_bootstrap import (UserDraws, compare_ranks, compare_runs, interaction_variance)

N_USERS, N_BOOT, N_EXPERIMENTS = 400, 300, 300


def synthetic_store(rng, seeds=(3, 3), effect=0.0, sd_seed=0.3, n_users=N_USERS, sd_user=1.0, sd_model_user=0.5,
                    sd_noise=1.0):
    """({seed: (n_users,)} of A, same of B): A's population mean exceeds B's by ``effect``."""
    difficulty = rng.normal(0, sd_user, n_users)
    out = []
    for n, eff in zip(seeds, (effect, 0.0)):
        per_model = rng.normal(0, sd_model_user, n_users)
        out.append({s: difficulty + per_model + eff + rng.normal(0, sd_seed) + rng.normal(0, sd_noise, n_users)
                    for s in range(n)})
    return out


def _experiments(seeds, effect=0.0, sd_seed=0.3, n=N_EXPERIMENTS, base=0):
    rng = np.random.default_rng(base)
    return [compare_runs(*synthetic_store(rng, seeds, effect, sd_seed), n_boot=N_BOOT, seed=base + i)
            for i in range(n)]


def _report(name, value):
    print(f"\n[validation] {name}: {value:.3f}")


@pytest.mark.parametrize("seeds,sd_seed", [((3, 3), 0.3), ((3, 3), 0.0), ((1, 3), 0.3), ((5, 5), 0.3)])
def test_false_positive_rate_under_no_effect(seeds, sd_seed):
    """No effect, seed and user variance: p < 0.05 in about 5 % of experiments (binomial band, 300 runs)."""
    res = _experiments(seeds, 0.0, sd_seed, base=100 * seeds[0] + int(10 * sd_seed))
    fpr = float(np.mean([r.p < 0.05 for r in res]))
    _report(f"FPR at 5%, seeds {seeds}, seed sd {sd_seed}", fpr)
    assert 0.01 <= fpr <= 0.10


def test_users_only_test_is_anticonservative_with_seed_variance():
    """Why the headline test exists: a paired t over users of seed averages rejects far too often."""
    rng = np.random.default_rng(7)
    rejections = []
    for _ in range(200):
        a, b = synthetic_store(rng, (3, 3), 0.0, 0.3)
        ua, ub = np.mean(list(a.values()), axis=0), np.mean(list(b.values()), axis=0)
        rejections.append(sps.ttest_rel(ua, ub).pvalue < 0.05)
    assert np.mean(rejections) > 0.3


@pytest.mark.parametrize("seeds,effect", [((3, 3), 0.0), ((3, 3), 0.4), ((2, 2), 0.4)])
def test_interval_coverage(seeds, effect):
    """The 95 % interval holds the true difference in about 95 % of experiments."""
    res = _experiments(seeds, effect, 0.3, base=1000 + seeds[0])
    cover = float(np.mean([r.ci_low <= effect <= r.ci_high for r in res]))
    _report(f"coverage of the 95% interval, seeds {seeds}, effect {effect}", cover)
    assert 0.90 <= cover <= 0.99


def test_detects_a_real_effect():
    """An effect of 4 seed SDs with three seeds each is found (p < 0.05) in most experiments, with A ahead."""
    res = _experiments((3, 3), 1.2, 0.3, n=60, base=5000)
    power = float(np.mean([r.p < 0.05 and r.mean_diff > 0 for r in res]))
    _report("power, effect 1.2 (seed sd 0.3, 3 vs 3 seeds)", power)
    assert power >= 0.8
    assert np.mean([r.p_a_beats_b for r in res]) > 0.9


def test_p_a_beats_b_is_one_half_without_effect_and_orders_models():
    rng = np.random.default_rng(11)
    a, b = synthetic_store(rng, (5, 5), 0.0, 0.3)
    same = compare_runs(a, a, n_boot=N_BOOT)
    assert abs(same.p_a_beats_b - 0.5) < 0.1 and same.mean_diff == 0.0 and same.p == 1.0
    a, b = synthetic_store(rng, (5, 5), 3.0, 0.3)
    assert compare_runs(a, b, n_boot=N_BOOT).p_a_beats_b > 0.95
    assert compare_runs(b, a, n_boot=N_BOOT).p_a_beats_b < 0.05


def test_one_seed_each_is_conditional_and_says_so():
    """One seed on both sides: users only, so under pure user variation it is calibrated and the note says so."""
    res = _experiments((1, 1), 0.0, 0.0, n=200, base=7000)
    fpr = float(np.mean([r.p < 0.05 for r in res]))
    _report("FPR at 5%, one seed each, no seed variance", fpr)
    assert 0.01 <= fpr <= 0.10
    assert "conditional" in res[0].note and res[0].n_seeds_a == res[0].n_seeds_b == 1


def test_one_seed_against_three_borrows_the_seed_variance():
    rng = np.random.default_rng(3)
    a, b = synthetic_store(rng, (1, 3), 0.0, 0.3)
    one = compare_runs(a, b, n_boot=N_BOOT)
    assert "A has one seed" in one.note and math.isclose(one.df, 2.0, rel_tol=0.5)
    # the seed term dominates: the interval is wider than B's seed spread alone
    assert one.ci_high - one.ci_low > 2 * np.std([v.mean() for v in b.values()], ddof=1)


def test_same_training_pairs_within_seed():
    """Two scorings of one trained model share its seed effect: paired within seeds, it cancels."""
    rng = np.random.default_rng(5)
    a, _ = synthetic_store(rng, (3, 3), 0.0, 1.0)
    b = {s: v - 0.05 + rng.normal(0, 0.05, len(v)) for s, v in a.items()}
    within = compare_runs(a, b, n_boot=N_BOOT, same_training=True)
    independent = compare_runs(a, b, n_boot=N_BOOT)
    assert within.p < 1e-3 and independent.p > 0.05
    assert "paired within each seed" in within.note
    assert within.ci_low <= 0.05 <= within.ci_high


def test_unpaired_users_and_errors():
    rng = np.random.default_rng(9)
    a = {0: rng.normal(0, 1, 300), 1: rng.normal(0, 1, 300)}
    b = {0: rng.normal(0, 1, 200), 1: rng.normal(0, 1, 200)}
    r = compare_runs(a, b, paired=False, n_boot=N_BOOT)
    assert np.isfinite(r.p) and r.ci_low < r.mean_diff < r.ci_high
    with pytest.raises(ValueError, match="same users"):
        compare_runs(a, b, paired=True, n_boot=N_BOOT)
    with pytest.raises(ValueError, match="non-finite"):
        compare_runs({0: np.array([np.nan, 1.0])}, {0: np.array([0.0, 1.0])}, n_boot=N_BOOT)
    assert math.isnan(compare_runs({}, b, n_boot=N_BOOT).p)


def test_compare_ranks_reads_the_metric_and_shared_draws_agree():
    rng = np.random.default_rng(13)
    ra = {s: rng.integers(0, 30, 500) for s in range(3)}
    rb = {s: rng.integers(5, 40, 500) for s in range(3)}
    res = compare_ranks(ra, rb, "HR@10", n_boot=N_BOOT)
    want = np.mean([np.mean(r < 10) for r in ra.values()]) - np.mean([np.mean(r < 10) for r in rb.values()])
    assert math.isclose(res.mean_diff, want) and res.mean_diff > 0 and res.p < 0.05
    draws = UserDraws(500, N_BOOT, keep=True)
    again = compare_ranks(ra, rb, "HR@10", n_boot=N_BOOT, draws=draws)
    assert again == res  # the same seed gives the same replicates, kept or not


def test_interaction_variance_is_the_residual_mean_square():
    rng = np.random.default_rng(1)
    x = rng.normal(0, 2.0, (4, 3000)) + rng.normal(0, 1, (4, 1)) + rng.normal(0, 1, (1, 3000))
    assert math.isclose(interaction_variance(x) * 4 * 3000, 4.0, rel_tol=0.05)
    assert interaction_variance(x[:1]) == 0.0


def test_fast_enough_for_a_report():
    """22k users, 2000 replicates: well under two seconds per comparison."""
    import time

    rng = np.random.default_rng(0)
    a = {s: (rng.random(22000) < 0.08).astype(float) for s in range(3)}
    b = {s: (rng.random(22000) < 0.07).astype(float) for s in range(3)}
    t0 = time.perf_counter()
    compare_runs(a, b)
    assert time.perf_counter() - t0 < 2.0


def test_compare_metric_rows_takes_one_row_and_only_users_every_run_ranked():
    from bench.stats.hierarchical_bootstrap import EMPTY, compare_metric_rows, compare_runs

    rng = np.random.default_rng(0)
    a = {s: rng.random((2, 50)) for s in (0, 1)}
    b = {s: rng.random((2, 50)) for s in (0, 1)}
    b[1][1, :5] = np.nan  # five users seed 1 of b did not rank
    mask = np.arange(50) >= 10
    got = compare_metric_rows(a, b, 1, mask, n_boot=200)
    keep = mask & (np.arange(50) >= 5)
    want = compare_runs({s: x[1][keep] for s, x in a.items()}, {s: x[1][keep] for s, x in b.items()}, n_boot=200)
    assert got == want and got.n_users == 40
    assert compare_metric_rows(a, {}, 0) is EMPTY and compare_metric_rows(a, b, 0, np.zeros(50, bool)) is EMPTY
