"""Attaching `validate-scorer` files: the report states the measured agreement of the scorer actually used."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.cli import run_cli
from tests.report.factory import binary, run_result, suite_result
from tunegate.compare.comparison import compare_runs
from tunegate.compare.models import Comparison
from tunegate.compare.scorer_validation import load_scorer_validation, load_scorer_validations
from tunegate.core.errors import UserError
from tunegate.pipeline.validate_scorer import run_validation
from tunegate.report import write_outputs

TOXICITY = Path(__file__).resolve().parent / "data" / "toxicity_labelled.jsonl"


@pytest.fixture(scope="module")
def validation(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, object]]:
    path = tmp_path_factory.mktemp("v") / "profanity.json"
    rep = run_validation("profanity-check", TOXICITY, {}, path, resamples=200)
    return path, rep


def _report_dir(tmp_path: Path, scorer: str) -> Path:
    """A complete report set whose toxicity scores say they came from `scorer`."""
    runs = []
    for label, pattern in (("base", "0001000100"), ("cand", "0001100100")):
        s = suite_result("tox", {"toxic": binary(pattern)}, kinds={"toxic": ("binary", "lower", "mean")})
        for r in s.samples:
            for sc in r.scores:
                sc.details["scorer"] = scorer
        runs.append(run_result(label, [s]))
    comparison = compare_runs(runs[0], [runs[1]])
    out = tmp_path / "report"
    write_outputs(comparison, out, {"base": runs[0], "cand": runs[1]})
    return out


def test_the_summary_carries_the_measured_figures(validation: tuple[Path, dict[str, object]]) -> None:
    path, rep = validation
    v = load_scorer_validation(path)
    agreement = rep["agreement"]
    assert isinstance(agreement, dict)
    assert v.scorer == "profanity-check" and v.mode == "continuous" and v.n == rep["scored"]
    assert v.agreement.value == agreement["value"] and v.agreement.ci95 == agreement["ci95"]
    assert v.auroc is not None and v.auroc.value == rep["auroc"]["value"]  # type: ignore[index]
    text = v.sentence()
    assert f"{agreement['value']:.3f}" in text and "AUROC" in text and "toxicity_labelled.jsonl" in text


def test_report_states_the_measured_agreement_of_the_scorer_used(tmp_path: Path, validation: tuple[Path, dict[str, object]],
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    path, rep = validation
    out = _report_dir(tmp_path, "profanity-check")
    html = (out / "report.html").read_text()
    assert "No validation of this scorer is attached" in html
    code, _, err = run_cli(["report", str(out), "--scorer-validation", str(path)], capsys)
    assert code == 0, err
    html = (out / "report.html").read_text()
    limitations = html[html.index('id="limitations"'):]
    assert "scorer profanity-check, measured" in limitations
    assert f"{rep['agreement']['value']:.3f}" in limitations  # type: ignore[index]
    assert "No validation of this scorer is attached" not in limitations
    assert "Scorer validity (measured)" in (out / "summary.md").read_text()
    saved = Comparison.load(out)
    assert [v.scorer for v in saved.scorer_validations] == ["profanity-check"]
    # a later plain re-render keeps it
    assert run_cli(["report", str(out)], capsys)[0] == 0
    assert "scorer profanity-check, measured" in (out / "report.html").read_text()


def test_a_validation_of_another_scorer_is_shown_as_not_used(tmp_path: Path, validation: tuple[Path, dict[str, object]],
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    out = _report_dir(tmp_path, "detoxify")
    assert run_cli(["report", str(out), "--scorer-validation", str(validation[0])], capsys)[0] == 0
    html = (out / "report.html").read_text()
    assert "no result in this report was produced by this scorer" in html


def test_bad_validation_files_are_refused_with_exit_2(tmp_path: Path, validation: tuple[Path, dict[str, object]],
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    obj = json.loads(validation[0].read_text())
    cases = {
        "missing.json": None,
        "other.json": {**obj, "kind": "tunegate.core.results"},
        "future.json": {**obj, "schema_version": 99},
        "incomplete.json": {**obj, "complete": False, "errored": 3},
    }
    messages = {"missing.json": "file not found", "other.json": "not a `tunegate validate-scorer` output",
                "future.json": "schema_version 99", "incomplete.json": "incomplete (3 row(s)"}
    for name, content in cases.items():
        p = tmp_path / name
        if content is not None:
            p.write_text(json.dumps(content))
        with pytest.raises(UserError, match=re.escape(messages[name])):
            load_scorer_validation(p)
    out = _report_dir(tmp_path, "profanity-check")
    code, _, err = run_cli(["report", str(out), "--scorer-validation", str(tmp_path / "other.json")], capsys)
    assert code == 2 and "not a `tunegate validate-scorer` output" in err
    with pytest.raises(UserError, match="same labelled file"):
        load_scorer_validations([validation[0], validation[0]])
