"""`multiple_choice`: pick the answer the model finds most likely (lm-evaluation-harness style).

Each choice is scored as a continuation of the prompt, LL_i = log P(prefix +
choice_i | prompt). The prediction is the argmax of LL_i (`accuracy`) or of
LL_i / len(choice_i) in characters (`accuracy_norm`, lm-eval's `acc_norm`,
which removes the bias towards short choices). No text is generated, so the
result does not depend on answer formatting or decoding settings.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, ConfigDict, field_validator

from tunegate.core.data import Row
from tunegate.core.metric import Metric
from tunegate.core.request import InvalidResponse, LoglikelihoodRequest, Request, Response, finite_loglikelihoods
from tunegate.core.results import SampleResult
from tunegate.core.sample import Sample
from tunegate.core.score import Score, score_error, score_value
from tunegate.suites._text import check_template, extra_template_vars, render
from tunegate.suites.base import SuiteKind, metric_from_scores


class MultipleChoiceOptions(BaseModel):
    """`prompt_template` must contain `{question}`; other placeholders name data columns."""

    model_config = ConfigDict(extra="forbid")

    prompt_template: str = "Question: {question}\nAnswer:"
    #: put between the prompt and every choice (lm-eval's target_delimiter)
    choice_prefix: str = " "

    @field_validator("prompt_template")
    @classmethod
    def _template(cls, value: str) -> str:
        return check_template(value, "question")


def _argmax(values: list[float]) -> int:
    """Index of the largest value; ties go to the first (as numpy.argmax)."""
    return max(range(len(values)), key=lambda i: (values[i], -i))


class MultipleChoice(SuiteKind):
    name = "multiple_choice"
    description = (
        "Multiple choice by log-likelihood ranking (lm-evaluation-harness method): each choice is scored "
        "as a continuation of the prompt; accuracy takes the most likely choice, accuracy_norm the most "
        "likely per character."
    )
    Options = MultipleChoiceOptions
    default_fields = {"id": "id", "question": "question", "choices": "choices", "answer": "answer"}

    # ---- data -------------------------------------------------------------
    def to_sample(self, row: Row) -> Sample:
        question = row.get("question", str)
        if not question.strip():
            raise row.fail("question", "is empty")
        choices, labels = self._choices(row)
        answer = self._answer(row, choices, labels)
        template_vars = extra_template_vars(row, self.options.prompt_template, ("question",))
        metadata: dict[str, Any] = {"template_vars": template_vars} if template_vars else {}
        return Sample(id=self.row_id(row), input=question, choices=choices, answer=answer, metadata=metadata)

    @staticmethod
    def _choices(row: Row) -> tuple[list[str], list[str] | None]:
        """The choice texts (and their labels when the data gives them, e.g. ARC's A-D).

        Accepts a list of strings, a JSON list inside a string (CSV files), or a
        mapping `{"text": [...], "label": [...]}` as Hub datasets such as ARC ship.
        """
        raw = row.get("choices", (list, str, dict))
        labels: list[str] | None = None
        if isinstance(raw, str):
            try:
                raw = json.loads(raw)
            except json.JSONDecodeError:
                raise row.fail("choices", 'expected a list of strings (in CSV, a JSON list such as ["yes", "no"])') from None
        if isinstance(raw, dict):
            if not isinstance(raw.get("text"), list):
                raise row.fail("choices", "a mapping of choices needs a 'text' list")
            if isinstance(raw.get("label"), list):
                labels = [str(x) for x in raw["label"]]
            raw = raw["text"]
        if not isinstance(raw, list):
            raise row.fail("choices", f"expected a list of strings, got {type(raw).__name__}")
        if len(raw) < 2:
            raise row.fail("choices", f"has {len(raw)} choice(s); give at least 2")
        for i, c in enumerate(raw):
            if not isinstance(c, str) or not c.strip():
                raise row.fail("choices", f"choice {i} is {c!r}; every choice must be a non-empty string")
        if labels is not None and len(labels) != len(raw):
            raise row.fail("choices", f"has {len(raw)} texts but {len(labels)} labels")
        return list(raw), labels

    @staticmethod
    def _answer(row: Row, choices: list[str], labels: list[str] | None) -> int:
        """A 0-based index. A string is matched against the choice labels first (ARC's "A" or "1"),
        then read as an index when it is a digit string (CSV), then matched against the choice texts."""
        raw = row.get("answer", (int, str))
        n = len(choices)
        if isinstance(raw, bool):
            raise row.fail("answer", f"is {raw}; give the 0-based index of the correct choice")
        if isinstance(raw, str):
            text = raw.strip()
            if labels is not None and text in labels:
                raw = labels.index(text)
            elif text.lstrip("-").isdigit():
                raw = int(text)
            elif text in choices:
                raw = choices.index(text)
            else:
                raise row.fail("answer", f"is {text!r}, which is neither an index nor one of the choices")
        if not 0 <= raw < n:
            raise row.fail("answer", f"is {raw} but there are {n} choices (answers are 0-based indices)")
        return raw

    # ---- asking and scoring -----------------------------------------------
    def prompt(self, sample: Sample) -> str:
        values = {**sample.metadata.get("template_vars", {}), "question": sample.input}
        return render(self.options.prompt_template, values)

    def requests(self, sample: Sample) -> list[Request]:
        prompt = self.prompt(sample)
        return [
            LoglikelihoodRequest(context=prompt, continuation=self.options.choice_prefix + c)
            for c in sample.choices or []
        ]

    def score(self, sample: Sample, responses: list[Response]) -> list[Score]:
        choices = sample.choices or []
        try:
            values = finite_loglikelihoods(responses, expected=len(choices))
        except InvalidResponse as why:
            return [score_error("correct", str(why)), score_error("correct_norm", str(why))]
        normed = [ll / len(c) for ll, c in zip(values, choices, strict=True)]
        pred, pred_norm = _argmax(values), _argmax(normed)
        return [
            score_value("correct", pred == sample.answer, predicted=pred, loglikelihoods=values),
            score_value("correct_norm", pred_norm == sample.answer, predicted=pred_norm, loglikelihoods_per_char=normed),
        ]

    def metrics(self, results: list[SampleResult]) -> list[Metric]:
        return [
            metric_from_scores(
                "accuracy", results, "correct", kind="binary",
                description="Share of questions where the most likely choice (summed log-likelihood) is the answer.",
            ),
            metric_from_scores(
                "accuracy_norm", results, "correct_norm", kind="binary",
                description="Share of questions where the choice with the highest log-likelihood per character "
                "is the answer (lm-eval acc_norm).",
            ),
        ]
