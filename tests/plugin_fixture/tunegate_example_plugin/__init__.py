"""A third-party plugin: one suite kind and one scorer, registered by entry points only."""

from __future__ import annotations

from tunegate import Metric, Response, Sample, SampleResult, Score, SuiteKind
from tunegate.core.data import Row
from tunegate.core.request import GenerateRequest, Request
from tunegate.core.score import score_value
from tunegate.scorers.base import Scorer
from tunegate.suites.base import metric_from_scores


class ShoutKind(SuiteKind):
    """Asks the model to continue a prompt; scores whether the answer is in capitals."""

    name = "example_shout"
    description = "Share of answers written in capital letters (example plugin)."
    default_fields = {"id": "id", "prompt": "prompt"}

    def to_sample(self, row: Row) -> Sample:
        return Sample(id=self.row_id(row), input=row.get("prompt", str))

    def requests(self, sample: Sample) -> list[Request]:
        return [GenerateRequest(prompt=sample.input, max_new_tokens=8)]

    def score(self, sample: Sample, responses: list[Response]) -> list[Score]:
        text = responses[0].text or ""
        return [score_value("shouted", bool(text) and text.upper() == text)]

    def metrics(self, results: list[SampleResult]) -> list[Metric]:
        return [metric_from_scores("shout_rate", results, "shouted", kind="binary")]


class LengthScorer(Scorer):
    name = "example_length"
    description = "Text length in characters, scaled to [0, 1] at 100 characters."
    outputs = ("length",)

    def score_texts(self, texts: list[str], prompts: list[str | None] | None = None) -> list[list[Score]]:
        return [[score_value("length", min(1.0, len(t) / 100))] for t in texts]
