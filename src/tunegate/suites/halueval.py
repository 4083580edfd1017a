"""`halueval` suite kind: can the model tell a hallucinated response from a faithful one?

Method (Li et al., 2023, "HaluEval: A Large-Scale Hallucination Evaluation
Benchmark for Large Language Models", EMNLP): the model is shown a user query
and a response and asked whether the response contains hallucinated content.
HaluEval reads a generated "Yes"/"No"; this kind compares log-likelihoods
instead, log P(" Yes" | prompt) against log P(" No" | prompt), so the verdict is
deterministic and needs no answer parsing (ties count as "No"). The prompt is
our own wording of the task, not HaluEval's instruction text.

Metrics: `accuracy` against the human label; since most HaluEval "general"
responses are faithful (about 82%), also the accuracy on each class
(`recall_hallucinated`, `specificity`), `f1_hallucinated` (F1 of the "Yes"
class, a ratio of sums: per item 2*TP as value and 2*TP + FP + FN as weight)
and `yes_rate` (neutral).
"""

from __future__ import annotations

from typing import ClassVar

from pydantic import BaseModel, ConfigDict, field_validator

from tunegate.core.data import Row
from tunegate.core.metric import Metric
from tunegate.core.request import InvalidResponse, LoglikelihoodRequest, Request, Response, finite_loglikelihoods
from tunegate.core.results import SampleResult
from tunegate.core.sample import Sample
from tunegate.core.score import Score, score_error, score_value
from tunegate.suites._text import check_placeholders
from tunegate.suites.base import SuiteKind, metric_from_scores

PROMPT = (
    "Below is a user query and a response written by an AI assistant. Decide whether the response contains "
    "hallucinated content: statements that are false, made up, or not supported by facts.\n\n"
    "Query: {query}\nResponse: {response}\n\n"
    "Does the response contain hallucinated content? Answer Yes or No.\nAnswer:"
)
YES = ("yes", "true", "1", "hallucinated")
NO = ("no", "false", "0", "faithful")


class HaluEvalOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    prompt: str = PROMPT
    yes: str = " Yes"
    no: str = " No"

    @field_validator("prompt")
    @classmethod
    def _placeholders(cls, v: str) -> str:
        return check_placeholders(v, {"query", "response"})


class HaluEval(SuiteKind):
    name: ClassVar[str] = "halueval"
    description: ClassVar[str] = (
        "HaluEval-style hallucination recognition (Li et al., EMNLP 2023): given a query and a response, the model "
        "judges whether the response contains hallucinated content, read from log P(' Yes') vs log P(' No'). "
        "Accuracy against the human label, per-class accuracy and F1 of the hallucinated class."
    )
    Options: ClassVar[type[BaseModel]] = HaluEvalOptions
    default_fields: ClassVar[dict[str, str]] = {"id": "ID", "query": "user_query", "response": "chatgpt_response",
                                                 "label": "hallucination"}

    def _id(self, row: Row) -> str:
        """The ID column, except where it repeats the column's own name (two rows of the public file
        carry the literal ID "ID", a leaked header): those fall back to their row number."""
        sid = self.row_id(row)
        return f"row{row.line}" if sid == self.fields.get("id", "id") else sid

    def to_sample(self, row: Row) -> Sample:
        query = row.get("query", str)
        response = row.get("response", str)
        if not response.strip():
            raise row.fail("response", "is empty")
        raw = row.get("label", (str, bool, int))
        label = str(raw).strip().lower()
        if label not in YES + NO:
            raise row.fail("label", f"is {raw!r}; use yes/no (hallucinated or not)")
        prompt = self.options.prompt.format(query=query.strip(), response=response.strip())
        return Sample(id=self._id(row), input=prompt, choices=[self.options.yes, self.options.no],
                      answer=0 if label in YES else 1, metadata={"hallucinated": label in YES})

    def requests(self, sample: Sample) -> list[Request]:
        assert sample.choices is not None
        return [LoglikelihoodRequest(context=sample.input, continuation=c) for c in sample.choices]

    def score(self, sample: Sample, responses: list[Response]) -> list[Score]:
        try:
            ll_yes, ll_no = finite_loglikelihoods(responses, expected=2)
        except InvalidResponse as why:
            return [score_error(n, str(why)) for n in ("correct", "said_yes", "f1_num", "f1_den")]
        said_yes = ll_yes > ll_no
        truth = bool(sample.metadata["hallucinated"])
        tp, fp, fn = said_yes and truth, said_yes and not truth, (not said_yes) and truth
        return [
            score_value("correct", said_yes == truth, ll_yes=ll_yes, ll_no=ll_no),
            score_value("said_yes", said_yes),
            score_value("f1_num", 2 * tp),
            score_value("f1_den", 2 * tp + fp + fn),
        ]

    def metrics(self, results: list[SampleResult]) -> list[Metric]:
        def cls(value: bool):  # noqa: ANN202
            return lambda r: r.sample.metadata["hallucinated"] is value

        return [
            metric_from_scores("accuracy", results, "correct", kind="binary", description="share of responses judged correctly"),
            metric_from_scores("recall_hallucinated", results, "correct", kind="binary", where=cls(True),
                               description="share of hallucinated responses the model flags"),
            metric_from_scores("specificity", results, "correct", kind="binary", where=cls(False),
                               description="share of faithful responses the model accepts"),
            metric_from_scores("f1_hallucinated", results, "f1_num", weight_score="f1_den", aggregation="ratio",
                               description="F1 of the hallucinated class: 2TP / (2TP + FP + FN)"),
            metric_from_scores("yes_rate", results, "said_yes", kind="binary", direction="neutral",
                               description="share of responses the model calls hallucinated"),
        ]
