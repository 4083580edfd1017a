"""`perplexity`: token perplexity and bits per byte from scripted log-likelihoods, worked by hand."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from tunegate.backends.mock import MockBackend
from tunegate.core.errors import UserError
from tunegate.core.model_spec import ModelSpec
from tunegate.core.request import LoglikelihoodRequest
from tunegate.core.results import SuiteResult
from tunegate.run.evaluate import evaluate
from tunegate.run.suite_loader import load_suite

SPEC = ModelSpec(model="scripted", backend="mock")


def write_suite(tmp_path: Path, rows: list[dict[str, Any]], options: dict[str, Any] | None = None) -> Path:
    (tmp_path / "ppl.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    doc: dict[str, Any] = {"name": "ppl", "kind": "perplexity", "data": "ppl.jsonl"}
    if options:
        doc["options"] = options
    path = tmp_path / "ppl.yaml"
    path.write_text(json.dumps(doc), encoding="utf-8")
    return path


def run(path: Path, **script: Any) -> SuiteResult:
    return evaluate(SPEC, [str(path)], cache_path=None, backend=MockBackend.scripted(**script)).suites[0]


# The mock reports one token per whitespace-separated word.
ROWS = [
    {"id": "d1", "text": "Restart the router now"},  # 4 tokens, 22 bytes
    {"id": "d2", "text": "Refund issued café"},  # 3 tokens, 19 bytes (é is two bytes)
]
LLS = {"Restart the router now": -10.0, "Refund issued café": -5.0}


def test_whole_document_is_one_request_with_empty_context(tmp_path: Path) -> None:
    suite = load_suite(str(write_suite(tmp_path, ROWS)))
    assert suite.requests(suite.samples()[0]) == [LoglikelihoodRequest(context="", continuation="Restart the router now")]


def test_perplexity_and_bits_per_byte_hand_worked(tmp_path: Path) -> None:
    suite = run(write_suite(tmp_path, ROWS), loglikelihoods=LLS)
    assert suite.counts == {"scored": 2, "errored": 0, "skipped": 0}
    ppl, bpb = suite.metric("perplexity"), suite.metric("bits_per_byte")
    assert ppl is not None and bpb is not None
    assert ppl.value == pytest.approx(math.exp(15.0 / 7.0), rel=1e-12)
    assert bpb.value == pytest.approx(15.0 / math.log(2) / 41.0, rel=1e-12)
    assert ppl.per_sample == {"d1": 10.0, "d2": 5.0} and ppl.weights == {"d1": 4.0, "d2": 3.0}
    assert bpb.weights == {"d1": 22.0, "d2": 19.0}
    assert ppl.direction == bpb.direction == "lower"
    assert ppl.aggregation == "exp_ratio" and bpb.aggregation == "ratio" and ppl.kind == "continuous"
    scores = {s.name: s.value for s in suite.samples[1].scores}
    assert scores == {"nll": 5.0, "tokens": 3.0, "bits": pytest.approx(5.0 / math.log(2)), "bytes": 19.0}


def test_perplexity_is_a_token_weighted_not_a_document_mean(tmp_path: Path) -> None:
    rows = [{"id": "long", "text": " ".join(["word"] * 9)}, {"id": "short", "text": "hello"}]
    suite = run(write_suite(tmp_path, rows), loglikelihoods={rows[0]["text"]: -9.0, "hello": -5.0})
    # exp(14 / 10), not the mean of exp(1) and exp(5)
    assert suite.metric("perplexity").value == pytest.approx(math.exp(1.4), rel=1e-12)  # type: ignore[union-attr]


def test_backend_failure_errors_the_document(tmp_path: Path) -> None:
    suite = run(write_suite(tmp_path, ROWS), loglikelihoods=LLS, fail_on=["café"])
    assert suite.counts == {"scored": 1, "errored": 1, "skipped": 0}
    ppl = suite.metric("perplexity")
    assert ppl is not None and ppl.value == pytest.approx(math.exp(10.0 / 4.0)) and ppl.errored == 1


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ({"id": "a", "text": "   "}, "data row 1: field 'text': is empty"),
        ({"id": "a"}, "data row 1: field 'text': is missing"),
        ({"id": "a", "text": ["a", "b"]}, "data row 1: field 'text': expected str"),
    ],
)
def test_malformed_rows_name_file_row_and_field(tmp_path: Path, row: dict[str, Any], message: str) -> None:
    with pytest.raises(UserError) as err:
        load_suite(str(write_suite(tmp_path, [row])))
    assert str(err.value).startswith(str(tmp_path / "ppl.jsonl")) and message in str(err.value)


def test_unknown_option_is_a_user_error(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="suite ppl: options: stride: unknown key"):
        load_suite(str(write_suite(tmp_path, ROWS, options={"stride": 256})))
