"""Paired statistics against hand-worked values and, for the bootstrap, its coverage on synthetic data."""

from __future__ import annotations

import numpy as np
import pytest

from tunegate.compare import stats


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


# ---------------------------------------------------------------------------- exact and score statistics (issue 15)


def test_clopper_pearson_matches_scipy_binomtest_and_never_collapses() -> None:
    from scipy import stats as sps

    for k, n in [(0, 1), (0, 5), (3, 3), (7, 20), (95, 100), (199, 200), (500, 1000)]:
        ci = sps.binomtest(k, n).proportion_ci(confidence_level=0.95, method="exact")
        assert stats.clopper_pearson(k, n, 0.95) == pytest.approx((ci.low, ci.high), abs=1e-9)
    # 3 of 3 refused: the one-sided 97.5% lower bound is 0.025 ** (1/3) = 0.292, nowhere near a `min 0.8`
    lo, hi = stats.clopper_pearson(3, 3, 0.95)
    assert lo == pytest.approx(0.025 ** (1 / 3)) and hi == 1.0
    assert stats.clopper_pearson(0, 0, 0.95) == (None, None)


def test_binomial_pvalues_are_the_inversion_of_clopper_pearson() -> None:
    for k, n in [(1, 10), (9, 10), (40, 50), (190, 200)]:
        lo, hi = stats.clopper_pearson(k, n, 0.95)
        assert lo is not None and hi is not None
        assert stats.binomial_pvalues(k, n, lo)[0] == pytest.approx(0.025, rel=1e-6)  # "rate above lo" is just significant
        assert stats.binomial_pvalues(k, n, hi)[1] == pytest.approx(0.025, rel=1e-6)
    assert stats.binomial_pvalues(1, 80, 0.0) == (0.0, 1.0)  # one success proves a rate above 0
    assert stats.binomial_pvalues(0, 80, 0.0) == (1.0, 1.0)


def test_tango_reproduces_published_intervals() -> None:
    # Fagerland, Lydersen & Laake (2014/2017), Cavo et al. (2012) table: n11 = 59, n12 = 6, n21 = 16, n22 = 80,
    # delta = (n12 - n21) / N = -0.0621, Tango asymptotic score 95% CI -0.1240 to -0.0054 (uncorrected)
    cavo = stats.PairedCounts(n=161, base_ones=75, candidate_ones=65, up=6, down=16)
    lo, hi = stats.tango_interval(cavo, 0.95, cc=0.0)
    assert (round(lo, 4), round(hi, 4)) == (-0.1240, -0.0054)
    # all 3 pairs discordant one way: estimate 1, interval -0.1230 to 1 (and its mirror)
    assert stats.tango_interval(stats.PairedCounts(3, 0, 3, 3, 0), 0.95, cc=0.0) == pytest.approx((-0.1230, 1.0), abs=5e-5)
    assert stats.tango_interval(stats.PairedCounts(3, 3, 0, 0, 3), 0.95, cc=0.0) == pytest.approx((-1.0, 0.1230), abs=5e-5)


def test_tango_pvalues_are_the_inversion_of_the_interval() -> None:
    for counts in (stats.PairedCounts(100, 95, 90, 2, 7), stats.PairedCounts(1000, 950, 850, 20, 120),
                   stats.PairedCounts(40, 10, 12, 5, 3)):
        lo, hi = stats.tango_interval(counts, 0.95)
        assert lo is not None and hi is not None and lo < counts.delta < hi
        assert stats.tango_pvalues(counts, lo)[0] == pytest.approx(0.025, rel=1e-5)
        assert stats.tango_pvalues(counts, hi)[1] == pytest.approx(0.025, rel=1e-5)


def test_tango_agreement_is_not_certainty() -> None:
    """Base and candidate agree on every one of 100 samples: the interval is about +/- 5.7 / n, not a point."""
    lo, hi = stats.tango_interval(stats.PairedCounts(100, 95, 95, 0, 0), 0.95)
    assert lo == pytest.approx(-hi) and 0.05 < hi < 0.06
    lo3, hi3 = stats.tango_interval(stats.PairedCounts(3, 3, 3, 0, 0), 0.95)
    assert hi3 > 0.5


def test_tango_one_sided_error_at_the_margin_stays_within_alpha_half() -> None:
    """Exact enumeration: a change exactly at the bound is declared beyond it at most 2.5% of the time."""
    worst = 0.0
    for n in (5, 20, 50, 100, 200, 500, 2000):
        for p in (0.5, 0.9, 0.95, 0.99):
            for margin in (0.0, 0.02, 0.05, 0.1):
                for redraw in (0.0, 0.5, 1.0):
                    # truth delta = -margin; the rule's bound is -margin; the "below the bound" test must not fire
                    _, p_fail = stats.paired_decision_probs(n, p, p - margin, -margin, +1, 0.025, 0.025, redraw=redraw)
                    worst = max(worst, p_fail)
    assert worst <= 0.025, worst
    # without the continuity correction it does not hold (p = 0.99, margin 0.02, n = 200: 5.2%)
    _, uncorrected = stats.paired_decision_probs(200, 0.99, 0.97, -0.02, +1, 0.025, 0.025, redraw=0.25, cc=0.0)
    assert uncorrected > 0.04


def test_exact_coverage_of_the_intervals_across_the_grid() -> None:
    """Clopper-Pearson (rates) and Tango (paired changes) cover at least 95% for n in 5..200, p in 0.5..0.99."""
    from scipy import stats as sps

    from tunegate.compare.stats.power import _grid

    for n in (5, 10, 20, 50, 200):
        k = np.arange(n + 1)
        for p in (0.5, 0.9, 0.95, 0.99):
            cis = [stats.clopper_pearson(int(x), n, 0.95) for x in k]
            cov = sum(m for m, (lo, hi) in zip(sps.binom.pmf(k, n, p), cis, strict=True) if lo <= p <= hi)  # type: ignore[operator]
            assert cov >= 0.95, (n, p, cov)
            for redraw in (0.5, 1.0):
                for d in (0.0, -0.05):
                    u, dn, prob = _grid(n, *stats.redraw_cells(p, p + d, redraw))
                    inside = (stats.tango_z(u, dn, n, d, shift=1.0) <= 1.959964) & (stats.tango_z(u, dn, n, d, shift=-1.0) >= -1.959964)
                    assert float(np.sum(prob * inside)) >= 0.95, (n, p, redraw, d)


def test_redraw_model_margins_and_discordance() -> None:
    up, down = stats.redraw_cells(0.95, 0.85, 0.5)
    assert 0.95 + up - down == pytest.approx(0.85)  # the candidate's rate is as planted
    assert stats.redraw_cells(0.9, 0.9, 1.0) == pytest.approx((0.09, 0.09))  # independence
    assert stats.redraw_cells(0.9, 0.9, 0.0) == (0.0, 0.0)  # an equal candidate that redraws nothing never differs
    with pytest.raises(ValueError):
        stats.redraw_cells(1.2, 0.5, 0.5)


def test_decision_probabilities_agree_with_a_seeded_simulation() -> None:
    rng = np.random.default_rng(5)
    n, trials = 60, 4000
    # one rate: `min 0.8` at a true rate of 0.9
    k = rng.binomial(n, 0.9, size=trials)
    sim = np.mean([stats.binomial_pvalues(int(x), n, 0.8)[0] < 0.025 for x in k])
    exact, _ = stats.binomial_decision_probs(n, 0.9, 0.8, +1, 0.025, 0.025)
    assert sim == pytest.approx(exact, abs=0.03)
    # paired: max_regression 0.1 on a 0.9 rate, equal candidate, redraw 0.5
    up, down = stats.redraw_cells(0.9, 0.9, 0.5)
    cells = rng.multinomial(n, [up, down, 1 - up - down], size=trials)
    sim = np.mean([stats.tango_pvalues(stats.PairedCounts(n, 0, 0, int(u), int(d)), -0.1)[0] < 0.025 for u, d, _ in cells])
    exact, _ = stats.paired_decision_probs(n, 0.9, 0.9, -0.1, +1, 0.025, 0.025, redraw=0.5)
    assert sim == pytest.approx(exact, abs=0.03)


def test_smallest_n_and_shift_searches() -> None:
    assert stats.smallest_n(lambda n: min(1.0, n / 1000), 0.9) in range(899, 902)
    assert stats.smallest_n(lambda n: 0.1, 0.9, n_max=1000) is None
    assert stats.smallest_shift(lambda r: r, 0.5, 1.0) == pytest.approx(0.5, abs=1e-3)
    assert stats.smallest_shift(lambda r: r / 10, 0.5, 1.0) is None


def test_bootstrap_pvalues_against_a_bound_and_degenerate_distributions() -> None:
    rng = np.random.default_rng(3)
    b = rng.normal(0, 1, 80)
    c = b + rng.normal(0.5, 0.3, 80)
    boot = stats.paired_bootstrap(b, c, "mean", n_resamples=999, seed=1)
    above, below = boot.pvalues("delta", 0.0)  # type: ignore[misc]
    assert above < 0.01 and below > 0.99
    lo, _ = boot.delta_interval(0.95)
    assert lo is not None and boot.pvalues("delta", lo)[0] == pytest.approx(0.025, abs=0.003)  # type: ignore[index]
    same = stats.paired_bootstrap(b, b.copy(), "mean", n_resamples=200)
    assert same.degenerate("delta") and same.pvalues("delta", 0.1) is None  # a point is no evidence either way
    assert not same.degenerate("candidate") and boot.se("delta") is not None
