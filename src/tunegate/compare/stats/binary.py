"""Exact and score statistics for pass/fail (0/1) metrics.

Every function returns one-sided p-values in the pair form `(p_greater, p_less)`:
`p_greater` is the p-value of "the parameter is above theta0" (H0: theta <= theta0),
`p_less` of "the parameter is below theta0" (H0: theta >= theta0). The
two-sided interval at confidence `c` is exactly the set of theta0 that neither
one-sided test rejects at (1 - c) / 2, so its ends are one-sided bounds at
(1 + c) / 2 and a rule decided on p-values says the same as one decided on the
interval.

- One proportion (`min` / `max` rules on a rate): the exact binomial test
  (`scipy.stats.binomtest`) and its inversion, the Clopper-Pearson interval
  (`BinomTestResult.proportion_ci(method="exact")`). Coverage is at least
  nominal at every n and p.
- A paired difference of proportions (`max_regression` / `min_improvement` on a
  rate): Tango's score test and interval for matched pairs (Tango 1998, Stat Med
  17:891-908), with the restricted maximum-likelihood estimate of the
  discordant cell under H0 in closed form. Without correction it reproduces the
  published values (Fagerland, Lydersen & Laake 2014, the Cavo et al. table:
  -0.1240 to -0.0054). The gate uses it with a continuity correction of 1 on
  the discordant difference (the step of b - c given b + c is 2, as in Edwards'
  correction of McNemar's test): exact enumeration shows the uncorrected
  one-sided error at a margin reaching 5.2% for a nominal 2.5% (p = 0.99,
  n = 200), the corrected one at most 2.4% over p in {0.5 .. 0.99}, margins
  0 .. 0.1, n = 5 .. 5000 (`tests/test_stats.py` checks a grid of these).

With b + c = 0 (base and candidate agree on every sample) the Tango interval
is not a point: it is about +/- 3.84 / n (+ 1 / n with the correction), so
agreement on a few samples is never reported as certainty.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy import optimize, special
from scipy import stats as sps

TANGO_CC = 1.0  # continuity correction used by the gate (see the module docstring)
_EPS = 1e-12


@dataclass(frozen=True)
class PairedCounts:
    """A paired 0/1 table: `up` pairs go base 0 -> candidate 1, `down` base 1 -> candidate 0."""

    n: int
    base_ones: int
    candidate_ones: int
    up: int
    down: int

    @classmethod
    def from_vectors(cls, base: np.ndarray, candidate: np.ndarray) -> PairedCounts:
        b = np.asarray(base, dtype=float)
        c = np.asarray(candidate, dtype=float)
        return cls(n=int(b.size), base_ones=int(np.sum(b == 1)), candidate_ones=int(np.sum(c == 1)),
                   up=int(np.sum((b == 0) & (c == 1))), down=int(np.sum((b == 1) & (c == 0))))

    @property
    def delta(self) -> float:
        """Candidate rate minus base rate."""
        return (self.up - self.down) / self.n if self.n else float("nan")


# ---------------------------------------------------------------------------- one proportion


def clopper_pearson(k: int, n: int, confidence: float) -> tuple[float | None, float | None]:
    """Two-sided exact (Clopper-Pearson) interval for k successes in n trials; (None, None) for n = 0.

    Its beta-quantile form (`scipy.special.betaincinv`: lower = B(a/2; k, n - k + 1), upper =
    B(1 - a/2; k + 1, n - k)); equal to `scipy.stats.binomtest(k, n).proportion_ci(method="exact")`,
    which finds the same ends by root search, about 50 times slower.
    """
    if n <= 0:
        return None, None
    a = (1.0 - confidence) / 2.0
    lo = 0.0 if k <= 0 else float(special.betaincinv(k, n - k + 1, a))
    hi = 1.0 if k >= n else float(special.betaincinv(k + 1, n - k, 1.0 - a))
    return lo, hi


def binomial_pvalues(k: int, n: int, p0: float) -> tuple[float, float]:
    """Exact one-sided p-values of k successes in n against the rate p0: (above p0, below p0)."""
    if n <= 0:
        return 1.0, 1.0
    if p0 <= 0.0:  # the rate cannot be below 0; any success proves it is above
        return (0.0 if k > 0 else 1.0), 1.0
    if p0 >= 1.0:
        return 1.0, (0.0 if k < n else 1.0)
    greater = 1.0 if k <= 0 else float(special.bdtrc(k - 1, n, p0))  # P(X >= k)
    less = float(special.bdtr(k, n, p0))  # P(X <= k)
    return min(1.0, greater), min(1.0, less)


# ---------------------------------------------------------------------------- paired difference (Tango)


def _tango_sd(up: np.ndarray | float, down: np.ndarray | float, n: np.ndarray | float,
              delta0: np.ndarray | float) -> np.ndarray:
    """sqrt(n * (2 q~ + d0 (1 - d0))) with q~ the restricted MLE of the `down` cell under delta = d0.

    In Tango's notation the table's off-diagonal cells are n12 = `up` and n21 = `down`, and
    delta = (n12 - n21) / N; q~21 = (sqrt(B^2 - 4AC) - B) / (2A), A = 2N,
    B = -n12 - n21 + (2N - n12 + n21) d0, C = -n21 d0 (1 - d0).
    """
    d0 = np.asarray(delta0, dtype=float)
    a = 2.0 * n
    b = -up - down + (2.0 * n - up + down) * d0
    c = -down * d0 * (1.0 - d0)
    q21 = (np.sqrt(np.maximum(b * b - 4.0 * a * c, 0.0)) - b) / (2.0 * a)
    return np.sqrt(np.maximum(n * (2.0 * q21 + d0 * (1.0 - d0)), 0.0))


def tango_z(up: np.ndarray | float, down: np.ndarray | float, n: np.ndarray | float, delta0: np.ndarray | float,
            shift: float = 0.0) -> np.ndarray:
    """Tango's score statistic for H0: delta = delta0, with `shift` subtracted from the numerator.

    `shift` = +cc gives the statistic for the upper tail (evidence delta > delta0),
    -cc the one for the lower tail. Vectorised over every argument.
    """
    d0 = np.asarray(delta0, dtype=float)
    num = np.asarray(up, dtype=float) - np.asarray(down, dtype=float) - np.asarray(n, dtype=float) * d0 - shift
    sd = _tango_sd(np.asarray(up, dtype=float), np.asarray(down, dtype=float), np.asarray(n, dtype=float), d0)
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.where(sd > 0, num / np.where(sd > 0, sd, 1.0), np.sign(num) * np.inf)
    return np.where(num == 0, 0.0, z)


def _tango_z1(up: int, down: int, n: int, d0: float, shift: float) -> float:
    """`tango_z` for one table, in plain floats (the root search calls it ~40 times per bound)."""
    a = 2.0 * n
    b = -up - down + (2.0 * n - up + down) * d0
    c = -down * d0 * (1.0 - d0)
    q21 = (math.sqrt(max(b * b - 4.0 * a * c, 0.0)) - b) / (2.0 * a)
    num = up - down - n * d0 - shift
    sd = math.sqrt(max(n * (2.0 * q21 + d0 * (1.0 - d0)), 0.0))
    if num == 0:
        return 0.0
    return num / sd if sd > 0 else math.copysign(math.inf, num)


def tango_pvalues(counts: PairedCounts, delta0: float, cc: float = TANGO_CC) -> tuple[float, float]:
    """One-sided score p-values for delta = candidate - base against delta0: (above delta0, below delta0)."""
    n = counts.n
    if n <= 0:
        return 1.0, 1.0
    if delta0 <= -1.0:
        return (1.0 if counts.delta <= -1.0 else 0.0), 1.0
    if delta0 >= 1.0:
        return 1.0, (1.0 if counts.delta >= 1.0 else 0.0)
    z_hi = _tango_z1(counts.up, counts.down, n, delta0, cc)
    z_lo = _tango_z1(counts.up, counts.down, n, delta0, -cc)
    return float(special.ndtr(-z_hi)), float(special.ndtr(z_lo))


def tango_interval(counts: PairedCounts, confidence: float, cc: float = TANGO_CC) -> tuple[float | None, float | None]:
    """Two-sided Tango score interval for delta = candidate - base (the inversion of `tango_pvalues`)."""
    n = counts.n
    if n <= 0:
        return None, None
    z = float(sps.norm.ppf(0.5 + confidence / 2.0))
    lo_edge, hi_edge = -1.0 + _EPS, 1.0 - _EPS

    def upper_tail(d0: float) -> float:  # decreasing in d0; the lower bound is its root at z
        return _tango_z1(counts.up, counts.down, n, d0, cc) - z

    def lower_tail(d0: float) -> float:  # the upper bound is the root of this at -z
        return _tango_z1(counts.up, counts.down, n, d0, -cc) + z

    lo = -1.0 if upper_tail(lo_edge) <= 0 else _root(upper_tail, lo_edge, hi_edge)
    hi = 1.0 if lower_tail(hi_edge) >= 0 else _root(lower_tail, lo_edge, hi_edge)
    return lo, hi


def _root(f: Callable[[float], float], a: float, b: float) -> float:
    return float(optimize.brentq(f, a, b, xtol=1e-10))
