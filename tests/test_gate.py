"""Gate: the verdict table of every rule type, Holm across rules, error budgets, and each CLI exit code."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.report.factory import binary, run_result, suite_result
from tunegate.cli import main
from tunegate.compare import CompareSettings, MetricComparison, compare_runs
from tunegate.config import GateRule, Policy
from tunegate.errors import UserError
from tunegate.gate import decide, evaluate_policy, exit_code_for

FAST = CompareSettings(n_resamples=400, seed=1)


def mc(delta: float, ci: tuple[float, float], *, direction: str = "higher", value: float = 0.5,
       value_ci: tuple[float, float] = (0.4, 0.6)) -> MetricComparison:
    return MetricComparison(suite="s", metric="m", direction=direction, kind="continuous", aggregation="mean",  # type: ignore[arg-type]
                            base_value=value - delta, candidate_value=value, delta=delta, ci_low=ci[0], ci_high=ci[1],
                            candidate_ci=value_ci, p_value=0.01, test="paired-permutation", n_paired=100)


def rule(**kw: float) -> GateRule:
    return GateRule(metric="s/m", **kw)


# (rule, metric comparison, Holm-adjusted p, expected status)
TABLE = [
    # max_regression 0.02, higher is better
    ("max_regression", {"max_regression": 0.02}, mc(+0.01, (-0.005, 0.03)), 0.30, "pass"),  # bad bound -0.005 within 0.02
    ("max_regression", {"max_regression": 0.02}, mc(-0.01, (-0.019, 0.0)), 0.04, "pass"),  # worse but bounded within tolerance
    ("max_regression", {"max_regression": 0.02}, mc(-0.05, (-0.08, -0.03)), 0.001, "fail"),  # significant and beyond
    ("max_regression", {"max_regression": 0.02}, mc(-0.05, (-0.12, 0.01)), 0.20, "inconclusive"),  # beyond, not significant
    ("max_regression", {"max_regression": 0.02}, mc(-0.01, (-0.04, 0.02)), 0.01, "inconclusive"),  # point within, bound beyond
    # lower is better: a rise is a regression, so the upper bound is the bad one
    ("max_regression lower", {"max_regression": 0.02}, mc(+0.01, (-0.01, 0.015), direction="lower"), 0.5, "pass"),
    ("max_regression lower", {"max_regression": 0.02}, mc(+0.05, (0.03, 0.07), direction="lower"), 0.001, "fail"),
    ("max_regression lower", {"max_regression": 0.02}, mc(-0.05, (-0.07, -0.03), direction="lower"), 0.001, "pass"),
    # min_improvement 0.01
    ("min_improvement", {"min_improvement": 0.01}, mc(+0.05, (0.02, 0.08)), 0.001, "pass"),
    ("min_improvement", {"min_improvement": 0.01}, mc(+0.05, (0.02, 0.08)), 0.20, "inconclusive"),  # not significant after Holm
    ("min_improvement", {"min_improvement": 0.01}, mc(-0.02, (-0.04, 0.005)), 0.05, "fail"),  # upper bound below 0.01
    ("min_improvement", {"min_improvement": 0.01}, mc(+0.01, (-0.01, 0.03)), 0.30, "inconclusive"),
    ("min_improvement lower", {"min_improvement": 0.01}, mc(-0.05, (-0.08, -0.02), direction="lower"), 0.001, "pass"),
    # min / max on the candidate value's interval
    ("min", {"min": 0.3}, mc(0.0, (0, 0), value=0.5, value_ci=(0.4, 0.6)), None, "pass"),
    ("min", {"min": 0.7}, mc(0.0, (0, 0), value=0.5, value_ci=(0.4, 0.6)), None, "fail"),
    ("min", {"min": 0.5}, mc(0.0, (0, 0), value=0.5, value_ci=(0.4, 0.6)), None, "inconclusive"),
    ("max", {"max": 0.7}, mc(0.0, (0, 0), value=0.5, value_ci=(0.4, 0.6)), None, "pass"),
    ("max", {"max": 0.3}, mc(0.0, (0, 0), value=0.5, value_ci=(0.4, 0.6)), None, "fail"),
    ("max", {"max": 0.55}, mc(0.0, (0, 0), value=0.5, value_ci=(0.4, 0.6)), None, "inconclusive"),
]


@pytest.mark.parametrize(("label", "kw", "m", "p_holm", "expected"), TABLE, ids=[f"{t[0]}-{t[4]}-{i}" for i, t in enumerate(TABLE)])
def test_verdict_table(label: str, kw: dict[str, float], m: MetricComparison, p_holm: float | None, expected: str) -> None:
    out = decide(rule(**kw), m, 0.95, p_holm)
    assert out.status == expected, out.reason
    assert out.reason.endswith(".") and len(out.reason) < 300


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
    # two metrics with 6 pairs all regressing: raw McNemar p = 2/64 = 0.03125 each; Holm: 0.0625 each
    b = run_result("base", [suite_result("qa", {"acc": binary("111111"), "f1": binary("111111")}, kinds=ACC)])
    c = run_result("cand", [suite_result("qa", {"acc": binary("000000"), "f1": binary("000000")}, kinds=ACC)])
    comp = compare_runs(b, [c], FAST)
    one = evaluate_policy(Policy(rules=[GateRule(metric="qa/acc", max_regression=0.1)]), comp)
    assert one.candidates[0].outcomes[0].status == "fail"
    assert one.candidates[0].outcomes[0].p_holm == pytest.approx(2 / 64)
    two = evaluate_policy(Policy(rules=[GateRule(metric="qa/acc", max_regression=0.1), GateRule(metric="qa/f1", max_regression=0.1)]), comp)
    assert [o.p_holm for o in two.candidates[0].outcomes] == pytest.approx([4 / 64, 4 / 64])
    assert [o.status for o in two.candidates[0].outcomes] == ["inconclusive", "inconclusive"]
    assert two.status == "inconclusive" and two.exit_code == 0
    assert evaluate_policy(two_policy := Policy(rules=[GateRule(metric="qa/acc", max_regression=0.1)]), comp, strict=True).exit_code == 1
    assert two_policy.rules[0].kind == "max_regression"


def test_overall_verdict_is_the_worst_candidate() -> None:
    b = run_result("base", [suite_result("qa", {"acc": binary("1" * 30)}, kinds=ACC)])
    good = run_result("good", [suite_result("qa", {"acc": binary("1" * 30)}, kinds=ACC)])
    bad = run_result("bad", [suite_result("qa", {"acc": binary("0" * 30)}, kinds=ACC)])
    v = evaluate_policy(Policy(rules=[GateRule(metric="qa/acc", max_regression=0.05)]), compare_runs(b, [good, bad], FAST))
    assert [(cv.candidate, cv.status) for cv in v.candidates] == [("good", "pass"), ("bad", "fail")]
    assert v.status == "fail" and v.exit_code == 1


def test_error_budget() -> None:
    b = run_result("base", [suite_result("qa", {"acc": binary("1" * 50)}, kinds=ACC)])
    c = run_result("cand", [suite_result("qa", {"acc": binary("1" * 50)}, kinds=ACC, errored={"s0"})])
    comp = compare_runs(b, [c], FAST)
    strict_budget = evaluate_policy(Policy(rules=[GateRule(metric="qa/acc", max_regression=0.05)]), comp)
    assert strict_budget.status == "incomplete" and strict_budget.exit_code == 3
    assert "1 of 50 samples errored in the candidate run (2%)" in strict_budget.candidates[0].incomplete[0]
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
    base, cand = _write(tmp_path, "1" * 40, "1" * 40)
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
    from tunegate.gate import gate_files

    comparison, verdict = gate_files(p, base, [cand], settings=CompareSettings(n_resamples=1000, seed=0))
    assert comparison.settings.confidence == 0.9
    at90, at99 = verdict.candidates[0].outcomes
    assert (at90.confidence, at99.confidence) == (0.9, 0.99)
    assert at99.ci_low is not None and at90.ci_low is not None and at99.ci_low < at90.ci_low
    assert verdict.policy_sha256 and verdict.policy_path == str(p)
