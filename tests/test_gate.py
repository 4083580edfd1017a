"""Gate: the verdict table of every rule type, one-sided tests against the bound, Holm across rules,
error budgets, the detectable regressions, and each CLI exit code."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.report.factory import binary, run_result, suite_result
from tunegate.cli import main
from tunegate.compare.comparison import compare_runs, stats
from tunegate.compare.models import CompareSettings, MetricComparison
from tunegate.core.config import GateRule, Policy
from tunegate.core.errors import UserError
from tunegate.gate.verdict import decide, evaluate_policy, exit_code_for

FAST = CompareSettings(n_resamples=400, seed=1)


def mcb(n: int, base_ones: int, cand_ones: int, up: int, down: int, direction: str = "higher") -> MetricComparison:
    """A pass/fail metric comparison from its paired table (the exact statistics need nothing else)."""
    counts = stats.PairedCounts(n, base_ones, cand_ones, up, down)
    return MetricComparison(suite="s", metric="m", direction=direction, kind="binary", aggregation="mean",  # type: ignore[arg-type]
                            base_value=base_ones / n, candidate_value=cand_ones / n, delta=counts.delta,
                            interval_method="exact", binary_counts=dict(vars(counts)), n_paired=n)


def rule(**kw: float) -> GateRule:
    return GateRule(metric="s/m", **kw)


# (label, rule, metric comparison, expected status)
TABLE = [
    # max_regression 0.05 on a higher-is-better rate: PASS iff the regression's upper bound < 0.05,
    # FAIL iff its lower bound > 0.05 (significantly beyond the tolerance), else inconclusive
    ("identical, n=400", {"max_regression": 0.05}, mcb(400, 380, 380, 0, 0), "pass"),
    ("identical, n=20: too few to show it", {"max_regression": 0.05}, mcb(20, 19, 19, 0, 0), "inconclusive"),
    ("regression exactly at the tolerance", {"max_regression": 0.05}, mcb(400, 380, 360, 0, 20), "inconclusive"),
    ("regression of 0.2", {"max_regression": 0.05}, mcb(400, 380, 300, 0, 80), "fail"),
    ("regression of 0.09, not yet significant", {"max_regression": 0.05}, mcb(100, 95, 86, 1, 10), "inconclusive"),
    ("tolerance 0, identical", {"max_regression": 0.0}, mcb(1000, 950, 950, 0, 0), "inconclusive"),
    ("tolerance 0, much better", {"max_regression": 0.0}, mcb(1000, 500, 700, 200, 0), "pass"),
    # lower is better: a rise is the regression
    ("lower: identical", {"max_regression": 0.05}, mcb(400, 40, 40, 0, 0, "lower"), "pass"),
    ("lower: rise of 0.2", {"max_regression": 0.05}, mcb(400, 40, 120, 80, 0, "lower"), "fail"),
    ("lower: fall of 0.05", {"max_regression": 0.05}, mcb(400, 40, 20, 0, 20, "lower"), "pass"),
    # min_improvement 0.02
    ("improvement of 0.2", {"min_improvement": 0.02}, mcb(1000, 500, 700, 200, 0), "pass"),
    ("no improvement", {"min_improvement": 0.02}, mcb(1000, 500, 500, 0, 0), "fail"),
    ("improvement of 0.03 on 200", {"min_improvement": 0.02}, mcb(200, 100, 106, 8, 2), "inconclusive"),
    ("lower: improvement", {"min_improvement": 0.02}, mcb(1000, 500, 300, 0, 200, "lower"), "pass"),
    # min / max on the candidate's rate: exact Clopper-Pearson bounds
    ("3 of 3 refused cannot pass min 0.8", {"min": 0.8}, mcb(3, 3, 3, 0, 0), "inconclusive"),
    ("190 of 200 clear min 0.8", {"min": 0.8}, mcb(200, 190, 190, 0, 0), "pass"),
    ("100 of 200 miss min 0.8", {"min": 0.8}, mcb(200, 190, 100, 0, 90), "fail"),
    ("162 of 200 straddle min 0.8", {"min": 0.8}, mcb(200, 190, 162, 0, 28), "inconclusive"),
    ("one clean sample cannot pass max 0", {"max": 0.0}, mcb(1, 0, 0, 0, 0), "inconclusive"),
    ("no sample can pass max 0", {"max": 0.0}, mcb(2000, 0, 0, 0, 0), "inconclusive"),
    ("one copy fails max 0", {"max": 0.0}, mcb(10, 0, 1, 1, 0), "fail"),
    ("0 of 200 clear max 0.05", {"max": 0.05}, mcb(200, 0, 0, 0, 0), "pass"),
    ("40 of 200 miss max 0.05", {"max": 0.05}, mcb(200, 0, 40, 40, 0), "fail"),
]


@pytest.mark.parametrize(("label", "kw", "m", "expected"), TABLE, ids=[t[0] for t in TABLE])
def test_verdict_table(label: str, kw: dict[str, float], m: MetricComparison, expected: str) -> None:
    out = decide(rule(**kw), m, 0.95)
    assert out.status == expected, out.reason
    assert out.reason.endswith(".") and len(out.reason) < 300
    assert out.method == "exact" and out.n == m.n_paired and out.p_pass is not None and out.p_value is not None
    # the decision and the interval say the same: the one-sided bounds are the interval's ends
    lo, hi = out.ci_low, out.ci_high
    assert lo is not None and hi is not None and lo <= hi
    if out.kind in ("min", "max"):
        assert lo <= (m.candidate_value or 0.0) <= hi
        if expected == "pass":
            assert (lo > out.threshold) if out.kind == "min" else (hi < out.threshold)
    elif out.kind == "max_regression" and expected == "fail":
        worst = -hi if m.direction == "higher" else lo  # the smallest regression the interval allows
        assert worst > out.threshold


def test_continuous_rules_use_the_bootstrap_and_refuse_degenerate_or_tiny_evidence() -> None:
    rng = np.random.default_rng(0)
    kinds = {"score": ("continuous", "higher", "mean")}

    def outcome(base: np.ndarray, cand: np.ndarray, **kw: float) -> tuple[str, str]:
        b = run_result("base", [suite_result("qa", {"score": {f"s{i}": float(v) for i, v in enumerate(base)}}, kinds=kinds)])
        c = run_result("cand", [suite_result("qa", {"score": {f"s{i}": float(v) for i, v in enumerate(cand)}}, kinds=kinds)])
        v = evaluate_policy(Policy(rules=[GateRule(metric="qa/score", **kw)]), compare_runs(b, [c], FAST))
        o = v.candidates[0].outcomes[0]
        assert o.method == "bootstrap"
        return o.status, o.reason

    base = rng.normal(0.5, 0.2, 200)
    assert outcome(base, base + rng.normal(0.0, 0.02, 200), max_regression=0.05)[0] == "pass"
    assert outcome(base, base - 0.3 + rng.normal(0.0, 0.02, 200), max_regression=0.05)[0] == "fail"
    status, why = outcome(base, base.copy(), max_regression=0.05)  # identical runs: a zero-width interval
    assert status == "inconclusive" and "zero-width" in why
    status, why = outcome(base[:10], base[:10] + 0.001, max_regression=0.5)
    assert status == "inconclusive" and "at least 20" in why


def test_unavailable_metric_is_incomplete() -> None:
    m = MetricComparison(suite="s", metric="m", direction="higher", kind="binary", aggregation="mean",
                         unavailable="no value in the candidate run (scorer unavailable or every sample errored)")
    out = decide(rule(max_regression=0.1), m, 0.95, None)
    assert out.status == "incomplete" and "scorer unavailable" in out.reason


def test_exit_codes_for_statuses() -> None:
    assert [exit_code_for(s, False) for s in ("pass", "inconclusive", "fail", "incomplete")] == [0, 0, 1, 3]  # type: ignore[arg-type]
    assert [exit_code_for(s, True) for s in ("pass", "inconclusive", "fail", "incomplete")] == [0, 1, 1, 3]  # type: ignore[arg-type]


ACC = {"acc": ("binary", "higher", "mean"), "f1": ("binary", "higher", "mean")}


def test_holm_across_rules_turns_a_raw_fail_into_inconclusive() -> None:
    # 50 pairs, 12 go 1 -> 0: the regression 0.24 is beyond the tolerance 0.1 with a one-sided p of 0.0153
    # (Tango, continuity-corrected); alone that fails (< 0.025), with a second such rule Holm doubles it to 0.0306
    pattern = "0" * 12 + "1" * 38
    b = run_result("base", [suite_result("qa", {"acc": binary("1" * 50), "f1": binary("1" * 50)}, kinds=ACC)])
    c = run_result("cand", [suite_result("qa", {"acc": binary(pattern), "f1": binary(pattern)}, kinds=ACC)])
    comp = compare_runs(b, [c], FAST)
    one = evaluate_policy(Policy(rules=[GateRule(metric="qa/acc", max_regression=0.1)]), comp)
    o = one.candidates[0].outcomes[0]
    assert o.status == "fail" and o.p_value == pytest.approx(0.0153, abs=5e-4) and o.p_holm == o.p_value and o.holm_family == 1
    two = evaluate_policy(Policy(rules=[GateRule(metric="qa/acc", max_regression=0.1), GateRule(metric="qa/f1", max_regression=0.1)]), comp)
    assert [x.p_holm for x in two.candidates[0].outcomes] == pytest.approx([2 * o.p_value, 2 * o.p_value])
    assert [x.status for x in two.candidates[0].outcomes] == ["inconclusive", "inconclusive"]
    assert "not after Holm's adjustment across 2 rules" in two.candidates[0].outcomes[0].reason
    assert two.status == "inconclusive" and two.exit_code == 0
    assert evaluate_policy(Policy(rules=[GateRule(metric="qa/acc", max_regression=0.1)]), comp, strict=True).exit_code == 1
    assert "Holm" in two.multiplicity and "intersection-union" in two.multiplicity


def test_min_and_max_rules_join_the_holm_family() -> None:
    b = run_result("base", [suite_result("qa", {"acc": binary("1" * 200)}, kinds=ACC)])
    c = run_result("cand", [suite_result("qa", {"acc": binary("1" * 190 + "0" * 10)}, kinds=ACC)])
    v = evaluate_policy(Policy(rules=[GateRule(metric="qa/acc", min=0.8), GateRule(metric="qa/acc", max_regression=0.2)]),
                        compare_runs(b, [c], FAST))
    assert [o.holm_family for o in v.candidates[0].outcomes] == [2, 2]
    assert [o.status for o in v.candidates[0].outcomes] == ["pass", "pass"]


def test_outcomes_state_the_smallest_detectable_regression() -> None:
    b = run_result("base", [suite_result("qa", {"acc": binary("1" * 380 + "0" * 20)}, kinds=ACC)])
    c = run_result("cand", [suite_result("qa", {"acc": binary("1" * 380 + "0" * 20)}, kinds=ACC)])
    comp = compare_runs(b, [c], FAST)
    v = evaluate_policy(Policy(rules=[GateRule(metric="qa/acc", max_regression=0.05), GateRule(metric="qa/acc", min=0.8)]), comp)
    reg, floor = v.candidates[0].outcomes
    assert reg.detectable_80 is not None and reg.detectable_95 is not None
    assert 0.05 < reg.detectable_80 < reg.detectable_95 < 0.3  # beyond the tolerance, and more for more power
    # the exact probability of failing at the stated regression is the stated power (first Holm step: family of 2)
    p_fail = stats.paired_decision_probs(400, 0.95, 0.95 - reg.detectable_80, -0.05, 1, 0.025, 0.0125, redraw=0.5)[1]
    assert p_fail == pytest.approx(0.8, abs=0.01)
    assert floor.detectable_80 is not None and 0.15 - 0.001 < floor.detectable_80 < 0.3  # 0.95 down to under 0.8
    fast = evaluate_policy(Policy(rules=[GateRule(metric="qa/acc", max_regression=0.05)]), comp, power=False)
    assert fast.candidates[0].outcomes[0].detectable_80 is None


def test_overall_verdict_is_the_worst_candidate() -> None:
    b = run_result("base", [suite_result("qa", {"acc": binary("1" * 300)}, kinds=ACC)])
    good = run_result("good", [suite_result("qa", {"acc": binary("1" * 300)}, kinds=ACC)])
    bad = run_result("bad", [suite_result("qa", {"acc": binary("0" * 300)}, kinds=ACC)])
    v = evaluate_policy(Policy(rules=[GateRule(metric="qa/acc", max_regression=0.05)]), compare_runs(b, [good, bad], FAST))
    assert [(cv.candidate, cv.status) for cv in v.candidates] == [("good", "pass"), ("bad", "fail")]
    assert v.status == "fail" and v.exit_code == 1
    assert "No adjustment across the 2 candidates" in v.multiplicity


def test_error_budget() -> None:
    b = run_result("base", [suite_result("qa", {"acc": binary("1" * 300)}, kinds=ACC)])
    c = run_result("cand", [suite_result("qa", {"acc": binary("1" * 300)}, kinds=ACC, errored={"s0"})])
    comp = compare_runs(b, [c], FAST)
    strict_budget = evaluate_policy(Policy(rules=[GateRule(metric="qa/acc", max_regression=0.05)]), comp)
    assert strict_budget.status == "incomplete" and strict_budget.exit_code == 3
    assert "1 of 300 samples errored in the candidate run (0.333%)" in strict_budget.candidates[0].incomplete[0]
    allowed = evaluate_policy(Policy(max_error_rate=0.05, rules=[GateRule(metric="qa/acc", max_regression=0.05)]), comp)
    assert allowed.status == "pass"


def test_unknown_metric_and_neutral_direction_are_user_errors() -> None:
    b = run_result("base", [suite_result("qa", {"acc": binary("10"), "n": {"s0": 1.0, "s1": 2.0}},
                                         kinds={**ACC, "n": ("continuous", "neutral", "mean")})])
    comp = compare_runs(b, [b.model_copy(deep=True)], FAST)
    with pytest.raises(UserError) as err:
        evaluate_policy(Policy(rules=[GateRule(metric="qa/accuracy", min=0.5)]), comp)
    assert "unknown metric 'qa/accuracy'" in err.value.message and "qa/acc, qa/n" in err.value.message
    with pytest.raises(UserError, match="neutral"):
        evaluate_policy(Policy(rules=[GateRule(metric="qa/n", max_regression=0.1)]), comp)


def test_policy_file_rejects_two_bounds_in_one_rule() -> None:
    with pytest.raises(ValueError, match="exactly one"):
        GateRule(metric="qa/acc", min=0.1, max=0.9)


# ---------------------------------------------------------------------------- CLI exit codes


def _write(tmp: Path, base_pat: str, cand_pat: str, errored: set[str] | None = None) -> tuple[Path, Path]:
    b = run_result("base", [suite_result("qa", {"acc": binary(base_pat)}, kinds=ACC)])
    c = run_result("cand", [suite_result("qa", {"acc": binary(cand_pat)}, kinds=ACC, errored=errored or set())])
    b.save(tmp / "base.json")
    c.save(tmp / "cand.json")
    return tmp / "base.json", tmp / "cand.json"


def _gate(args: list[str]) -> int:
    with pytest.raises(SystemExit) as exc:
        main(["gate", *args])
    return int(exc.value.code or 0)


@pytest.fixture
def policy(tmp_path: Path) -> Path:
    p = tmp_path / "policy.yaml"
    p.write_text("name: ci\nrules:\n  - metric: qa/acc\n    max_regression: 0.05\n")
    return p


def test_cli_exit_0_pass(tmp_path: Path, policy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base, cand = _write(tmp_path, "1" * 300, "1" * 300)
    assert _gate(["--policy", str(policy), str(base), str(cand), "--out", str(tmp_path / "out"), "--resamples", "300"]) == 0
    assert "verdict: PASS" in capsys.readouterr().out
    assert {p.name for p in (tmp_path / "out").iterdir()} >= {"report.html", "comparison.json", "junit.xml", "summary.md"}


def test_cli_exit_1_fail(tmp_path: Path, policy: Path) -> None:
    base, cand = _write(tmp_path, "1" * 40, "1" * 20 + "0" * 20)
    assert _gate(["--policy", str(policy), str(base), str(cand), "--out", str(tmp_path / "out"), "--resamples", "300"]) == 1


def test_cli_inconclusive_exits_0_unless_strict(tmp_path: Path, policy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base, cand = _write(tmp_path, "1" * 10, "1" * 9 + "0")  # one regression in ten: neither provable nor refutable
    args = ["--policy", str(policy), str(base), str(cand), "--out", str(tmp_path / "out"), "--resamples", "300"]
    assert _gate(args) == 0
    assert "inconclusive is not a pass" in capsys.readouterr().err
    assert _gate(["--strict", *args]) == 1


def test_cli_exit_2_bad_inputs(tmp_path: Path, policy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base, cand = _write(tmp_path, "1" * 10, "1" * 10)
    out = ["--out", str(tmp_path / "out")]
    assert _gate(["--policy", str(policy), str(base), str(tmp_path / "missing.json"), *out]) == 2
    bad = tmp_path / "bad.yaml"
    bad.write_text("rules:\n  - metric: qa/nope\n    min: 0.5\n")
    assert _gate(["--policy", str(bad), str(base), str(cand), *out]) == 2
    assert "valid names: qa/acc" in capsys.readouterr().err
    bad.write_text("rules:\n  - metric: qa/acc\n    min: 0.5\n    colour: red\n")
    assert _gate(["--policy", str(bad), str(base), str(cand), *out]) == 2
    assert "unknown key" in capsys.readouterr().err
    other = run_result("other", [suite_result("qa", {"acc": binary("1" * 10, prefix="x")}, kinds=ACC)])
    other.save(tmp_path / "other.json")
    assert _gate(["--policy", str(policy), str(base), str(tmp_path / "other.json"), *out]) == 2
    assert "sample ids differ" in capsys.readouterr().err


def test_cli_exit_3_incomplete(tmp_path: Path, policy: Path) -> None:
    base, cand = _write(tmp_path, "1" * 20, "1" * 20, errored={"s3"})
    assert _gate(["--policy", str(policy), str(base), str(cand), "--out", str(tmp_path / "out"), "--resamples", "300"]) == 3
    junit = (tmp_path / "out" / "junit.xml").read_text()
    assert "<error" in junit and "errored-sample budget" in junit


def test_cli_compare_and_report_rerender(tmp_path: Path) -> None:
    base, cand = _write(tmp_path, "1" * 10, "0" * 10)
    main(["compare", str(base), str(cand), "--out", str(tmp_path / "cmp"), "--resamples", "300"])  # returns: exit 0
    (tmp_path / "cmp" / "report.html").unlink()
    main(["report", str(tmp_path / "cmp")])
    html = (tmp_path / "cmp" / "report.html").read_text()
    assert "NO VERDICT" in html and "output s0" in html  # outputs came back from the referenced run results


def test_rules_address_per_group_metrics_whose_names_contain_a_slash() -> None:
    kinds = {"stereotype_rate/age": ("binary", "lower", "mean")}
    b = run_result("base", [suite_result("crows", {"stereotype_rate/age": binary("0" * 30)}, kinds=kinds)])
    c = run_result("cand", [suite_result("crows", {"stereotype_rate/age": binary("1" * 30)}, kinds=kinds)])
    v = evaluate_policy(Policy(rules=[GateRule(metric="crows/stereotype_rate/age", max_regression=0.05)]), compare_runs(b, [c], FAST))
    assert v.candidates[0].outcomes[0].status == "fail"


def test_rule_confidence_override_widens_its_interval(tmp_path: Path) -> None:
    base, cand = _write(tmp_path, "1" * 60, "1" * 55 + "0" * 5)
    p = tmp_path / "conf.yaml"
    p.write_text("confidence: 0.9\nrules:\n  - metric: qa/acc\n    max_regression: 0.2\n"
                 "  - metric: qa/acc\n    max_regression: 0.2\n    confidence: 0.99\n")
    from tunegate.pipeline.commands import gate_files

    comparison, verdict, _ = gate_files(p, base, [cand], settings=CompareSettings(n_resamples=1000, seed=0))
    assert comparison.settings.confidence == 0.9
    at90, at99 = verdict.candidates[0].outcomes
    assert (at90.confidence, at99.confidence) == (0.9, 0.99)
    assert at99.ci_low is not None and at90.ci_low is not None and at99.ci_low < at90.ci_low
    assert verdict.policy_sha256 and verdict.policy_path == str(p)
