"""`perplexity`: how well the model predicts held-out text of the target domain.

Each document is one log-likelihood request with an empty context: the backend
scores the whole text after the model's BOS token (rolling windows when it is
longer than the model's context), as lm-evaluation-harness does for
`loglikelihood_rolling`. A fine-tune that forgets the domain's language, or
collapses towards a narrow style, shows up as a rise in perplexity.

Two numbers are reported. `perplexity` is per token, so it can only be
compared between models that share a tokenizer (base and fine-tune usually
do). `bits_per_byte` divides by the UTF-8 byte count of the text instead, so it
is comparable across tokenizers.
"""

from __future__ import annotations

import math

from tunegate.core.data import Row
from tunegate.core.metric import Metric
from tunegate.core.request import InvalidResponse, LoglikelihoodRequest, Request, Response, finite_loglikelihoods
from tunegate.core.results import SampleResult
from tunegate.core.sample import Sample
from tunegate.core.score import Score, score_error, score_value
from tunegate.suites.base import SuiteKind, metric_from_scores

SCORES = ("nll", "tokens", "bits", "bytes")


class Perplexity(SuiteKind):
    name = "perplexity"
    description = (
        "Perplexity on held-out documents (lm-evaluation-harness rolling log-likelihood): "
        "exp(total negative log-likelihood / total tokens), and bits per UTF-8 byte."
    )
    default_fields = {"id": "id", "text": "text"}

    def to_sample(self, row: Row) -> Sample:
        text = row.get("text", str)
        if not text.strip():
            raise row.fail("text", "is empty; every document needs some text to score")
        return Sample(id=self.row_id(row), input=text)

    def requests(self, sample: Sample) -> list[Request]:
        return [LoglikelihoodRequest(context="", continuation=sample.input)]

    def score(self, sample: Sample, responses: list[Response]) -> list[Score]:
        try:
            (ll,) = finite_loglikelihoods(responses, expected=1)
        except InvalidResponse as why:
            return [score_error(n, str(why)) for n in SCORES]
        n_tokens = responses[0].n_tokens
        if not n_tokens or n_tokens <= 0:
            return [score_error(n, "the backend did not report how many tokens it scored") for n in SCORES]
        nll = -ll
        n_bytes = len(sample.input.encode("utf-8"))
        return [
            score_value("nll", nll),
            score_value("tokens", n_tokens),
            score_value("bits", nll / math.log(2)),
            score_value("bytes", n_bytes),
        ]

    def metrics(self, results: list[SampleResult]) -> list[Metric]:
        return [
            metric_from_scores(
                "perplexity", results, "nll", direction="lower", aggregation="exp_ratio", weight_score="tokens",
                description="Token perplexity exp(sum of negative log-likelihoods / sum of scored tokens) over all "
                "documents; per-sample values are each document's NLL in nats, weights its token count. Only "
                "comparable between models with the same tokenizer.",
            ),
            metric_from_scores(
                "bits_per_byte", results, "bits", direction="lower", aggregation="ratio", weight_score="bytes",
                description="Sum of negative log-likelihoods in bits / sum of UTF-8 bytes over all documents; "
                "tokenizer-independent.",
            ),
        ]
