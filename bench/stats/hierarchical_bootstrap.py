"""Two-level (hierarchical) bootstrap over training seeds and test users: the headline test.

Method
------
A benchmark number varies for two reasons: the training randomness (seed) and the finite sample
of test users.  Following Bouthillier et al., "Accounting for variance in machine learning
benchmarks" (MLSys 2021), both are resampled.  The resampling is the two-stage (nested)
bootstrap of hierarchical data (Davison & Hinkley, *Bootstrap Methods and their Application*,
1997, §3.8; Field & Welsh, JRSS-B 2007): in each of ``n_boot`` replicates

1. **seeds, within each model**: draw ``n`` of the model's ``n`` seeds with replacement.  The
   drawn seed means are expanded by sqrt(n / (n - 1)) around their mean (Davison & Hinkley's
   variance-corrected resampling, §3.3) so that the replicate variance is s²/n, not
   (n - 1)/n · s²/n: with three seeds the plain bootstrap would understate it by a third;
2. **users, jointly across the two models**: draw the test users with replacement, the *same*
   draw for both models when both ranked the same users (paired), so that the users' shared
   difficulty cancels, as in a paired test.

The replicate statistic is mean(A) − mean(B) over the drawn seeds and users.  Its standard
deviation over the replicates is the standard error of the observed difference.  With two to
five seeds, the seed term has one to four degrees of freedom, and a normal or percentile
interval would be too narrow (a false-positive rate near 10 % at nominal 5 %; see
``tests/test_hierarchical_bootstrap.py``).  The p-value and the interval therefore use a
Student t reference whose degrees of freedom combine the three variance terms — seeds of A,
seeds of B, users — by Welch–Satterthwaite (Satterthwaite, Biometrics 1946).

Derived evaluations of one trained model (another number of reverse steps, x_T = 0) are not
independent models: with ``same_training=True`` one seed draw is shared by both sides (paired
within the seed), so the training randomness they share cancels.

``p_a_beats_b`` is Bouthillier et al.'s P(A > B): the probability that one new training run of
A, evaluated on a new sample of users, scores above one new run of B (ties count one half),
estimated from single-seed draws of the same replicates.

Why this method: it needs no distributional model of the per-user metrics (HR is 0/1, NDCG is
zero for most users), it treats seeds and users at their own level instead of averaging one of
them away, it is exactly paired over users, and it is cheap once vectorised — all comparisons on
one dataset share one draw of users (:class:`UserDraws`), and a replicate mean is a matrix
product of user counts and per-seed per-user values.

One seed.  With one seed on a side, its training variance cannot be estimated.  When the other
side has two or more seeds, its seed deviations stand for the missing ones (the pooled-variance
assumption of the two-sample t-test: both models vary alike over seeds), and the note says so.
With one seed on both sides the test is conditional on the two trained models (users only).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Mapping

import numpy as np
from scipy import stats as sps

N_BOOT = 2000
BOOT_SEED = 20210301  # Bouthillier et al.'s MLSys 2021 date: any fixed value; fixed so reports re-render equal
LEVEL = 0.95
_CHUNK = 250  # replicates per block of user counts: ~ 250 x n_users bytes at a time


@dataclass(frozen=True)
class BootstrapResult:
    """One comparison A − B.

    mean_diff: observed mean(A) − mean(B) (A's seed mean minus B's, users as given);
    ci_low, ci_high: its two-sided ``level`` interval; p: two-sided p-value of no difference;
    p_a_beats_b: P(one new run of A beats one new run of B); se, df: the standard error and the
    t reference's degrees of freedom; note: what the result conditions on ('' when nothing).
    """

    mean_diff: float
    ci_low: float
    ci_high: float
    p: float
    p_a_beats_b: float
    n_seeds_a: int
    n_seeds_b: int
    n_users: int
    n_boot: int
    note: str = ""
    se: float = math.nan
    df: float = math.nan

    def as_dict(self) -> dict:
        return asdict(self)


EMPTY = BootstrapResult(math.nan, math.nan, math.nan, math.nan, math.nan, 0, 0, 0, 0, "no runs on a side")


class UserDraws:
    """The bootstrap's draws of ``n_users`` users, shared by every comparison that uses them.

    The draws are regenerated block by block from ``seed`` (never all held at once), so the
    same object gives the same replicates to every call.
    """

    def __init__(self, n_users: int, n_boot: int = N_BOOT, seed: int = BOOT_SEED, keep: bool = False):
        if n_users < 1 or n_boot < 2:
            raise ValueError(f"UserDraws needs n_users >= 1 and n_boot >= 2 (got {n_users}, {n_boot})")
        self.n_users, self.n_boot, self.seed = int(n_users), int(n_boot), int(seed)
        self.keep, self._kept = keep, None  # keep: hold the counts (n_boot x n_users bytes) for repeated use

    def _draw(self):
        """Yield (start, counts (block, n_users)): how often each user is drawn in each replicate."""
        rng = np.random.default_rng(self.seed)
        u = self.n_users
        for start in range(0, self.n_boot, _CHUNK):
            size = min(_CHUNK, self.n_boot - start)
            idx = rng.integers(0, u, size=(size, u))
            idx += (np.arange(size) * u)[:, None]
            counts = np.bincount(idx.ravel(), minlength=size * u).reshape(size, u)
            yield start, counts.astype(np.uint8 if counts.max() < 256 else np.uint16)

    def _blocks(self):
        if not self.keep:
            yield from self._draw()
            return
        if self._kept is None:
            self._kept = list(self._draw())
        yield from self._kept

    def means(self, rows: np.ndarray) -> np.ndarray:
        """(n_boot, k) replicate means over users of each of ``rows`` ((k, n_users) per-user values)."""
        rows = np.atleast_2d(np.asarray(rows, np.float32))
        if rows.shape[1] != self.n_users:
            raise ValueError(f"per-user rows have {rows.shape[1]} users, the draws {self.n_users}")
        out = np.empty((self.n_boot, rows.shape[0]), np.float64)
        for start, counts in self._blocks():
            out[start:start + len(counts)] = counts.astype(np.float32) @ rows.T
        return out / self.n_users


def _seed_weights(rng, n_boot: int, n: int, k: float) -> np.ndarray:
    """(n_boot, n) weights of the n seeds in each replicate: drawn counts / n, expanded by k around 1/n."""
    counts = np.zeros((n_boot, n))
    draws = rng.integers(0, n, size=(n_boot, n))
    np.add.at(counts, (np.arange(n_boot)[:, None], draws), 1.0)
    return k * counts / n + (1.0 - k) / n


def _expand(n: int) -> float:
    return math.sqrt(n / (n - 1)) if n > 1 else 1.0


def _single(rng, m: np.ndarray, k: float) -> np.ndarray:
    """(n_boot,) one seed per replicate: its replicate mean, expanded by k around the replicate's seed mean."""
    pick = rng.integers(0, m.shape[1], size=m.shape[0])
    centre = m.mean(axis=1)
    return centre + k * (m[np.arange(m.shape[0]), pick] - centre)


def _result(obs: float, reps: np.ndarray, terms: list, interaction: float, floor: float, beats: float, n_a: int,
            n_b: int, n_users: int, level: float, note: str) -> BootstrapResult:
    """Standard error from the replicates less the over-counted interaction, t reference.

    terms: [(variance, df)] of the independent variance terms (seeds of A, seeds of B, users),
    combined by Welch–Satterthwaite for the t reference's df.  interaction: the seed x user
    interaction's share of the variance of the difference, which a replicate counts three times
    (a drawn seed and a drawn user each weigh E[w²] = 2/n², so E[w_s² c_u²] = 4 against 1 for
    a single mean: variance 3 per cell; Owen, "The pigeonhole bootstrap", Ann. Appl. Stat. 2007,
    finds the same for crossed designs): two of the three are subtracted.  floor: the variance
    of the users-only replicates (seeds at their observed weights), a lower bound the
    subtraction may not cross when the few seeds happen to agree closely.
    """
    var = max(float(np.var(reps, ddof=1)) - 2.0 * interaction, floor)
    if not np.isfinite(obs):
        return BootstrapResult(math.nan, math.nan, math.nan, math.nan, math.nan, n_a, n_b, n_users, len(reps), note)
    if not var > 0.0:
        p = 1.0 if obs == 0.0 else 0.0
        return BootstrapResult(obs, obs, obs, p, beats, n_a, n_b, n_users, len(reps), note, 0.0, math.inf)
    se = math.sqrt(var)
    terms = [(v, d) for v, d in terms if v > 0 and d > 0]
    df = sum(v for v, _ in terms) ** 2 / sum(v ** 2 / d for v, d in terms) if terms else math.inf
    t = sps.t(df)
    half = float(t.ppf(0.5 + level / 2)) * se
    p = float(2 * t.sf(abs(obs) / se))
    return BootstrapResult(obs, obs - half, obs + half, min(p, 1.0), beats, n_a, n_b, n_users, len(reps), note,
                           se, float(df))


def interaction_variance(x: np.ndarray) -> float:
    """The seed x user interaction's share of the variance of a mean of ``x`` ((n_seeds, n_users)).

    Residual mean square of the two-way layout without replication, MS_res / (n_seeds n_users)
    (the moment estimator of crossed random effects): 0 with one seed or one user, where it
    cannot be told from the other terms.
    """
    x = np.asarray(x, np.float64)
    s, u = x.shape
    if s < 2 or u < 2:
        return 0.0
    r = x - x.mean(axis=1, keepdims=True) - x.mean(axis=0, keepdims=True) + x.mean()
    return float((r ** 2).sum() / ((s - 1) * (u - 1))) / (s * u)


def compare_replicates(ma: np.ndarray, mb: np.ndarray, obs_a: np.ndarray, obs_b: np.ndarray, n_users: int,
                       same_training: bool = False, level: float = LEVEL, seed: int = BOOT_SEED,
                       interaction: float = 0.0) -> BootstrapResult:
    """The two-level bootstrap from user-resampled seed means.

    ma: (n_boot, n_a) and mb: (n_boot, n_b): each seed's mean over the replicate's users
    (:meth:`UserDraws.means`; the same draws for both when paired over users).
    obs_a (n_a,), obs_b (n_b,): each seed's mean over the users as given.
    same_training: A and B are two evaluations of the same trained runs, column j of both being
    seed j: one seed draw serves both sides (paired within the seed).
    interaction: the seed x user interaction's variance in the difference
    (:func:`interaction_variance` of each side, or of the per-seed differences; see :func:`_result`).
    """
    ma, mb = np.atleast_2d(ma), np.atleast_2d(mb)
    n_a, n_b, n_boot = ma.shape[1], mb.shape[1], ma.shape[0]
    if n_a == 0 or n_b == 0:
        return EMPTY
    rng = np.random.default_rng(seed)
    obs_a, obs_b = np.asarray(obs_a, np.float64), np.asarray(obs_b, np.float64)
    obs = float(obs_a.mean() - obs_b.mean())
    users_only = ma.mean(axis=1) - mb.mean(axis=1)  # seeds held at their observed weights
    # the users-only replicates and the seed spread each hold the interaction once: keep it in one term
    user_term = (max(float(np.var(users_only, ddof=1)) - interaction, 0.0), float(n_users - 1))
    notes = []
    if same_training:
        if n_a != n_b:
            raise ValueError(f"same_training needs the same seeds on both sides (got {n_a} and {n_b})")
        d = ma - mb
        k = _expand(n_a)
        reps = (_seed_weights(rng, n_boot, n_a, k) * d).sum(axis=1)
        beats_draw = _single(rng, d, k)
        seed_terms = [(float(np.var(obs_a - obs_b, ddof=1)) / n_a, n_a - 1)] if n_a > 1 else []
        if n_a == 1:
            notes.append("one seed: conditional on this trained model (users only)")
        notes.append("paired within each seed (same trained model)")
    else:
        ka, kb = _expand(n_a), _expand(n_b)
        sa = (_seed_weights(rng, n_boot, n_a, ka) * ma).sum(axis=1)
        sb = (_seed_weights(rng, n_boot, n_b, kb) * mb).sum(axis=1)
        one_a, one_b = _single(rng, ma, ka), _single(rng, mb, kb)
        var_a = float(np.var(obs_a, ddof=1)) if n_a > 1 else 0.0
        var_b = float(np.var(obs_b, ddof=1)) if n_b > 1 else 0.0
        seed_terms = [(var_a / n_a, n_a - 1), (var_b / n_b, n_b - 1)]
        if n_a == 1 and n_b > 1:  # borrow B's seed deviations for A (pooled-variance assumption)
            dev = (_seed_weights(rng, n_boot, n_b, kb) * mb).sum(axis=1) - mb.mean(axis=1)
            sa = sa + math.sqrt(n_b) * dev  # one seed varies like one seed: sqrt(n_b) times B's mean
            one_a = one_a + (_single(rng, mb, kb) - mb.mean(axis=1))
            seed_terms = [(var_b * (1 + 1 / n_b), n_b - 1)]  # one estimate, so one term
            notes.append(f"A has one seed: its seed variance is taken from B's {n_b} seeds")
        elif n_b == 1 and n_a > 1:
            dev = (_seed_weights(rng, n_boot, n_a, ka) * ma).sum(axis=1) - ma.mean(axis=1)
            sb = sb + math.sqrt(n_a) * dev
            one_b = one_b + (_single(rng, ma, ka) - ma.mean(axis=1))
            seed_terms = [(var_a * (1 + 1 / n_a), n_a - 1)]
            notes.append(f"B has one seed: its seed variance is taken from A's {n_a} seeds")
        elif n_a == 1 and n_b == 1:
            notes.append("one seed each: conditional on these two trained models (users only)")
        reps = sa - sb
        beats_draw = one_a - one_b
    beats = float(np.mean(beats_draw > 0) + 0.5 * np.mean(beats_draw == 0))
    floor = float(np.var(users_only, ddof=1))
    return _result(obs, reps, seed_terms + [user_term], interaction, floor, beats, n_a, n_b, n_users, level, "; ".join(notes))


def interaction_ab(xa: np.ndarray, xb: np.ndarray) -> float:
    """Interaction variance in mean(A) - mean(B) for independent models A and B ((n_seeds, n_users) each).

    A side with one seed takes the other side's interaction, as it takes its seed variance.
    """
    ia, ib = interaction_variance(xa), interaction_variance(xb)
    if len(xa) == 1 and len(xb) > 1:
        ia = ib * len(xb)
    elif len(xb) == 1 and len(xa) > 1:
        ib = ia * len(xa)
    return ia + ib


def _stack(values: Mapping) -> tuple[list, np.ndarray]:
    """(seeds in order, (n_seeds, n_users) float array) of {seed: (n_users,) per-user values}."""
    seeds = list(values)
    if not seeds:
        return [], np.zeros((0, 0))
    return seeds, np.stack([np.asarray(values[s], np.float64) for s in seeds])


def compare_runs(values_a: Mapping, values_b: Mapping, paired: bool = True, n_boot: int = N_BOOT,
                 level: float = LEVEL, seed: int = BOOT_SEED, same_training: bool = False,
                 draws: UserDraws | None = None) -> BootstrapResult:
    """Model A against model B from per-seed per-user values.

    values_a, values_b: {seed: (n_users,) per-user metric values}; with ``paired`` both sides
    hold the same users in the same order (one user draw for both), else each side's users are
    drawn on their own.  same_training: A and B are evaluations of the same trained runs, with
    the same seeds (paired within each seed).  draws: a shared :class:`UserDraws` (paired only).
    Non-finite values are not allowed (a clear error), since a replicate mean would be NaN.
    """
    sa, xa = _stack(values_a)
    sb, xb = _stack(values_b)
    if not sa or not sb:
        return EMPTY
    for name, x in (("values_a", xa), ("values_b", xb)):
        if not np.all(np.isfinite(x)):
            raise ValueError(f"compare_runs: {name} holds non-finite per-user values")
    if same_training:
        common = [s for s in sa if s in set(sb)]
        if not common:
            return EMPTY
        xa = np.stack([np.asarray(values_a[s], np.float64) for s in common])
        xb = np.stack([np.asarray(values_b[s], np.float64) for s in common])
    if paired or same_training:
        if xa.shape[1] != xb.shape[1]:
            raise ValueError(f"paired comparison needs the same users on both sides ({xa.shape[1]} vs {xb.shape[1]})")
        draws = draws or UserDraws(xa.shape[1], n_boot, seed)
        m = draws.means(np.vstack([xa, xb]))
        ma, mb = m[:, :len(xa)], m[:, len(xa):]
        n_users = xa.shape[1]
    else:
        ma = UserDraws(xa.shape[1], n_boot, seed).means(xa)
        mb = UserDraws(xb.shape[1], n_boot, seed + 1).means(xb)
        n_users = min(xa.shape[1], xb.shape[1])
    if same_training:
        interaction = interaction_variance(xa - xb)
    else:
        interaction = interaction_ab(xa, xb)
    return compare_replicates(ma, mb, xa.mean(axis=1), xb.mean(axis=1), n_users, same_training, level, seed,
                              interaction)


def compare_metric_rows(mats_a: Mapping, mats_b: Mapping, row: int, mask=None, **kwargs) -> BootstrapResult:
    """A against B on one metric from per-seed matrices {seed: (n_metrics, n_users)} aligned on the same
    users: row ``row`` of each, on the users every run ranked (finite on both sides) and, with ``mask``
    ((n_users,) bool), only those.  EMPTY without runs on a side or without a user left."""
    if not mats_a or not mats_b:
        return EMPTY
    xa = {s: np.asarray(m[row], np.float64) for s, m in mats_a.items()}
    xb = {s: np.asarray(m[row], np.float64) for s, m in mats_b.items()}
    keep = np.logical_and.reduce([np.isfinite(x) for x in [*xa.values(), *xb.values()]])
    if mask is not None:
        keep &= mask
    if not keep.any():
        return EMPTY
    return compare_runs({s: x[keep] for s, x in xa.items()}, {s: x[keep] for s, x in xb.items()}, **kwargs)


def compare_ranks(ranks_a: Mapping, ranks_b: Mapping, metric: str, **kwargs) -> BootstrapResult:
    """:func:`compare_runs` on the per-user values of ``metric`` ('NDCG@10') of per-seed rank arrays.

    ranks_a, ranks_b: {seed: (n_users,) 0-based rank of each user's test item}.
    """
    from bench.store import per_user_metric

    return compare_runs({s: per_user_metric(r, metric) for s, r in ranks_a.items()},
                        {s: per_user_metric(r, metric) for s, r in ranks_b.items()}, **kwargs)
