"""`multiple_choice`: exact accuracies from scripted log-likelihoods, and input errors that name file, row, field."""

from __future__ import annotations

import json
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


def write_suite(tmp_path: Path, rows: list[dict[str, Any]], options: dict[str, Any] | None = None,
                fields: dict[str, str] | None = None) -> Path:
    """A multiple_choice suite YAML plus its JSONL data under tmp_path."""
    (tmp_path / "mc.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    doc: dict[str, Any] = {"name": "mc", "kind": "multiple_choice", "data": "mc.jsonl"}
    if options:
        doc["options"] = options
    if fields:
        doc["fields"] = fields
    path = tmp_path / "mc.yaml"
    path.write_text(json.dumps(doc), encoding="utf-8")  # JSON is valid YAML
    return path


def run(path: Path, **script: Any) -> SuiteResult:
    result = evaluate(SPEC, [str(path)], cache_path=None, backend=MockBackend.scripted(**script))
    return result.suites[0]


def ll_key(question: str, choice: str) -> str:
    return f"Question: {question}\nAnswer:||| {choice}"


ROWS = [
    {"id": "q1", "question": "Can I return an opened item?", "choices": ["yes", "no", "only unopened"], "answer": 0},
    {"id": "q2", "question": "How long do refunds take?", "choices": ["1 day", "5 days", "a year"], "answer": 1},
    {"id": "q3", "question": "Where do I reset a password?", "choices": ["settings", "billing", "the app store"], "answer": 0},
]


def test_accuracy_is_exactly_two_thirds(tmp_path: Path) -> None:
    lls = {
        ll_key("Can I return an opened item?", "yes"): -1.0,
        ll_key("Can I return an opened item?", "no"): -2.0,
        ll_key("Can I return an opened item?", "only unopened"): -9.0,
        ll_key("How long do refunds take?", "1 day"): -3.0,
        ll_key("How long do refunds take?", "5 days"): -0.5,
        ll_key("How long do refunds take?", "a year"): -4.0,
        ll_key("Where do I reset a password?", "settings"): -6.0,
        ll_key("Where do I reset a password?", "billing"): -2.0,  # wrong choice wins
        ll_key("Where do I reset a password?", "the app store"): -8.0,
    }
    suite = run(write_suite(tmp_path, ROWS), loglikelihoods=lls)
    assert suite.counts == {"scored": 3, "errored": 0, "skipped": 0}
    acc = suite.metric("accuracy")
    assert acc is not None and acc.value == pytest.approx(2 / 3, abs=1e-12)
    assert acc.per_sample == {"q1": 1.0, "q2": 1.0, "q3": 0.0}
    assert acc.kind == "binary" and acc.direction == "higher" and acc.aggregation == "mean" and acc.n == 3
    q3 = next(s for s in suite.samples if s.id == "q3")
    correct = next(s for s in q3.scores if s.name == "correct")
    assert correct.details == {"predicted": 1, "loglikelihoods": [-6.0, -2.0, -8.0]}


def test_requests_score_each_choice_after_the_prompt(tmp_path: Path) -> None:
    suite = load_suite(str(write_suite(tmp_path, ROWS[:1])))
    reqs = suite.requests(suite.samples()[0])
    assert reqs == [
        LoglikelihoodRequest(context="Question: Can I return an opened item?\nAnswer:", continuation=c)
        for c in (" yes", " no", " only unopened")
    ]


def test_accuracy_norm_divides_by_choice_length(tmp_path: Path) -> None:
    """The short choice wins on summed log-likelihood, the long one per character (lm-eval acc_norm)."""
    rows = [{"id": "n1", "question": "Is that allowed?", "choices": ["yes", "absolutely not"], "answer": 1}]
    lls = {ll_key("Is that allowed?", "yes"): -3.0, ll_key("Is that allowed?", "absolutely not"): -7.0}
    suite = run(write_suite(tmp_path, rows), loglikelihoods=lls)
    assert suite.metric("accuracy").value == 0.0  # type: ignore[union-attr]
    assert suite.metric("accuracy_norm").value == 1.0  # type: ignore[union-attr]
    norm = next(s for s in suite.samples[0].scores if s.name == "correct_norm")
    assert norm.details["loglikelihoods_per_char"] == [-1.0, -0.5]  # -3/3 and -7/14


def test_ties_go_to_the_first_choice(tmp_path: Path) -> None:
    rows = [{"id": "t", "question": "Tie?", "choices": ["aa", "bb"], "answer": 1}]
    suite = run(write_suite(tmp_path, rows), loglikelihoods={ll_key("Tie?", "aa"): -1.0, ll_key("Tie?", "bb"): -1.0})
    assert suite.metric("accuracy").value == 0.0  # type: ignore[union-attr]


def test_template_prefix_and_extra_columns(tmp_path: Path) -> None:
    rows = [{"id": "x", "q": "Which plan?", "policy_text": "Plans renew monthly.", "choices": ["A", "B"], "answer": "B"}]
    opts = {"prompt_template": "{policy}\nQ: {question}\nA:", "choice_prefix": ": "}
    fields = {"question": "q", "policy": "policy_text"}
    suite = load_suite(str(write_suite(tmp_path, rows, options=opts, fields=fields)))
    sample = suite.samples()[0]
    assert sample.answer == 1 and sample.input == "Which plan?"
    assert [r.continuation for r in suite.requests(sample)] == [": A", ": B"]
    assert suite.requests(sample)[0].context == "Plans renew monthly.\nQ: Which plan?\nA:"


def test_answer_forms_label_text_and_csv(tmp_path: Path) -> None:
    rows = [
        {"id": "arc", "question": "Q?", "choices": {"text": ["red", "blue", "green"], "label": ["A", "B", "C"]}, "answer": "C"},
        {"id": "txt", "question": "Q?", "choices": ["red", "blue"], "answer": "blue"},
        {"id": "num", "question": "Q?", "choices": ["red", "blue"], "answer": "1"},
        {"id": "arc-digits", "question": "Q?", "choices": {"text": ["red", "blue"], "label": ["1", "2"]}, "answer": "1"},
    ]
    samples = load_suite(str(write_suite(tmp_path, rows))).samples()
    assert [s.answer for s in samples] == [2, 1, 1, 0]  # numeric labels are labels, not indices
    assert samples[0].choices == ["red", "blue", "green"]

    csv_dir = tmp_path / "csv"
    csv_dir.mkdir()
    (csv_dir / "mc.csv").write_text('id,question,choices,answer\nc1,Q?,"[""yes"", ""no""]",1\n', encoding="utf-8")
    (csv_dir / "mc.yaml").write_text("name: mc\nkind: multiple_choice\ndata: mc.csv\n", encoding="utf-8")
    (sample,) = load_suite(str(csv_dir / "mc.yaml")).samples()
    assert sample.choices == ["yes", "no"] and sample.answer == 1


def test_backend_failure_errors_the_sample_and_keeps_the_denominator_honest(tmp_path: Path) -> None:
    lls = {ll_key("Can I return an opened item?", "yes"): -1.0, ll_key("How long do refunds take?", "5 days"): -0.1}
    suite = run(write_suite(tmp_path, ROWS), loglikelihoods=lls, fail_on=["reset a password"])
    assert suite.counts == {"scored": 2, "errored": 1, "skipped": 0}
    acc = suite.metric("accuracy")
    assert acc is not None and acc.n == 2 and acc.errored == 1


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ({"id": "a", "question": "Q?", "choices": ["x", "y", "z"], "answer": 4},
         "data row 1: field 'answer': is 4 but there are 3 choices"),
        ({"id": "a", "question": "Q?", "choices": ["x", "y", "z"], "answer": -1},
         "data row 1: field 'answer': is -1 but there are 3 choices"),
        ({"id": "a", "question": "Q?", "choices": ["only"], "answer": 0},
         "data row 1: field 'choices': has 1 choice(s); give at least 2"),
        ({"id": "a", "question": "Q?", "choices": ["x", "  "], "answer": 0},
         "data row 1: field 'choices': choice 1 is '  '; every choice must be a non-empty string"),
        ({"id": "a", "question": "Q?", "choices": ["x", 3], "answer": 0},
         "data row 1: field 'choices': choice 1 is 3; every choice must be a non-empty string"),
        ({"id": "a", "question": "Q?", "choices": ["x", "y"], "answer": "maybe"},
         "data row 1: field 'answer': is 'maybe', which is neither an index nor one of the choices"),
        ({"id": "a", "choices": ["x", "y"], "answer": 0}, "data row 1: field 'question': is missing"),
        ({"id": "a", "question": "Q?", "choices": ["x", "y"]}, "data row 1: field 'answer': is missing"),
        ({"id": "a", "question": "Q?", "choices": "x or y", "answer": 0},
         "data row 1: field 'choices': expected a list of strings"),
    ],
)
def test_malformed_rows_name_file_row_and_field(tmp_path: Path, row: dict[str, Any], message: str) -> None:
    path = write_suite(tmp_path, [row])
    with pytest.raises(UserError) as err:
        load_suite(str(path))
    assert str(err.value).startswith(str(tmp_path / "mc.jsonl"))
    assert message in str(err.value)


def test_error_names_the_later_row(tmp_path: Path) -> None:
    rows = [*ROWS, {"id": "q4", "question": "Q?", "choices": ["a", "b", "c"], "answer": 4}]
    with pytest.raises(UserError, match=r"mc\.jsonl: data row 4: field 'answer': is 4 but there are 3 choices"):
        load_suite(str(write_suite(tmp_path, rows)))


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"promt_template": "x"}, "options: promt_template: unknown key"),
        ({"prompt_template": "no placeholder"}, "must contain the placeholder {question}"),
        ({"prompt_template": "{question} {0}"}, "positional placeholders"),
        ({"prompt_template": "{question"}, "prompt_template"),
    ],
)
def test_bad_options_are_user_errors(tmp_path: Path, options: dict[str, Any], message: str) -> None:
    with pytest.raises(UserError, match="suite mc: options") as err:
        load_suite(str(write_suite(tmp_path, ROWS, options=options)))
    assert message in str(err.value)


def test_template_column_missing_from_a_row(tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"data row 1: field 'policy': is missing \(the prompt template uses \{policy\}\)"):
        load_suite(str(write_suite(tmp_path, ROWS, options={"prompt_template": "{policy} {question}"})))


def test_braces_in_data_are_left_alone(tmp_path: Path) -> None:
    rows = [{"id": "b", "question": "What does {order_id} mean in the email?", "choices": ["a placeholder", "a typo"], "answer": 0}]
    suite = load_suite(str(write_suite(tmp_path, rows)))
    assert suite.requests(suite.samples()[0])[0].context == "Question: What does {order_id} mean in the email?\nAnswer:"
