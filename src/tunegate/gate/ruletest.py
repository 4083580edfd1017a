"""What each gate rule tests, and how much it can detect: shared by `gate` (deciding) and `plan` (sizing).

Every rule is a pair of one-sided tests on a parameter theta against a bound
theta0 (`side`):

| rule | theta | theta0 | good side |
|---|---|---|---|
| `min: v` | candidate value | v | above |
| `max: v` | candidate value | v | below |
| `max_regression: t` | delta = candidate - base | -t (higher is better), +t (lower is better) | the better direction |
| `min_improvement: t` | delta | +t (higher is better), -t (lower is better) | the better direction |

PASS needs the test "theta is on the good side of theta0" to reject at
alpha/2 (alpha = 1 - confidence): the one-sided (1 - alpha/2) bound of theta
lies on the good side. FAIL needs "theta is on the bad side" to reject at
alpha/2 after Holm's adjustment across the candidate's rules. A candidate
exactly at the bound therefore fails with probability at most alpha/2 (2.5% at
the default 95%), and passes with at most alpha/2 too.

`detectable` answers "how large a regression would this rule have caught?":
the smallest move r of the metric in its bad direction, from the base's
observed value, that the rule FAILS with the stated probability at the n it
had, with the fail test at the first Holm step (alpha / 2 / m for a family of m
rules). Pass/fail metrics use the exact decision probabilities of
`tunegate.compare.stats.power` (the paired ones under the redraw model, with the
redraw share the larger of `PLANNING_REDRAW` and the one the data show);
continuous metrics the normal approximation with the bootstrap standard error.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from scipy import stats as sps

from tunegate.compare.comparison import stats
from tunegate.compare.models import MetricComparison
from tunegate.core.config import GateRule

Which = Literal["candidate", "delta"]


@dataclass(frozen=True)
class Side:
    """The parameter a rule tests, its bound and its good side (+1: above the bound is good)."""

    which: Which
    theta0: float
    good: int


def side_of(kind: str, threshold: float, direction: str) -> Side:
    """The test behind a rule kind on a metric with `direction` ("higher", "lower" or "neutral")."""
    sign = -1 if direction == "lower" else 1
    if kind == "min":
        return Side("candidate", threshold, +1)
    if kind == "max":
        return Side("candidate", threshold, -1)
    if kind == "max_regression":
        return Side("delta", -sign * threshold, sign)
    if kind == "min_improvement":
        return Side("delta", sign * threshold, sign)
    raise ValueError(f"unknown rule kind {kind!r}")


def side_of_rule(rule: GateRule, m: MetricComparison) -> Side:
    return side_of(rule.kind, rule.threshold, m.direction)


def alpha_half(confidence: float) -> float:
    """The one-sided level of each of a rule's two tests: (1 - confidence) / 2."""
    return (1.0 - confidence) / 2.0


def observed_redraw(counts: stats.PairedCounts) -> float:
    """The redraw share the observed table implies: discordant share / the share independence would give."""
    n = counts.n
    if n == 0:
        return 0.0
    pb, pc = counts.base_ones / n, counts.candidate_ones / n
    indep = pb * (1 - pc) + (1 - pb) * pc
    return min(1.0, (counts.up + counts.down) / n / indep) if indep > 0 else 0.0


def detectable(rule: GateRule, m: MetricComparison, confidence: float, family: int,
               powers: tuple[float, ...] = (0.8, 0.95)) -> tuple[float | None, ...]:
    """The smallest regression (metric units, bad direction, from the base value) failed with each power.

    None where not even the largest possible move reaches that power (or no statistic exists).
    """
    side = side_of_rule(rule, m)
    a_good = alpha_half(confidence)
    a_bad = a_good / max(1, family)
    counts = m.counts
    if counts is not None and counts.n > 0:
        n = counts.n
        pb = counts.base_ones / n
        r_max = pb if side.good > 0 else 1.0 - pb
        if side.which == "candidate":
            def fail(r: float) -> float:
                return stats.binomial_decision_probs(n, pb - side.good * r, side.theta0, side.good, a_good, a_bad)[1]
        else:
            redraw = max(stats.PLANNING_REDRAW, observed_redraw(counts))

            def fail(r: float) -> float:
                return stats.paired_decision_probs(n, pb, pb - side.good * r, side.theta0, side.good, a_good, a_bad,
                                                   redraw=redraw)[1]
        return tuple(stats.smallest_shift(fail, p, r_max) for p in powers)
    se = m.standard_error(side.which)
    if se is None or se <= 0 or m.undecidable(side.which) is not None or m.base_value is None:
        return tuple(None for _ in powers)
    equal = 0.0 if side.which == "delta" else m.base_value
    inside = side.good * (equal - side.theta0)  # how far the equal candidate sits on the good side
    z_bad = float(sps.norm.isf(a_bad))
    return tuple(max(0.0, inside + (z_bad + float(sps.norm.ppf(p))) * se) for p in powers)
