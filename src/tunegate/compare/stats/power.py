"""Power of the gate's rules: how likely a rule is to pass or fail at a given n, computed exactly.

A rule is a one-sided test on a parameter theta (a rate, or the paired change of
a rate, or of a continuous metric) against a bound theta0, with a *good side*:
it passes when the test "theta is on the good side of theta0" rejects at
`alpha_good` and fails when "theta is on the bad side" rejects at `alpha_bad`.
The probabilities here are of those two events for a stated truth:

- one rate (`min` / `max`): exact, summing the binomial distribution over the
  exact test's rejection region;
- a paired change of a rate: exact, summing the multinomial distribution of the
  discordant counts (up, down) over the region where Tango's continuity-corrected
  score test rejects (the test the gate runs);
- a continuous metric: the normal approximation with the bootstrap's standard
  error.

The paired case needs a model of how often base and candidate disagree. The
**redraw model** (`redraw_cells`): on a share `redraw` of the samples the
candidate draws a fresh outcome at its own rate, independently of the base; on
the rest it keeps the base's outcome, except that a planted change flips kept
outcomes one way at random (a drop turns 1s into 0s) just enough to reach the
candidate's rate. redraw = 1 is independence (the most discordant pairs any
non-adversarial candidate gives), redraw = 0 a candidate that changes only where
the planted change forces it. The correlation between the base's and an equal
candidate's per-sample outcomes is 1 - redraw. The project plans with
`PLANNING_REDRAW` = 0.5 (see docs/gate-statistics.md for why, and for the
tables at 0.25 and 1).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
from scipy import special
from scipy import stats as sps

from tunegate.compare.stats.binary import TANGO_CC, binomial_pvalues, tango_z

PLANNING_REDRAW = 0.5


def redraw_cells(p_base: float, p_candidate: float, redraw: float) -> tuple[float, float]:
    """(P(up), P(down)) per pair under the redraw model; up = base 0 -> candidate 1, down = base 1 -> candidate 0."""
    pb, pc, k = float(p_base), float(p_candidate), float(redraw)
    if not (0.0 <= pb <= 1.0 and 0.0 <= pc <= 1.0 and 0.0 <= k <= 1.0):
        raise ValueError("rates and the redraw share must lie in [0, 1]")
    up = k * (1 - pb) * pc
    down = k * pb * (1 - pc)
    if pc < pb:
        down += (1 - k) * (pb - pc)  # kept 1s flipped to 0 with probability 1 - pc / pb
    elif pc > pb:
        up += (1 - k) * (pc - pb)
    return up, down


def _grid(n: int, q_up: float, q_down: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(up, down, probability) over the (up, down) counts that carry all but ~1e-12 of the multinomial mass."""

    def span(q: float) -> np.ndarray:
        if q <= 0:
            return np.zeros(1)
        sd = math.sqrt(n * q * (1 - q))
        lo = max(0, math.floor(n * q - 7.5 * sd - 5))
        hi = min(n, math.ceil(n * q + 7.5 * sd + 5))
        return np.arange(lo, hi + 1, dtype=float)

    u = span(q_up)[:, None]
    d = span(q_down)[None, :]
    rest = n - u - d
    ok = rest >= 0
    q_rest = max(0.0, 1.0 - q_up - q_down)
    with np.errstate(divide="ignore", invalid="ignore"):
        logp = (special.gammaln(n + 1) - special.gammaln(u + 1) - special.gammaln(d + 1)
                - special.gammaln(np.where(ok, rest, 0) + 1)
                + special.xlogy(u, q_up) + special.xlogy(d, q_down) + special.xlogy(np.where(ok, rest, 0), q_rest))
    prob = np.where(ok, np.exp(logp), 0.0)
    return np.broadcast_to(u, prob.shape), np.broadcast_to(d, prob.shape), prob


def paired_decision_probs(n: int, p_base: float, p_candidate: float, delta0: float, good: int,
                          alpha_good: float, alpha_bad: float, redraw: float = PLANNING_REDRAW,
                          cc: float = TANGO_CC) -> tuple[float, float]:
    """(P(pass), P(fail)) of a rule on delta = candidate - base rate against delta0, exactly.

    `good` is +1 when the good side is delta > delta0, -1 when it is delta < delta0.
    """
    if n <= 0:
        return 0.0, 0.0
    u, d, prob = _grid(n, *redraw_cells(p_base, p_candidate, redraw))
    z_hi = tango_z(u, d, n, delta0, shift=cc)  # large: evidence delta > delta0
    z_lo = tango_z(u, d, n, delta0, shift=-cc)  # small: evidence delta < delta0
    above = z_hi > sps.norm.isf(alpha_good if good > 0 else alpha_bad)
    below = z_lo < -sps.norm.isf(alpha_bad if good > 0 else alpha_good)
    p_above, p_below = float(np.sum(prob * above)), float(np.sum(prob * below))
    return (p_above, p_below) if good > 0 else (p_below, p_above)


def binomial_decision_probs(n: int, p_true: float, p0: float, good: int, alpha_good: float,
                            alpha_bad: float) -> tuple[float, float]:
    """(P(pass), P(fail)) of a rule on one rate against p0 (good = +1 for `min`, -1 for `max`), exactly.

    The exact test's one-sided p-values are monotone in the count k, so each rejection
    region is a tail {k >= k_hi} or {k <= k_lo}; the binomial pmf at the truth is summed over it.
    """
    if n <= 0:
        return 0.0, 0.0
    k = np.arange(n + 1)
    pv = np.array([binomial_pvalues(int(i), n, p0) for i in k]) if p0 <= 0 or p0 >= 1 else \
        np.stack([sps.binom.sf(k - 1, n, p0), sps.binom.cdf(k, n, p0)], axis=1)
    above = pv[:, 0] < (alpha_good if good > 0 else alpha_bad)
    below = pv[:, 1] < (alpha_bad if good > 0 else alpha_good)
    pmf = sps.binom.pmf(k, n, p_true)
    p_above, p_below = float(pmf[above].sum()), float(pmf[below].sum())
    return (p_above, p_below) if good > 0 else (p_below, p_above)


def normal_decision_probs(distance: float, se: float, alpha_good: float, alpha_bad: float) -> tuple[float, float]:
    """(P(pass), P(fail)) for an estimate ~ N(theta, se^2) whose truth lies `distance` on the good side of the bound."""
    if not se > 0:
        return 0.0, 0.0
    return (float(sps.norm.cdf(distance / se - sps.norm.isf(alpha_good))),
            float(sps.norm.cdf(-distance / se - sps.norm.isf(alpha_bad))))


def smallest_shift(fail_prob: Callable[[float], float], power: float, r_max: float, tol: float = 1e-4) -> float | None:
    """Smallest r in [0, r_max] with fail_prob(r) >= power (fail_prob increasing in r); None if even r_max falls short."""
    if r_max <= 0 or fail_prob(r_max) < power:
        return None
    if fail_prob(0.0) >= power:
        return 0.0
    lo, hi = 0.0, r_max
    while hi - lo > tol:
        mid = (lo + hi) / 2
        if fail_prob(mid) >= power:
            hi = mid
        else:
            lo = mid
    return hi


def smallest_n(prob: Callable[[int], float], target: float, n_min: int = 1, n_max: int = 200_000) -> int | None:
    """Smallest n (found by bisection) with prob(n) >= target; None when even n_max falls short.

    Exact tests are saw-toothed in n, so the n returned is where the curve first crosses the
    target on the bisection path; neighbouring n can differ by a few percent either way.
    """
    hi = max(n_min, 8)
    while prob(hi) < target:
        if hi >= n_max:
            return None
        hi = min(n_max, hi * 2)
    lo = max(n_min, hi // 2) if hi > n_min else n_min
    if lo < hi and prob(lo) >= target:
        return lo
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if prob(mid) >= target:
            hi = mid
        else:
            lo = mid
    return hi
