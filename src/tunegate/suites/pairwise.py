"""`pairwise`: each model answers the prompts; a judge later says which of base's and candidate's answers is better.

A suite runs on one model, a preference needs two. So the kind splits the
work at the natural seam: in each model's run it is a generation suite (one
greedy answer per prompt, through the runner, the response cache and
results.json like every other answer), scored only with what one answer
allows (its length, whether it is degenerate). The judging happens where both
runs are at hand, in the comparison (`tunegate.compare.pairwise`), which
builds the judge from the record this kind writes (`scorers_used`: scorer
`judge` with the suite's judge options and a pairwise rubric) and turns the
verdicts into the candidate's `win_rate`, `tie_rate`, `win_rate_ties_split`,
`win_rate_length_matched` and per-category metrics (docs/pairwise.md).

Data: `id`, `prompt`, optional `category` (per-category breakdowns).
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from tunegate.core.data import Row
from tunegate.core.errors import UserError
from tunegate.core.metric import Metric
from tunegate.core.request import Request, Response
from tunegate.core.results import SampleResult, ScorerRecord
from tunegate.core.sample import Sample
from tunegate.core.score import Score, score_error, score_value
from tunegate.scorers.base import scorer_record
from tunegate.scorers.pairwise_judge import PairwiseJudge, PairwiseJudgeOptions
from tunegate.suites._text import degenerate_reason, render
from tunegate.suites.base import SuiteKind, metric_from_scores
from tunegate.suites.generation import DecodingOptions

CATEGORY_RE = r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$"


class PairwiseOptions(DecodingOptions):
    """Decoding settings of each model's answer, and the judge (the judge scorer's options, pairwise rubric)."""

    #: pairwise's own defaults: a longer answer than `generation`'s default, and no stop string
    max_new_tokens: int = Field(default=128, ge=1)
    stop: list[str] = Field(default_factory=list)
    judge: PairwiseJudgeOptions = Field(description="the judge scorer's options: judge (a model spec), rubric (a pairwise "
                                                    "rubric, default pairwise-preference), max_new_tokens, seed, cache...")


class Pairwise(SuiteKind):
    name = "pairwise"
    description = (
        "Pairwise preference: base and candidate answer the same prompts; a judge model (the judge scorer with a "
        "versioned pairwise rubric) compares the two answers in both orders, a verdict that flips with the order "
        "counts as a tie, unparseable verdicts are errors. Win rate and tie rate with exact (Clopper-Pearson) "
        "intervals, win rate with ties split, a length-matched win rate and per-category win rates."
    )
    Options = PairwiseOptions
    default_fields = {"id": "id", "prompt": "prompt", "category": "category"}

    def __init__(self, config: Any, base_dir: Any) -> None:
        super().__init__(config, base_dir)
        try:
            PairwiseJudge.check(self.options.judge)
        except UserError as err:
            raise UserError(f"suite {config.name}: options.{err.message}") from None

    def to_sample(self, row: Row) -> Sample:
        prompt = row.get("prompt", str)
        if not prompt.strip():
            raise row.fail("prompt", "is empty")
        metadata: dict[str, Any] = {}
        if row.has("category"):
            cat = row.get("category", str)
            import re

            if not re.match(CATEGORY_RE, cat):
                raise row.fail("category", f"{cat!r}: a category is letters, digits, '_', '.' or '-' (it names a metric)")
            metadata["category"] = cat
        return Sample(id=self.row_id(row), input=prompt, metadata=metadata)

    def scorer_refs(self) -> list[tuple[str, Any, Any]]:
        """None for the loader's generic check: the judge is checked with its pairwise rubric in `__init__`."""
        return []

    def scorers_used(self) -> list[ScorerRecord]:
        """Scorer `judge` with every option resolved (the rubric named): the comparison builds the judge from this."""
        return [scorer_record("judge", self.options.judge.model_dump(mode="json"))]

    def requests(self, sample: Sample) -> list[Request]:
        return [self.options.generate(render(self.options.prompt_template, {"prompt": sample.input}))]

    def score(self, sample: Sample, responses: list[Response]) -> list[Score]:
        text = responses[0].text if len(responses) == 1 else None
        if text is None:
            return [score_error(n, "the backend returned no generated text") for n in ("answer_chars", "degenerate")]
        why = degenerate_reason(text)
        return [score_value("answer_chars", float(len(text.strip()))),
                score_value("degenerate", why is not None, **({"reason": why} if why else {}))]

    def metrics(self, results: list[SampleResult]) -> list[Metric]:
        return [
            metric_from_scores("answer_chars", results, "answer_chars", direction="neutral",
                               description="Mean answer length in characters (stripped); the pairwise metrics are "
                                           "computed in the comparison, where both models' answers are at hand."),
            metric_from_scores("degenerate_rate", results, "degenerate", direction="lower", kind="binary",
                               description="Share of answers that are degenerate: empty, whitespace only, or a repetition loop."),
        ]
