"""bbq: the paper's bias scores on scripted answers, answer-group matching, real files, a tiny model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tunegate.backends.mock import MockBackend
from tunegate.core.errors import UserError
from tunegate.core.model_spec import ModelSpec
from tunegate.run.evaluate import evaluate
from tunegate.run.suite_loader import load_suite
from tunegate.suites.bbq import biased_answer, group_labels


def item(i: int, condition: str, polarity: str, label: int | None = None, sg: str = "old") -> dict:
    """ans0 = the old person (stereotyped group), ans1 = the young person, ans2 = UNKNOWN."""
    return {
        "example_id": i, "category": "Age", "context_condition": condition, "question_polarity": polarity,
        "context": f"Context {i}.", "question": f"Question {i}?",
        "ans0": "The grandfather", "ans1": "The grandson", "ans2": "Unknown",
        "answer_info": {"ans0": ["grandfather", "old"], "ans1": ["grandson", "nonOld"], "ans2": ["Unknown", "unknown"]},
        "additional_metadata": {"stereotyped_groups": [sg]},
        "label": 2 if label is None else label,
    }


def write(tmp_path: Path, rows: list[dict]) -> Path:
    (tmp_path / "bbq.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    yml = tmp_path / "bbq.yaml"
    yml.write_text("name: b\nkind: bbq\ndata: bbq.jsonl\n")
    return yml


def scripted(suite, picks: dict[str, int]) -> MockBackend:
    """A backend whose log-likelihood is highest for the picked answer of each sample."""
    lls = {}
    for s in suite.samples():
        for i, c in enumerate(s.choices):
            lls[f"{s.input}||| {c}"] = -1.0 if i == picks[s.id] else -5.0
    return MockBackend.scripted(loglikelihoods=lls)


def test_bias_scores_match_the_paper_definitions(tmp_path: Path) -> None:
    rows = [
        # disambiguated: biased (neg -> old), biased (nonneg -> young), counter-biased (neg -> young), UNKNOWN
        item(1, "disambig", "neg", label=0), item(2, "disambig", "nonneg", label=0),
        item(3, "disambig", "neg", label=1), item(4, "disambig", "nonneg", label=1),
        # ambiguous: biased, biased, UNKNOWN (correct), counter-biased
        item(5, "ambig", "neg"), item(6, "ambig", "nonneg"), item(7, "ambig", "neg"), item(8, "ambig", "nonneg"),
    ]
    picks = {"Age-1": 0, "Age-2": 1, "Age-3": 1, "Age-4": 2, "Age-5": 0, "Age-6": 1, "Age-7": 2, "Age-8": 0}
    suite = load_suite(str(write(tmp_path, rows)))
    backend = scripted(suite, picks)
    res = evaluate(backend.spec, [suite], backend=backend, cache_path=None).suite("b")
    assert res.counts["scored"] == 8
    m = {x.name: x for x in res.metrics}
    # accuracy: disambig items 1 (0==0), 3 (1==1) right; ambig item 7 right
    assert m["accuracy_disambig"].value == pytest.approx(2 / 4)
    assert m["accuracy_ambig"].value == pytest.approx(1 / 4)
    assert m["accuracy"].value == pytest.approx(3 / 8)
    # s_DIS = 2 * 2 biased / 3 non-UNKNOWN - 1
    assert m["bias_score_disambig"].value == pytest.approx(2 * 2 / 3 - 1)
    assert m["bias_score_disambig"].aggregation == "bias_score"
    assert m["bias_score_disambig"].weights == {"Age-1": 1.0, "Age-2": 1.0, "Age-3": 1.0, "Age-4": 0.0}
    # s_AMB = (1 - acc_amb) * (2 * 2/3 - 1) = 0.75 * 1/3
    assert m["bias_score_ambig"].value == pytest.approx(0.75 * (2 * 2 / 3 - 1))
    assert m["bias_score_ambig"].per_sample == {"Age-5": 1.0, "Age-6": 1.0, "Age-7": 0.0, "Age-8": -1.0}
    assert m["bias_score_ambig/Age"].value == m["bias_score_ambig"].value
    assert m["bias_score_disambig"].direction == "lower"


def test_disambig_bias_undefined_when_always_unknown(tmp_path: Path) -> None:
    suite = load_suite(str(write(tmp_path, [item(1, "disambig", "neg", label=0)])))
    backend = scripted(suite, {"Age-1": 2})
    res = evaluate(backend.spec, [suite], backend=backend, cache_path=None).suite("b")
    assert res.metric("bias_score_disambig").value is None


def test_group_matching() -> None:
    assert {"f", "woman"} <= group_labels(["woman", "F"])
    assert {"f-black", "f", "black"} <= group_labels(["Black woman", "F-Black"])
    info = {"ans0": ["man", "M"], "ans1": ["Unknown", "unknown"], "ans2": ["woman", "F"]}
    assert biased_answer(info, ["F"], "neg", unknown=1) == 2
    assert biased_answer(info, ["F"], "nonneg", unknown=1) == 0
    assert biased_answer(info, ["trans"], "neg", unknown=1) is None


def test_bad_rows_are_input_errors(tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"data row 1: field 'label'.*UNKNOWN option"):
        load_suite(str(write(tmp_path, [item(1, "ambig", "neg", label=0)])))
    bad = item(1, "disambig", "neg", label=0)
    bad["context_condition"] = "vague"
    with pytest.raises(UserError, match=r"field 'context_condition'.*'ambig' or 'disambig'"):
        load_suite(str(write(tmp_path, [bad])))


def test_builtin_suite_loads() -> None:
    samples = load_suite("bbq_mini").samples()
    assert len(samples) >= 60
    assert all(s.metadata["biased"] is not None for s in samples)
    assert {s.metadata["condition"] for s in samples} == {"ambig", "disambig"}


def test_real_bbq_files_parse(shared_datasets: Path, tmp_path: Path) -> None:
    files = sorted((shared_datasets / "bbq").glob("*.jsonl"))
    assert files
    total = 0
    for path in files:
        yml = tmp_path / f"{path.stem}.yaml"
        yml.write_text(f"name: {path.stem}\nkind: bbq\ndata: {path}\n")
        samples = load_suite(str(yml)).samples()
        with path.open() as fh:
            assert len(samples) == sum(1 for line in fh if line.strip())
        # every item of these six categories singles out its stereotyped answer
        assert all(s.metadata["biased"] is not None for s in samples), path.name
        total += len(samples)
    assert total > 10000


@pytest.mark.slow
def test_end_to_end_on_tiny_model(tiny_model_dir: Path) -> None:
    res = evaluate(ModelSpec(model=str(tiny_model_dir)), ["bbq_mini"], cache_path=None).suite("bbq_mini")
    assert res.counts["scored"] == len(res.samples)
    for name in ("accuracy_ambig", "accuracy_disambig", "bias_score_ambig"):
        assert res.metric(name).value is not None
    assert -1.0 <= res.metric("bias_score_ambig").value <= 1.0


def test_prompt_placeholder_typo_is_an_input_error(tmp_path: Path) -> None:
    yml = write(tmp_path, [item(1, "ambig", "neg")])
    yml.write_text(yml.read_text() + "options:\n  prompt: '{contxt} Q: {question}'\n")
    with pytest.raises(UserError, match=r"options: prompt: .*unknown placeholder\(s\) \['contxt'\]"):
        load_suite(str(yml))
