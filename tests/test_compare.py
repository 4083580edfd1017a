"""Comparison: alignment on sample ids, paired values, tests, examples; bad inputs are exit-2 errors."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from tests.kinds import register, write_suite
from tests.report.factory import binary, run_result, suite_result
from tunegate.backends.mock import MockBackend
from tunegate.compare.comparison import compare_runs
from tunegate.compare.models import CompareSettings, Comparison
from tunegate.core.errors import ExitCode, UserError
from tunegate.run.evaluate import evaluate

ACC = {"acc": ("binary", "higher", "mean")}
FAST = CompareSettings(n_resamples=400, seed=3)


def one_metric(base_pattern: str, cand_pattern: str, **kw: object):  # type: ignore[no-untyped-def]
    b = run_result("base", [suite_result("qa", {"acc": binary(base_pattern)}, kinds=ACC, **kw)])  # type: ignore[arg-type]
    c = run_result("cand", [suite_result("qa", {"acc": binary(cand_pattern)}, kinds=ACC, **kw)])  # type: ignore[arg-type]
    return compare_runs(b, [c], FAST).candidates[0].suites[0].metrics[0]


def test_binary_metric_values_mcnemar_and_examples() -> None:
    # s0..s9: base 1111111100, candidate 0000000110 -> s0..s6 regressed (7), s8 improved (1)
    m = one_metric("1111111100", "0000000110")
    assert m.base_value == pytest.approx(0.8) and m.candidate_value == pytest.approx(0.2)
    assert m.delta == pytest.approx(-0.6)
    assert m.test == "mcnemar-exact"
    assert (m.discordant_worse, m.discordant_better) == (7, 1)
    assert m.p_value == pytest.approx(18 / 256)
    assert m.ci_low is not None and m.ci_high is not None and m.ci_low <= -0.6 <= m.ci_high
    assert (m.n_regressed, m.n_improved, m.n_unchanged, m.n_paired) == (7, 1, 2, 10)
    assert [e.sample_id for e in m.regressed] == [f"s{i}" for i in range(7)]
    assert [(e.sample_id, e.base, e.candidate) for e in m.improved] == [("s8", 0.0, 1.0)]


def test_lower_is_better_metric_flips_regressions_and_mcnemar_sides() -> None:
    kinds = {"toxic": ("binary", "lower", "mean")}
    b = run_result("base", [suite_result("tox", {"toxic": binary("000011")}, kinds=kinds)])
    c = run_result("cand", [suite_result("tox", {"toxic": binary("111001")}, kinds=kinds)])
    m = compare_runs(b, [c], FAST).candidates[0].suites[0].metrics[0]
    assert m.delta == pytest.approx(4 / 6 - 2 / 6)
    assert (m.discordant_worse, m.discordant_better) == (3, 1)  # 0 -> 1 toxic is worse
    assert [e.sample_id for e in m.regressed] == ["s0", "s1", "s2"]
    assert [e.sample_id for e in m.improved] == ["s4"]


def test_errored_samples_leave_the_pair_and_are_counted() -> None:
    b = run_result("base", [suite_result("qa", {"acc": binary("110011")}, kinds=ACC)])
    c = run_result("cand", [suite_result("qa", {"acc": binary("110011")}, kinds=ACC, errored={"s0", "s5"})])
    comp = compare_runs(b, [c], FAST)
    s = comp.candidates[0].suites[0]
    m = s.metrics[0]
    assert m.n_paired == 4 and m.n_unpaired == 2
    assert m.base_value == pytest.approx(2 / 4)  # s1..s4 of the base: 1, 0, 0, 1
    assert s.counts_candidate["errored"] == 2 and s.error_rate("candidate") == pytest.approx(2 / 6)
    assert any("incomplete" in w for w in comp.warnings)


def test_continuous_ratio_metric_recomputes_aggregation_and_uses_permutation_test() -> None:
    kinds = {"ppl": ("continuous", "lower", "exp_ratio")}
    nll_b = {f"s{i}": 2.0 for i in range(8)}
    nll_c = {f"s{i}": 1.0 for i in range(8)}
    w = {f"s{i}": 2.0 for i in range(8)}  # tokens per sample
    b = run_result("base", [suite_result("lm", {"ppl": nll_b}, kinds=kinds, weights={"ppl": w})])
    c = run_result("cand", [suite_result("lm", {"ppl": nll_c}, kinds=kinds, weights={"ppl": w})])
    m = compare_runs(b, [c], FAST).candidates[0].suites[0].metrics[0]
    assert m.base_value == pytest.approx(math.exp(1.0))
    assert m.candidate_value == pytest.approx(math.exp(0.5))
    assert m.test == "paired-permutation"
    assert m.p_value == pytest.approx(2 / 256)  # 8 pairs, all one way: exact test
    assert m.n_improved == 8 and m.n_regressed == 0


def test_corpus_metric_has_values_but_no_interval() -> None:
    kinds = {"bleu": ("continuous", "higher", "corpus")}
    b = run_result("base", [suite_result("mt", {"bleu": {"a": 1.0, "b": 2.0}}, kinds=kinds)])
    c = run_result("cand", [suite_result("mt", {"bleu": {"a": 2.0, "b": 2.0}}, kinds=kinds)])
    for run, value in ((b, 30.0), (c, 33.0)):
        run.suites[0].metrics[0].value = value  # what the suite computed over the corpus
    m = compare_runs(b, [c], FAST).candidates[0].suites[0].metrics[0]
    assert (m.base_value, m.candidate_value, m.delta) == (30.0, 33.0, 3.0)
    assert m.ci_low is None and m.p_value is None and m.note and "corpus" in m.note
    assert [e.sample_id for e in m.improved] == ["a"]


def test_metric_without_value_is_marked_unavailable() -> None:
    b = run_result("base", [suite_result("qa", {"acc": binary("1100")}, kinds=ACC)])
    c = run_result("cand", [suite_result("qa", {"acc": {}}, kinds=ACC, errored={"s0", "s1", "s2", "s3"})])
    m = compare_runs(b, [c], FAST).candidates[0].suites[0].metrics[0]
    assert m.unavailable and "candidate" in m.unavailable


def test_sample_id_mismatch_is_a_user_error_naming_the_ids() -> None:
    b = run_result("base", [suite_result("qa", {"acc": binary("1100")}, kinds=ACC)])
    c = run_result("cand", [suite_result("qa", {"acc": binary("1100", prefix="x")}, kinds=ACC)])
    with pytest.raises(UserError) as err:
        compare_runs(b, [c], FAST)
    assert err.value.exit_code == ExitCode.BAD_INPUT
    assert "suite 'qa'" in err.value.message and "s0" in err.value.message and "x0" in err.value.message


def test_missing_suite_is_a_user_error() -> None:
    b = run_result("base", [suite_result("qa", {"acc": binary("1100")}, kinds=ACC), suite_result("extra", {"acc": binary("1")}, kinds=ACC)])
    c = run_result("cand", [suite_result("qa", {"acc": binary("1100")}, kinds=ACC)])
    with pytest.raises(UserError, match="extra"):
        compare_runs(b, [c], FAST)


def test_several_candidates_and_finetune_identity() -> None:
    b = run_result("base", [suite_result("qa", {"acc": binary("1100")}, kinds=ACC)])
    cands = [run_result(f"ck{s}", [suite_result("qa", {"acc": binary("1110")}, kinds=ACC)], finetune={"step": s, "data_sha256": "ab" * 32})
             for s in (10, 20)]
    comp = compare_runs(b, cands, FAST)
    assert [c.model.label for c in comp.candidates] == ["ck10", "ck20"]
    assert [c.model.step for c in comp.candidates] == [10, 20]
    assert comp.candidates[0].model.finetune == {"step": 10, "data_sha256": "ab" * 32}
    assert comp.metric_names() == ["qa/acc"]


def test_comparison_round_trips_and_refuses_other_versions(tmp_path: Path) -> None:
    b = run_result("base", [suite_result("qa", {"acc": binary("1100")}, kinds=ACC)])
    c = run_result("cand", [suite_result("qa", {"acc": binary("0110")}, kinds=ACC)])
    comp = compare_runs(b, [c], FAST)
    comp.save(tmp_path / "comparison.json")
    again = Comparison.load(tmp_path / "comparison.json")
    assert again.model_dump() == comp.model_dump()
    with pytest.raises(UserError, match="incomplete report set"):
        Comparison.load(tmp_path)  # a folder is read only when its completion marker vouches for it
    raw = json.loads((tmp_path / "comparison.json").read_text())
    raw["schema_version"] = 99
    (tmp_path / "comparison.json").write_text(json.dumps(raw))
    with pytest.raises(UserError, match="schema version 99"):
        Comparison.load(tmp_path / "comparison.json")


def test_compare_runs_from_the_mock_backend(tmp_path: Path) -> None:
    """End to end through the runner: scripted outputs give known accuracies and a known McNemar p."""
    register()
    rows = [{"id": f"q{i}", "prompt": f"Question {i}?", "target": f"answer {i}"} for i in range(12)]
    suite = str(write_suite(tmp_path, rows))
    base_backend = MockBackend.scripted("base", generations={f"Question {i}?": f"answer {i}" for i in range(12)})
    cand_backend = MockBackend.scripted("cand", generations={f"Question {i}?": (f"answer {i}" if i >= 4 else "no") for i in range(12)})
    base = evaluate(base_backend.spec, [suite], backend=base_backend, cache_path=None)
    cand = evaluate(cand_backend.spec, [suite], backend=cand_backend, cache_path=None)
    m = compare_runs(base, [cand], FAST).candidates[0].suite("echo").metric("accuracy")  # type: ignore[union-attr]
    assert m is not None
    assert (m.base_value, m.candidate_value) == (pytest.approx(1.0), pytest.approx(8 / 12))
    assert (m.discordant_worse, m.discordant_better) == (4, 0)
    assert m.p_value == pytest.approx(2 / 16)
    assert [e.sample_id for e in m.regressed] == ["q0", "q1", "q2", "q3"]


def test_metric_without_per_sample_values_keeps_the_run_values() -> None:
    kinds = {"corpus_bleu": ("continuous", "higher", "corpus")}
    b = run_result("base", [suite_result("mt", {"corpus_bleu": {}}, kinds=kinds)])
    c = run_result("cand", [suite_result("mt", {"corpus_bleu": {}}, kinds=kinds)])
    b.suites[0].metrics[0].value, c.suites[0].metrics[0].value = 20.0, 18.5
    m = compare_runs(b, [c], FAST).candidates[0].suites[0].metrics[0]
    assert (m.base_value, m.candidate_value, m.delta) == (20.0, 18.5, -1.5)
    assert m.unavailable is None and m.ci_low is None and m.note and "corpus" in m.note


def test_binary_metrics_get_exact_intervals_that_never_collapse() -> None:
    m = one_metric("111", "111")  # 3 samples, all agree: no zero-width interval anywhere
    assert m.interval_method == "exact" and m.binary_counts == {"n": 3, "base_ones": 3, "candidate_ones": 3, "up": 0, "down": 0}
    assert m.candidate_ci[0] == pytest.approx(0.025 ** (1 / 3)) and m.candidate_ci[1] == 1.0
    assert m.ci_low is not None and m.ci_high is not None and m.ci_low < 0 < m.ci_high
    # recomputed at another level from the stored table (also after a save and load)
    lo99, hi99 = m.candidate_interval(0.99)
    assert lo99 is not None and lo99 < m.candidate_ci[0]  # type: ignore[operator]
    again = type(m).model_validate(m.model_dump())
    assert again.delta_interval(0.9) == m.delta_interval(0.9)
    assert m.pvalues("candidate", 0.8) == pytest.approx((0.8**3, 1.0))  # P(X >= 3 | rate 0.8) = 0.512


def test_continuous_interval_is_withheld_when_degenerate_or_too_small() -> None:
    kinds = {"score": ("continuous", "higher", "mean")}
    vals = {f"s{i}": 0.1 * (i % 7) for i in range(40)}
    b = run_result("base", [suite_result("qa", {"score": vals}, kinds=kinds)])
    c = run_result("cand", [suite_result("qa", {"score": dict(vals)}, kinds=kinds)])
    m = compare_runs(b, [c], FAST).candidates[0].suites[0].metrics[0]
    assert m.interval_method == "bootstrap" and (m.ci_low, m.ci_high) == (None, None)
    assert m.note and "zero-width" in m.note and m.pvalues("delta", -0.1) is None
    assert m.candidate_ci[0] is not None  # the value itself does vary across resamples
    few = {f"s{i}": float(i) for i in range(8)}
    b = run_result("base", [suite_result("qa", {"score": few}, kinds=kinds)])
    c = run_result("cand", [suite_result("qa", {"score": {k: v + 1 for k, v in few.items()}}, kinds=kinds)])
    m = compare_runs(b, [c], FAST).candidates[0].suites[0].metrics[0]
    assert m.ci_low is None and m.undecidable("delta") and "at least 20" in (m.undecidable("delta") or "")


def test_a_pair_run_in_different_dtypes_or_backends_is_flagged() -> None:
    suites = [suite_result("s", {"acc": binary("1100")}, kinds={"acc": ("binary", "higher", "mean")})]
    base, cand, same = run_result("base", suites), run_result("cand", suites), run_result("same", suites)
    base.model_identity.update(dtype="float32", backend="hf")
    cand.model_identity.update(dtype="bfloat16", backend="vllm")
    same.model_identity.update(dtype="float32", backend="hf")
    warnings = compare_runs(base, [cand, same]).warnings
    assert [w for w in warnings if "dtype" in w] == [
        "base base ran with dtype float32, candidate cand with dtype bfloat16: part of each delta may come from that, "
        "not from the weights; run both the same way"]
    assert len([w for w in warnings if "backend hf" in w and "candidate cand" in w]) == 1
    assert not [w for w in warnings if "candidate same" in w]
