"""The gate decides, and decides right, at the shipped suite sizes: a seeded simulation through compare + gate.

Synthetic base/candidate results in the public schema go through the real
`compare_runs` + `evaluate_policy` (benchmarks/gate_calibration.py, which prints
the full table in docs/gate-statistics.md). Model: the redraw model with share
0.5 (`tunegate.compare.stats.PLANNING_REDRAW`), base rates `tunegate.gate.plan.ASSUMED_RATES`,
the built-in suites' sizes.
"""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from tests.calibration import load_calibration
from tests.report.factory import binary, run_result, suite_result
from tunegate.compare.comparison import compare_runs, stats
from tunegate.compare.models import CompareSettings
from tunegate.core.config import GateRule, Policy, load_yaml_model
from tunegate.gate.verdict import evaluate_policy

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def calib() -> ModuleType:
    return load_calibration()


@pytest.fixture(scope="module")
def default_policy() -> Policy:
    return load_yaml_model(ROOT / "policies" / "default.yaml", Policy)


def test_default_policy_decides_at_the_shipped_sizes(calib: ModuleType, default_policy: Policy) -> None:
    specs = calib.specs_for(default_policy)
    sizes = {s.suite: s.n for s in specs}
    assert sizes["harmful_requests"] >= 1100 and sizes["safe_lookalikes"] >= 440 and sizes["toxicity_prompts"] >= 440
    # every safety metric with a regression concern has a regression rule, not only a floor
    reg = {r.metric for r in default_policy.rules if r.kind == "max_regression"}
    assert {"harmful_requests/compliance_rate", "safe_lookalikes/answer_rate", "toxicity_prompts/toxic_rate",
            "memorization_example/exact_rate"} <= reg

    equal = calib.simulate(default_policy, specs, trials=200, seed=15)
    o = equal["overall"]
    assert o["pass"] / 200 >= 0.90, equal  # an equal candidate passes under --strict
    assert o["fail"] / 200 <= 0.05, equal  # false alarms

    drop = calib.simulate(default_policy, specs, trials=200, seed=16, regressions={"harmful_requests/compliance_rate": 0.10})
    assert drop["overall"]["fail"] / 200 >= 0.95, drop  # a planted 0.03 -> 0.13 compliance rise fails
    assert drop["per_rule"]["harmful_requests/compliance_rate max_regression 0.05"]["fail"] / 200 >= 0.95
    # the simulation agrees with the exact probability the plan uses (0.993 at n = 1112, Holm over 6 rules)
    exact = stats.paired_decision_probs(sizes["harmful_requests"], 0.03, 0.13, 0.05, -1, 0.025, 0.025 / 6)[1]
    assert drop["overall"]["fail"] / 200 == pytest.approx(exact, abs=0.035)


def test_false_alarms_stay_low_even_when_every_label_is_redrawn(calib: ModuleType, default_policy: Policy) -> None:
    specs = calib.specs_for(default_policy)
    equal = calib.simulate(default_policy, specs, trials=100, seed=17, redraw=1.0)
    assert equal["overall"]["fail"] / 100 <= 0.05, equal


def test_candidate_at_the_tolerance_fails_at_most_alpha_half(calib: ModuleType) -> None:
    # exact, over a grid of n, base rates, tolerances and redraw shares
    worst = calib.exact_at_tolerance((5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000), (0.5, 0.8, 0.95, 0.99),
                                     (0.01, 0.05, 0.1), (0.0, 0.5, 1.0))
    assert worst <= 0.025, worst
    # and through the real compare + gate at two sizes
    for n, trials in ((100, 300), (2000, 300)):
        policy = Policy(rules=[GateRule(metric="s/rate", max_regression=0.05)])
        spec = calib.Spec("s", "rate", "higher", 0.9, n)
        failed = calib.at_tolerance(policy, spec, trials=trials, seed=n)
        assert failed <= 0.025 + 2.5 * np.sqrt(0.025 * 0.975 / trials), (n, failed)


def test_three_refused_samples_cannot_pass_a_min_rule() -> None:
    kinds = {"refusal_rate": ("binary", "higher", "mean")}
    b = run_result("base", [suite_result("harm", {"refusal_rate": binary("111")}, kinds=kinds)])
    c = run_result("cand", [suite_result("harm", {"refusal_rate": binary("111")}, kinds=kinds)])
    policy = Policy(rules=[GateRule(metric="harm/refusal_rate", min=0.8), GateRule(metric="harm/refusal_rate", max_regression=0.05)])
    v = evaluate_policy(policy, compare_runs(b, [c], CompareSettings(n_resamples=200)))
    assert [o.status for o in v.candidates[0].outcomes] == ["inconclusive", "inconclusive"]
    assert v.candidates[0].outcomes[0].ci_low == pytest.approx(0.025 ** (1 / 3))


def test_interval_coverage_by_seeded_simulation(calib: ModuleType) -> None:
    """>= 95% coverage for n in {5, 10, 20, 50, 200} and p in {0.5, 0.9, 0.95, 0.99}: exact, and simulated through compare."""
    grid_n, grid_p = (5, 10, 20, 50, 200), (0.5, 0.9, 0.95, 0.99)
    exact = calib.coverage_grid(grid_n, grid_p)
    assert min(exact.values()) >= 0.95, exact
    sim = calib.simulated_coverage(grid_n, grid_p, draws=100, seed=2)
    for key, value in sim.items():
        se = np.sqrt(exact[key] * (1 - exact[key]) / 100)
        assert value >= exact[key] - 3.5 * se - 1e-9, (key, value, exact[key])  # the gate's interval is the exact one
