"""Power of the headline test (bench/stats/power.py) and its report (bench/report/power.py).

The synthetic store is the one of tests/test_hierarchical_bootstrap.py: per-user values = user
difficulty + model-by-user term + effect + seed effect (SD ``sd_seed``) + noise, users drawn afresh
per experiment.  The power the module predicts is checked against the rejection rate of the
headline test itself on such stores.
"""
import math

import numpy as np
import pytest

from bench.report.power import SEEDS, paper_margins, power_frame
from bench.stats.hierarchical_bootstrap import compare_runs
from bench.stats.power import detectable_difference, power_of, standard_error, variance_terms
from test_hierarchical_bootstrap import synthetic_store

N_USERS, N_BOOT, N_SIM, SD_SEED = 400, 300, 300, 0.3


def _matrix(values: dict) -> np.ndarray:
    return np.stack([values[s] for s in sorted(values)])


def _terms(seeds, sd_seed=SD_SEED, seed=0):
    rng = np.random.default_rng(seed)
    a, b = synthetic_store(rng, seeds, 0.0, sd_seed, n_users=N_USERS)
    return variance_terms(_matrix(a), _matrix(b))


def test_detectable_difference_shrinks_with_more_seeds():
    terms = _terms((3, 3))
    mdd = [detectable_difference(terms, n) for n in (2, 3, 5, 10)]
    assert all(np.isfinite(mdd)) and mdd == sorted(mdd, reverse=True) and mdd[0] > mdd[-1]
    # and it cannot fall below what the users alone allow: (z_.975 + z_.8) x user SE
    assert mdd[-1] > 2.8 * math.sqrt(terms.user_var) * 0.99


def test_power_function_is_alpha_at_zero_and_rises():
    terms = _terms((3, 3))
    se, _ = standard_error(terms, 3)
    assert power_of(0.0, terms, 3) == pytest.approx(0.05, abs=0.005)  # the test's size: alpha
    assert power_of(se, terms, 3) < power_of(3 * se, terms, 3) < power_of(6 * se, terms, 3)
    assert power_of(detectable_difference(terms, 3), terms, 3) == pytest.approx(0.80, abs=1e-6)


def test_seed_sd_of_a_known_store_is_recovered():
    """With many seeds the measured seed SD is the store's (a seed mean also holds noise / sqrt(users))."""
    terms = _terms((200, 200), seed=1)
    expected = math.sqrt(SD_SEED ** 2 + 1.0 / N_USERS)  # noise SD 1 averaged over the users
    assert math.sqrt(terms.seed_var_a) == pytest.approx(expected, rel=0.15)
    assert math.sqrt(terms.seed_var_b) == pytest.approx(expected, rel=0.15)


def test_predicted_power_matches_the_simulated_headline_test():
    """At the detectable difference for 3 seeds (from a store whose seed SD is well measured), the
    headline test rejects in about 80 % of experiments with 3 seeds per model."""
    terms = _terms((200, 200), seed=2)
    mdd = detectable_difference(terms, 3)
    rng = np.random.default_rng(3)
    hits = [compare_runs(*synthetic_store(rng, (3, 3), mdd, SD_SEED, n_users=N_USERS), n_boot=N_BOOT,
                         seed=10 + i).p < 0.05 for i in range(N_SIM)]
    simulated = float(np.mean(hits))
    print(f"\n[validation] simulated power at the predicted 80 % difference (3 seeds): {simulated:.3f}")
    assert simulated == pytest.approx(0.80, abs=0.10)


def test_one_seed_borrows_the_other_side_and_two_single_seeds_are_not_estimated():
    rng = np.random.default_rng(4)
    a, b = synthetic_store(rng, (1, 3), 0.0, SD_SEED, n_users=N_USERS)
    terms = variance_terms(_matrix(a), _matrix(b))
    assert terms.seed_var_a == terms.seed_var_b and "taken from B's 3 seeds" in terms.note
    assert np.isfinite(detectable_difference(terms, 3))
    a, b = synthetic_store(rng, (1, 1), 0.0, SD_SEED, n_users=N_USERS)
    terms = variance_terms(_matrix(a), _matrix(b))
    assert not terms.estimable and math.isnan(detectable_difference(terms, 3)) and "cannot be estimated" in terms.note


def test_power_frame_rows_and_paper_margins():
    margins = paper_margins()
    assert margins[("beauty", "HR@10", "SASRec")] == pytest.approx((7.9068 - 6.2648) / 100)
    rng = np.random.default_rng(5)
    per_seed = {}
    for model, n in (("DiffuRec", 3), ("SASRec", 3), ("GRU4Rec", 1)):
        per_seed[("beauty", model)] = {s: (rng.random((6, 50)) < 0.05).astype(np.float32) for s in range(n)}
    frame = power_frame(per_seed, {"beauty": ["GRU4Rec", "SASRec", "DiffuRec"]}, margins)
    assert len(frame) == 2 * 6 and set(frame["model_b"]) == {"GRU4Rec", "SASRec"}
    assert (frame[f"mdd_{SEEDS[0]}"] >= frame[f"mdd_{SEEDS[1]}"]).all()
    one = frame[frame["model_b"] == "GRU4Rec"]
    assert one["note"].str.contains("GRU4Rec has one seed: its seed variance is taken from DiffuRec's 3 seeds").all()
