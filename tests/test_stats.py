"""Paired statistics against hand-worked values and, for the bootstrap, its coverage on synthetic data."""

from __future__ import annotations

import numpy as np
import pytest

from tunegate import stats


def test_mcnemar_exact_hand_worked() -> None:
    # 10 pairs: 7 go 1 -> 0 (worse), 1 goes 0 -> 1 (better), 2 concordant.
    # Two-sided exact: 2 * P(X <= 1 | Binomial(8, 1/2)) = 2 * (1 + 8) / 256 = 18/256.
    base = np.array([1, 1, 1, 1, 1, 1, 1, 0, 1, 0])
    cand = np.array([0, 0, 0, 0, 0, 0, 0, 1, 1, 0])
    res = stats.mcnemar_exact(base, cand)
    assert (res.worse, res.better) == (7, 1)
    assert res.pvalue == pytest.approx(18 / 256, abs=1e-12)


def test_mcnemar_symmetric_and_degenerate_cases() -> None:
    # 5 worse, 5 better: as balanced as it gets, p = 1
    assert stats.mcnemar_exact(np.array([1] * 5 + [0] * 5), np.array([0] * 5 + [1] * 5)).pvalue == pytest.approx(1.0)
    # no discordant pair: no evidence, p = 1 (not NaN)
    same = np.array([1, 0, 1])
    assert stats.mcnemar_exact(same, same).pvalue == 1.0
    # all 6 discordant pairs one way: 2 / 2**6
    assert stats.mcnemar_exact(np.ones(6), np.zeros(6)).pvalue == pytest.approx(2 / 64)
    with pytest.raises(ValueError, match="0/1"):
        stats.mcnemar_exact(np.array([0.5, 1.0]), np.array([1.0, 1.0]))


def test_holm_hand_worked() -> None:
    # sorted: 0.005*4 = 0.02, 0.01*3 = 0.03, 0.03*2 = 0.06, 0.04*1 = 0.04 -> running max 0.06
    assert stats.holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert stats.holm([0.5, 0.6]) == pytest.approx([1.0, 1.0])  # capped at 1
    assert stats.holm([0.02]) == pytest.approx([0.02])  # one rule: no correction
    assert stats.holm([]) == []


def test_paired_permutation_exact_small_case() -> None:
    # differences 1, 2, 3: of the 8 sign flips only the two all-same-sign ones reach |mean| >= 2 -> p = 2/8
    base = np.array([0.0, 0.0, 0.0])
    cand = np.array([1.0, 2.0, 3.0])
    assert stats.paired_permutation_pvalue(base, cand, "mean") == pytest.approx(0.25)
    assert stats.paired_permutation_pvalue(cand, cand, "mean") == 1.0


def test_paired_permutation_uses_the_metric_aggregation() -> None:
    # ratio metric: sum(values) / sum(weights); swapping a pair swaps its weights too
    b = np.array([1.0, 2.0, 0.0, 1.0])
    c = np.array([3.0, 4.0, 2.0, 3.0])
    w = np.array([2.0, 2.0, 2.0, 2.0])
    p = stats.paired_permutation_pvalue(b, c, "ratio", w, w)
    assert p == pytest.approx(2 / 16)  # every difference is +2: only the all-same-sign flips are as extreme


def test_bootstrap_is_seeded_and_recomputes_the_aggregation() -> None:
    rng = np.random.default_rng(1)
    b, c = rng.random(40), rng.random(40)
    w = rng.integers(1, 5, size=40).astype(float)
    one = stats.paired_bootstrap(b, c, "ratio", w, w, n_resamples=300, seed=7)
    two = stats.paired_bootstrap(b, c, "ratio", w, w, n_resamples=300, seed=7)
    np.testing.assert_array_equal(one.delta, two.delta)
    lo, hi = one.delta_interval(0.95)
    point = c.sum() / w.sum() - b.sum() / w.sum()
    assert lo is not None and hi is not None and lo < point < hi
    lo90, hi90 = one.delta_interval(0.90)
    assert lo <= lo90 and hi90 <= hi  # a lower confidence gives a narrower interval


def test_bootstrap_of_identical_runs_is_a_point_at_zero() -> None:
    b = np.array([1.0, 0.0, 1.0, 1.0])
    boot = stats.paired_bootstrap(b, b.copy(), "mean", n_resamples=200)
    assert boot.delta_interval(0.95) == (0.0, 0.0)


def test_bootstrap_single_pair_and_empty() -> None:
    boot = stats.paired_bootstrap(np.array([0.2]), np.array([0.5]), "mean", n_resamples=100)
    assert boot.delta_interval(0.95) == pytest.approx((0.3, 0.3))
    empty = stats.paired_bootstrap(np.array([]), np.array([]), "mean", n_resamples=100)
    assert empty.delta_interval(0.95) == (None, None)


def test_bootstrap_interval_covers_the_true_delta_at_about_the_stated_rate() -> None:
    """200 synthetic paired data sets with a known delta of 0.3: a 90% interval should cover ~90% of the time."""
    rng = np.random.default_rng(2024)
    trials, n, true_delta = 200, 80, 0.3
    covered = 0
    for t in range(trials):
        base = rng.normal(0.0, 1.0, n)
        cand = 0.6 * base + rng.normal(true_delta, 0.8, n)  # correlated pairs, E[cand - base] = 0.3
        lo, hi = stats.paired_bootstrap(base, cand, "mean", n_resamples=500, seed=t).delta_interval(0.90)
        covered += lo <= true_delta <= hi
    rate = covered / trials
    # binomial SE at 0.9 with 200 trials is ~0.021; percentile intervals run slightly narrow at n=80
    assert 0.83 <= rate <= 0.96, rate


def test_bootstrap_coverage_for_a_binary_metric() -> None:
    rng = np.random.default_rng(99)
    trials, n, pb, pc = 200, 100, 0.7, 0.6
    covered = 0
    for t in range(trials):
        base = (rng.random(n) < pb).astype(float)
        flip = rng.random(n) < 0.2  # pairs are correlated: candidate mostly copies base
        cand = np.where(flip, (rng.random(n) < pc).astype(float), base)
        true = 0.8 * pb + 0.2 * pc - pb  # E[cand] - E[base]
        lo, hi = stats.paired_bootstrap(base, cand, "mean", n_resamples=500, seed=t).delta_interval(0.95)
        covered += lo <= true <= hi
    assert 0.88 <= covered / trials <= 0.99, covered / trials
