"""Power of the headline test: the smallest difference a comparison could detect with n seeds.

Method
------
The headline test (``hierarchical_bootstrap``) refers the observed difference mean(A) − mean(B)
to a Student t with standard error

    SE(n)² = σ²_A / n + σ²_B / n + V_users,

σ²_X being the variance of one seed's mean of model X over the seeds (sample variance, ddof = 1)
and V_users the variance the finite set of test users adds to the paired difference once the seed x
user interaction (already inside σ²) is taken out — the same three terms, and the same correction,
as the bootstrap's :func:`~bench.stats.hierarchical_bootstrap._result`, evaluated analytically
instead of by resampling.  The degrees of freedom combine the terms by Welch–Satterthwaite, as there.

With n seeds per model the test computes, from the new runs, estimates v̂ of the three terms and
rejects when |mean difference| > t_{1−α/2, df̂} · sqrt(Σ v̂), df̂ being the Satterthwaite df of the
estimates.  Under normal seed and user effects each v̂ is its term times χ²_k / k (k = n − 1 for a seed
term, n_users − 1 for the users), independent of the mean difference, so the rejection probability is

    power(δ) = E[ Φ((δ − c) / SE(n)) + Φ((−δ − c) / SE(n)) ],   c = t_{1−α/2, df̂} · sqrt(Σ v̂),

the power of Welch's test with estimated variances and estimated df, computed by integrating over
the variance estimates as Moser, Stevens & Watts ("The two-sample t test versus Satterthwaite's
approximate F test", Commun. Stat. Theory Methods 18, 1989) do for two samples; here the expectation
is a mean over ``N_DRAWS`` fixed draws of the χ² variables (numpy), exact in the mean difference.
The noncentral t with the Satterthwaite df of the *true* terms (Cohen, *Statistical Power Analysis
for the Behavioral Sciences*, 1988, ch. 2) is too optimistic with 3 seeds, because the test's own
df̂ is usually smaller than the true df: on the simulated stores of ``tests/test_power.py`` (600
experiments each), at the difference it gives 80 % power the bootstrap test rejected in 72–74 % of
experiments with 3 seeds (77–78 % with 5); at this function's, in 82–84 % (80 % with 5 seeds).  The detectable difference at 80 % power
is the δ that solves power(δ) = 0.8 (scipy.optimize.brentq).

Why a power function and not a bootstrap of future experiments: the bootstrap's standard error *is*
this sum of terms (its replicates estimate the same three variances), and the power function
projects it to 3 or 5 seeds at no cost, where a simulation of the bootstrap would need models trained
again.  It is an approximation in one way the report states: the measured σ² and V_users are taken
as the true ones (with 2–3 seeds σ² is itself uncertain, so the detectable difference is too).

One seed.  A model with one seed has no measured seed variance.  As in the headline test, it takes
the other model's (the pooled-variance assumption of the two-sample t-test: both models vary alike
over seeds), and the note says so; with one seed on both sides the detectable difference cannot be
estimated (NaN, with a note), since nothing measures how much training varies.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import optimize
from scipy import stats as sps

from bench.stats.hierarchical_bootstrap import interaction_ab
from bench.stats.notes import ALPHA

POWER = 0.80
N_DRAWS = 20000  # draws of the variance estimates: power to about ±0.003
DRAW_SEED = 20260   # any fixed value: fixed so reports re-render equal
_DF_CAP = 1e7


@dataclass(frozen=True)
class VarianceTerms:
    """The variance components of one comparison A − B (values as fractions, variances in fraction²).

    seed_var_a, seed_var_b: variance of one seed's mean over the seeds of A and of B (ddof = 1;
    borrowed from the other side when a side has one seed, NaN when neither has two);
    user_var: the test users' share of the variance of the difference (at the users given, the
    seed x user interaction removed); n_seeds_a, n_seeds_b, n_users: what they were measured on;
    note: where a seed variance was borrowed from ('' when both are measured).
    """

    seed_var_a: float
    seed_var_b: float
    user_var: float
    n_seeds_a: int
    n_seeds_b: int
    n_users: int
    note: str = ""

    @property
    def estimable(self) -> bool:
        return bool(np.isfinite(self.seed_var_a) and np.isfinite(self.seed_var_b) and np.isfinite(self.user_var))


def variance_terms(xa: np.ndarray, xb: np.ndarray) -> VarianceTerms:
    """The terms of A − B from per-seed per-user values xa (n_seeds_a, n_users), xb (n_seeds_b, n_users).

    Both hold the same users in the same order (paired over users, as the headline test).
    """
    xa, xb = np.atleast_2d(np.asarray(xa, np.float64)), np.atleast_2d(np.asarray(xb, np.float64))
    if xa.shape[1] != xb.shape[1]:
        raise ValueError(f"variance_terms needs the same users on both sides ({xa.shape[1]} vs {xb.shape[1]})")
    n_a, n_b, u = len(xa), len(xb), xa.shape[1]
    var_a = float(np.var(xa.mean(axis=1), ddof=1)) if n_a > 1 else math.nan
    var_b = float(np.var(xb.mean(axis=1), ddof=1)) if n_b > 1 else math.nan
    note = ""
    if n_a == 1 and n_b > 1:
        var_a, note = var_b, f"A has one seed: its seed variance is taken from B's {n_b} seeds"
    elif n_b == 1 and n_a > 1:
        var_b, note = var_a, f"B has one seed: its seed variance is taken from A's {n_a} seeds"
    elif n_a == 1 and n_b == 1:
        note = "one seed on each side: the seed variance cannot be estimated"
    # users: variance of a mean over users of the seed-averaged paired difference, less the
    # interaction it also holds (counted once, in the seed terms, as the bootstrap does)
    d = xa.mean(axis=0) - xb.mean(axis=0)
    users = float(np.var(d, ddof=1)) / u if u > 1 else math.nan
    users = max(users - interaction_ab(xa, xb), 0.0) if np.isfinite(users) else users
    return VarianceTerms(var_a, var_b, users, n_a, n_b, u, note)


def standard_error(terms: VarianceTerms, n_seeds: int) -> tuple[float, float]:
    """(SE, Welch–Satterthwaite df) of the difference with ``n_seeds`` seeds on each side."""
    if not terms.estimable or n_seeds < 2:
        return math.nan, math.nan
    parts = [(terms.seed_var_a / n_seeds, n_seeds - 1), (terms.seed_var_b / n_seeds, n_seeds - 1),
             (terms.user_var, terms.n_users - 1)]
    parts = [(v, d) for v, d in parts if v > 0 and d > 0]
    var = sum(v for v, _ in parts)
    if not var > 0:
        return 0.0, math.inf
    df = var ** 2 / sum(v ** 2 / d for v, d in parts)
    return math.sqrt(var), float(df)


def _draws(n_seeds: int, n_users: int, seed: int) -> np.ndarray:
    """(N_DRAWS, 3) draws of χ²_k / k for the three terms (k = n_seeds − 1, n_seeds − 1, n_users − 1)."""
    rng = np.random.default_rng(seed)
    k = np.array([n_seeds - 1, n_seeds - 1, n_users - 1], np.float64)
    return rng.chisquare(k, size=(N_DRAWS, 3)) / k


def _thresholds(terms: VarianceTerms, n_seeds: int, alpha: float, seed: int) -> np.ndarray:
    """(N_DRAWS,) the test's rejection threshold c = t_{1−α/2, df̂} sqrt(Σ v̂) per draw of the estimates."""
    v = np.array([terms.seed_var_a / n_seeds, terms.seed_var_b / n_seeds, terms.user_var])
    k = np.array([n_seeds - 1, n_seeds - 1, terms.n_users - 1], np.float64)
    est = _draws(n_seeds, terms.n_users, seed) * v
    total = est.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        df = total ** 2 / (est ** 2 / k).sum(axis=1)
    return sps.t.ppf(1 - alpha / 2, np.minimum(df, _DF_CAP)) * np.sqrt(total)


def power_of(diff: float, terms: VarianceTerms, n_seeds: int, alpha: float = ALPHA, seed: int = DRAW_SEED) -> float:
    """P(the headline test at two-sided ``alpha`` rejects) for a true difference ``diff`` (fraction) with
    ``n_seeds`` seeds per model and the variance ``terms``; NaN when they are not estimable."""
    se, _ = standard_error(terms, n_seeds)
    if not (np.isfinite(se) and se > 0):
        return math.nan
    c = _thresholds(terms, n_seeds, alpha, seed)
    return _power(abs(diff), se, c)


def _power(diff: float, se: float, c: np.ndarray) -> float:
    """Mean over the draws of P(|diff + SE z| > c): the mean difference integrated exactly (normal)."""
    return float(np.mean(sps.norm.cdf((diff - c) / se) + sps.norm.cdf((-diff - c) / se)))


def detectable_difference(terms: VarianceTerms, n_seeds: int, power: float = POWER, alpha: float = ALPHA,
                          seed: int = DRAW_SEED) -> float:
    """The smallest |difference| (fraction) the headline test detects with probability ``power``
    at two-sided ``alpha`` with ``n_seeds`` seeds per model; NaN when the terms are not estimable."""
    se, _ = standard_error(terms, n_seeds)
    if not np.isfinite(se):
        return math.nan
    if se == 0:
        return 0.0
    c = _thresholds(terms, n_seeds, alpha, seed)  # one set of draws for every δ: a smooth, monotone power(δ)
    hi = 10.0 * se
    while _power(hi, se, c) < power:  # heavy tails of df̂ near 1: widen until the root is bracketed
        hi *= 2
    return float(optimize.brentq(lambda d: _power(d, se, c) - power, 0.0, hi, xtol=se * 1e-8))
