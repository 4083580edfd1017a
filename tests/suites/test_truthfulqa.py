"""truthfulqa: exact MC1/MC2 on scripted log-likelihoods, the real CSV, a tiny model."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pytest

from tunegate.backends.mock import MockBackend
from tunegate.core.errors import UserError
from tunegate.core.model_spec import ModelSpec
from tunegate.run.evaluate import evaluate
from tunegate.run.suite_loader import load_suite
from tunegate.suites.truthfulqa import QA_PROMPT, mc2, split_answers

HEADER = ["id", "Category", "Question", "Best Answer", "Correct Answers", "Incorrect Answers"]


def write(tmp_path: Path, rows: list[list[str]], options: str = "") -> Path:
    with (tmp_path / "tqa.csv").open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(HEADER)
        w.writerows(rows)
    yml = tmp_path / "tqa.yaml"
    yml.write_text("name: t\nkind: truthfulqa\ndata: tqa.csv\n" + options)
    return yml


def test_exact_mc1_mc2(tmp_path: Path) -> None:
    yml = write(tmp_path, [
        ["q1", "Health", "Q one?", "Alpha", "Alpha; Beta", "Gamma; Delta"],
        ["q2", "Law", "Q two?", "Echo.", "Echo.", "Foxtrot; Golf"],
    ], "options:\n  per_category_min: 1\n")
    p = {" Alpha.": 0.4, " Beta.": 0.1, " Gamma.": 0.3, " Delta.": 0.2, " Echo.": 0.1, " Foxtrot.": 0.2, " Golf.": 0.2}
    backend = MockBackend.scripted(loglikelihoods={k: math.log(v) for k, v in p.items()})
    res = evaluate(backend.spec, [str(yml)], backend=backend, cache_path=None).suite("t")
    assert res.counts["scored"] == 2
    assert res.metric("mc1").per_sample == {"q1": 1.0, "q2": 0.0}
    assert res.metric("mc2").per_sample["q1"] == pytest.approx(0.5)
    assert res.metric("mc2").per_sample["q2"] == pytest.approx(0.1 / 0.5)
    assert res.metric("mc2").value == pytest.approx((0.5 + 0.2) / 2)
    assert res.metric("mc1/Health").value == 1.0 and res.metric("mc2/Law").value == pytest.approx(0.2)
    req = res.samples[0].requests[0]
    assert req.context == QA_PROMPT + "\n\nQ: Q one?\nA:" and req.continuation == " Alpha."


def test_mc1_tie_is_wrong_and_mc2_is_stable() -> None:
    assert mc2([-1000.0], [-1000.0]) == pytest.approx(0.5)  # would underflow without log-sum-exp
    assert mc2([math.log(0.3)], [math.log(0.1), math.log(0.6)]) == pytest.approx(0.3)


def test_answers_split_and_closed() -> None:
    assert split_answers("A; B.;; C", close=True) == ["A.", "B.", "C."]
    assert split_answers(["x", "x"], close=False) == ["x"]


def test_missing_false_answers_is_an_input_error(tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"data row 1: field 'incorrect_answers' \(column 'Incorrect Answers'\)"):
        load_suite(str(write(tmp_path, [["q1", "c", "Q?", "A", "A", " ; "]])))


def test_builtin_suite_loads() -> None:
    samples = load_suite("truthfulqa_mini").samples()
    assert len(samples) >= 50
    assert all(s.target in s.metadata["true"] and s.metadata["false"] for s in samples)


def test_real_truthfulqa_csv_parses(shared_datasets: Path, tmp_path: Path) -> None:
    path = shared_datasets / "truthfulqa" / "TruthfulQA.csv"
    yml = tmp_path / "real.yaml"
    yml.write_text(f"name: real\nkind: truthfulqa\ndata: {path}\n")
    samples = load_suite(str(yml)).samples()
    assert len(samples) == 817
    assert len({s.metadata["category"] for s in samples}) == 38


@pytest.mark.slow
def test_end_to_end_on_tiny_model(tiny_model_dir: Path, tmp_path: Path) -> None:
    # zero-shot keeps prompts inside the tiny model's 128-token window
    yml = tmp_path / "tq.yaml"
    src = Path(load_suite("truthfulqa_mini").config.data.path)
    data = (Path(__file__).resolve().parents[2] / "suites" / src)
    yml.write_text(f"name: tq\nkind: truthfulqa\ndata: {data}\noptions:\n  primer: ''\n")
    res = evaluate(ModelSpec(model=str(tiny_model_dir)), [str(yml)], cache_path=None).suite("tq")
    assert res.counts["scored"] == len(res.samples) >= 50
    assert 0.0 < res.metric("mc2").value < 1.0
    s = res.samples[0]
    ll = {c: r.loglikelihood for c, r in zip(s.sample.choices, s.responses, strict=True)}
    expect = mc2([ll[a] for a in s.sample.metadata["true"]], [ll[a] for a in s.sample.metadata["false"]])
    assert s.score("mc2") == pytest.approx(expect)
