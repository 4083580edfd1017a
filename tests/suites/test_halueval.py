"""halueval: exact accuracy/F1 on scripted log-likelihoods, the real file, a tiny model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tunegate.backends.mock import MockBackend
from tunegate.core.errors import UserError
from tunegate.core.model_spec import ModelSpec
from tunegate.run.evaluate import evaluate
from tunegate.run.suite_loader import load_suite


def write(tmp_path: Path, rows: list[dict]) -> Path:
    (tmp_path / "h.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    yml = tmp_path / "h.yaml"
    yml.write_text("name: h\nkind: halueval\ndata: h.jsonl\n")
    return yml


def test_exact_accuracy_and_f1(tmp_path: Path) -> None:
    labels = {"1": "yes", "2": "yes", "3": "no", "4": "no", "5": "no"}
    says_yes = {"1": True, "2": False, "3": True, "4": False, "5": False}  # TP, FN, FP, TN, TN
    rows = [{"ID": i, "user_query": f"q{i}", "chatgpt_response": f"r{i}", "hallucination": h} for i, h in labels.items()]
    suite = load_suite(str(write(tmp_path, rows)))
    lls = {}
    for s in suite.samples():
        yes = says_yes[s.id]
        lls[f"{s.input}||| Yes"], lls[f"{s.input}||| No"] = (-1.0, -2.0) if yes else (-2.0, -1.0)
    backend = MockBackend.scripted(loglikelihoods=lls)
    res = evaluate(backend.spec, [suite], backend=backend, cache_path=None).suite("h")
    assert res.metric("accuracy").value == pytest.approx(3 / 5)
    assert res.metric("recall_hallucinated").value == pytest.approx(1 / 2)
    assert res.metric("specificity").value == pytest.approx(2 / 3)
    assert res.metric("f1_hallucinated").value == pytest.approx(2 * 1 / (2 * 1 + 1 + 1))
    assert res.metric("yes_rate").value == pytest.approx(2 / 5)
    assert "Query: q1\nResponse: r1" in res.samples[0].requests[0].context


def test_bad_label_is_an_input_error(tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"data row 1: field 'label' \(column 'hallucination'\): is 'maybe'"):
        load_suite(str(write(tmp_path, [{"ID": "1", "user_query": "q", "chatgpt_response": "r", "hallucination": "maybe"}])))


def test_builtin_suite_loads() -> None:
    samples = load_suite("halueval_mini").samples()
    assert len(samples) == 30 and 0 < sum(s.metadata["hallucinated"] for s in samples) < 30


def test_real_halueval_file_parses(shared_datasets: Path, tmp_path: Path) -> None:
    path = shared_datasets / "halueval" / "general_data.json"
    yml = tmp_path / "real.yaml"
    # the file is JSON lines despite its .json name
    yml.write_text(f"name: real\nkind: halueval\ndata: {{path: {path}, format: jsonl}}\n")
    samples = load_suite(str(yml)).samples()
    assert len(samples) == 4507
    assert sum(s.metadata["hallucinated"] for s in samples) == 815


@pytest.mark.slow
def test_end_to_end_on_tiny_model(tiny_model_dir: Path, tmp_path: Path) -> None:
    rows = [{"ID": str(i), "user_query": "Capital of France?", "chatgpt_response": r, "hallucination": h}
            for i, (r, h) in enumerate([("Paris.", "no"), ("Lyon.", "yes")])]
    res = evaluate(ModelSpec(model=str(tiny_model_dir)), [str(write(tmp_path, rows))], cache_path=None).suite("h")
    assert res.counts["scored"] == 2
    for s in res.samples:
        ll_yes, ll_no = (r.loglikelihood for r in s.responses)
        assert s.score("said_yes") == float(ll_yes > ll_no)
