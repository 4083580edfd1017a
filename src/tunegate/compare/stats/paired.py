"""Paired resampling statistics for base-vs-candidate comparisons, through scipy.

Base and candidate answer the same samples, so every test here is paired:

- `mcnemar_exact`: McNemar's exact test for per-sample pass/fail metrics, the
  exact two-sided binomial test at 1/2 on the discordant pairs (as
  `scipy.stats.binomtest`, through the binomial cdf `scipy.special.bdtr`) (the
  "is there any difference?" p-value shown by `compare`).
- `paired_permutation_pvalue`: for continuous metrics, a paired permutation
  test (`scipy.stats.permutation_test`, `permutation_type="samples"`) whose
  statistic is the metric's own aggregation (mean, ratio, exp_ratio...), so the
  p-value tests exactly the number the report shows, not a proxy.
- `paired_bootstrap`: percentile intervals from a seeded paired bootstrap
  (`scipy.stats.bootstrap`, `paired=True`) of the base value, the candidate
  value and their delta, all from the same resamples; the resampled values are
  kept so an interval at another confidence level, or a one-sided p-value
  against a rule's bound (`Bootstrap.pvalues`), costs nothing. A degenerate
  distribution (every resample equal) gives no p-value: a zero-width interval
  is never evidence.
- `holm`: Holm's step-down adjustment.

Both resampling helpers pass sample *indices* to scipy and look the values
(and weights) up inside a vectorised statistic, because `aggregate` needs the
values and weights of a pair to travel together.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import special
from scipy import stats as sps

from tunegate.core.aggregate import aggregate

DEFAULT_RESAMPLES = 2000


@dataclass(frozen=True)
class McNemar:
    """Discordant counts and the exact two-sided p-value.

    `worse` counts pairs where base was 1 and candidate 0; `better` the reverse
    (for a "higher is better" metric; the caller decides what 1 means).
    """

    worse: int
    better: int
    pvalue: float


def mcnemar_exact(base: np.ndarray, candidate: np.ndarray) -> McNemar:
    """McNemar's exact test on paired 0/1 vectors.

    Under H0 each discordant pair is equally likely to go either way, so the
    count of (1 -> 0) pairs among all discordant pairs is Binomial(b + c, 1/2).
    With no discordant pair there is no evidence of a difference: p = 1.
    """
    base = np.asarray(base, dtype=float)
    candidate = np.asarray(candidate, dtype=float)
    if base.shape != candidate.shape:
        raise ValueError("base and candidate must have the same shape")
    if not np.all(np.isin(base, (0.0, 1.0))) or not np.all(np.isin(candidate, (0.0, 1.0))):
        raise ValueError("McNemar's test needs 0/1 per-sample values")
    worse = int(np.sum((base == 1) & (candidate == 0)))
    better = int(np.sum((base == 0) & (candidate == 1)))
    n = worse + better
    # the two-sided exact binomial p-value at 1/2 (what `scipy.stats.binomtest` computes): twice the smaller tail
    p = 1.0 if n == 0 else 2.0 * float(special.bdtr(min(worse, better), n, 0.5))
    return McNemar(worse=worse, better=better, pvalue=min(1.0, p))


def _paired_arrays(
    base: np.ndarray,
    candidate: np.ndarray,
    base_weights: np.ndarray | None,
    candidate_weights: np.ndarray | None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None:
    """Both sides and their weights as float arrays (unit weights where none are given); None when there is no pair.

    The permutation test and the bootstrap take the same paired sample, so they
    read it here, the same way. "No pair" has a different answer in each (p = 1,
    an empty bootstrap), so it is the caller's to give; the weights are not read then.
    """
    b = np.asarray(base, dtype=float)
    c = np.asarray(candidate, dtype=float)
    if b.shape[-1] == 0:
        return None
    wb = np.ones_like(b) if base_weights is None else np.asarray(base_weights, dtype=float)
    wc = np.ones_like(c) if candidate_weights is None else np.asarray(candidate_weights, dtype=float)
    return b, c, wb, wc


def paired_permutation_pvalue(
    base: np.ndarray,
    candidate: np.ndarray,
    aggregation: str = "mean",
    base_weights: np.ndarray | None = None,
    candidate_weights: np.ndarray | None = None,
    *,
    n_resamples: int = DEFAULT_RESAMPLES,
    seed: int | Sequence[int] = 0,
) -> float:
    """Two-sided p-value for "the paired difference of the aggregated metric is 0".

    Under H0 the labels base/candidate are exchangeable within each pair, so
    the null distribution swaps them pair by pair (exact when 2**n is at most
    `n_resamples`). Identical vectors give p = 1.
    """
    arrays = _paired_arrays(base, candidate, base_weights, candidate_weights)
    if arrays is None:
        return 1.0
    b, c, wb, wc = arrays
    n = b.shape[-1]
    if np.array_equal(b, c) and np.array_equal(wb, wc):
        return 1.0
    vals = np.concatenate([b, c])
    wts = np.concatenate([wb, wc])

    def statistic(x: np.ndarray, y: np.ndarray, axis: int = -1) -> np.ndarray:
        xi, yi = x.astype(np.intp), y.astype(np.intp)
        return aggregate(aggregation, vals[yi], wts[yi]) - aggregate(aggregation, vals[xi], wts[xi])

    res = sps.permutation_test(
        (np.arange(n), np.arange(n) + n), statistic, permutation_type="samples", vectorized=True,
        n_resamples=n_resamples, alternative="two-sided", rng=np.random.default_rng(seed),
    )
    p = float(res.pvalue)
    return 1.0 if np.isnan(p) else min(1.0, p)


@dataclass
class Bootstrap:
    """Resampled base values, candidate values and deltas (one entry per resample)."""

    base: np.ndarray
    candidate: np.ndarray
    delta: np.ndarray

    @staticmethod
    def _interval(dist: np.ndarray, confidence: float) -> tuple[float | None, float | None]:
        finite = dist[np.isfinite(dist)]
        if finite.size == 0:
            return None, None
        tail = (1.0 - confidence) / 2.0 * 100.0
        lo, hi = np.percentile(finite, [tail, 100.0 - tail])
        return float(lo), float(hi)

    def delta_interval(self, confidence: float) -> tuple[float | None, float | None]:
        """Two-sided percentile interval of candidate minus base."""
        return self._interval(self.delta, confidence)

    def candidate_interval(self, confidence: float) -> tuple[float | None, float | None]:
        return self._interval(self.candidate, confidence)

    def base_interval(self, confidence: float) -> tuple[float | None, float | None]:
        return self._interval(self.base, confidence)

    def _dist(self, which: str) -> np.ndarray:
        dist = {"base": self.base, "candidate": self.candidate, "delta": self.delta}[which]
        return dist[np.isfinite(dist)]

    def degenerate(self, which: str) -> bool:
        """True when the resampled `which` ("base", "candidate", "delta") has no spread (or no value)."""
        dist = self._dist(which)
        if dist.size == 0:
            return True
        scale = max(1.0, float(np.max(np.abs(dist))))
        return float(np.ptp(dist)) <= 1e-12 * scale

    def pvalues(self, which: str, theta0: float) -> tuple[float, float] | None:
        """One-sided bootstrap p-values of `which` against theta0: (above theta0, below theta0).

        p(above) = (1 + #{resamples <= theta0}) / (B + 1), the smallest level at which the
        percentile lower bound clears theta0 (and mirrored for below); None for a degenerate
        distribution, which carries no evidence either way.
        """
        if self.degenerate(which):
            return None
        dist = self._dist(which)
        b = dist.size
        return float((1 + np.sum(dist <= theta0)) / (b + 1)), float((1 + np.sum(dist >= theta0)) / (b + 1))

    def se(self, which: str) -> float | None:
        """Bootstrap standard error of `which` (None when there is no resample)."""
        dist = self._dist(which)
        return float(np.std(dist, ddof=1)) if dist.size > 1 else None


def paired_bootstrap(
    base: np.ndarray,
    candidate: np.ndarray,
    aggregation: str = "mean",
    base_weights: np.ndarray | None = None,
    candidate_weights: np.ndarray | None = None,
    *,
    n_resamples: int = DEFAULT_RESAMPLES,
    seed: int | Sequence[int] = 0,
) -> Bootstrap:
    """Resample pairs with replacement and recompute both metrics per resample (vectorised).

    A resample whose aggregate is undefined (a ratio with a zero denominator)
    yields NaN and is left out of the percentiles.
    """
    arrays = _paired_arrays(base, candidate, base_weights, candidate_weights)
    if arrays is None:
        empty = np.array([], dtype=float)
        return Bootstrap(empty, empty, empty)
    b, c, wb, wc = arrays
    n = b.shape[-1]

    def statistic(idx: np.ndarray, axis: int = -1) -> np.ndarray:
        i = idx.astype(np.intp)
        with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
            vb = aggregate(aggregation, b[i], wb[i])
            vc = aggregate(aggregation, c[i], wc[i])
        return np.stack([vb, vc])

    if n == 1:  # scipy refuses a single observation; every resample is that pair
        one = statistic(np.zeros((n_resamples, 1)))
        dist = one
    else:
        with warnings.catch_warnings():  # identical pairs give a degenerate (point) distribution: that is an answer
            warnings.simplefilter("ignore", sps.DegenerateDataWarning)
            res = sps.bootstrap(
                (np.arange(n),), statistic, vectorized=True, paired=True, n_resamples=n_resamples,
                method="percentile", rng=np.random.default_rng(seed),
            )
        dist = np.asarray(res.bootstrap_distribution)
    return Bootstrap(base=dist[0], candidate=dist[1], delta=dist[1] - dist[0])


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values (family-wise error control, any dependence).

    Sort ascending; the k-th smallest (0-based) is multiplied by (m - k); a
    running maximum keeps the adjusted values monotone; cap at 1.
    """
    p = np.asarray(pvalues, dtype=float)
    m = p.size
    if m == 0:
        return []
    order = np.argsort(p, kind="stable")
    scaled = (m - np.arange(m)) * p[order]
    adjusted_sorted = np.minimum(1.0, np.maximum.accumulate(scaled))
    out = np.empty(m)
    out[order] = adjusted_sorted
    return [float(x) for x in out]
