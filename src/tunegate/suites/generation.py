"""`generation`: generate an answer and compare it with one or more reference texts.

One greedy (or seeded) generation per sample, scored against the references
with the usual reference-based measures: exact match and SQuAD token F1,
sentence BLEU and chrF (sacrebleu), ROUGE-1/2/L F-measure (rouge_score, Porter
stemming). With several references every per-sample score takes the best one.

BLEU and chrF come twice. `bleu` / `chrf` are means of sentence-level scores:
they are averages over samples, so `compare` can resample them and run paired
statistics, and a gate should use them. `corpus_bleu` / `corpus_chrf` are the
corpus-level sacrebleu figures people publish; a corpus score pools n-gram
counts over the whole set and cannot be rebuilt from one number per sample, so
they carry no per-sample vector (aggregation "corpus") and a comparison shows
their point difference only.

`degenerate_rate` is always reported, whatever `metrics` lists: the share of
outputs that are degenerate (empty, whitespace only or a repetition loop; rule
in `suites._text.degenerate_reason`), lower is better. Degenerate outputs are
still scored against the references (they score low, as they should).
"""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from tunegate.core.data import Row
from tunegate.core.errors import MissingDependencyError
from tunegate.core.metric import Metric, MetricKind
from tunegate.core.request import GenerateRequest, Request, Response
from tunegate.core.results import SampleResult
from tunegate.core.sample import Sample
from tunegate.core.score import Score, score_error, score_value
from tunegate.suites._text import check_template, degenerate_reason, exact_match, extra_template_vars, max_token_f1, render
from tunegate.suites.base import SuiteKind, metric_from_scores

MetricName = Literal["exact_match", "token_f1", "bleu", "chrf", "rouge1", "rouge2", "rougeL", "corpus_bleu", "corpus_chrf"]
ALL_METRICS: tuple[MetricName, ...] = (
    "exact_match", "token_f1", "bleu", "chrf", "rouge1", "rouge2", "rougeL", "corpus_bleu", "corpus_chrf",
)
CORPUS_METRICS = ("corpus_bleu", "corpus_chrf")
ROUGE_TYPES = ("rouge1", "rouge2", "rougeL")

DESCRIPTIONS: dict[str, str] = {
    "exact_match": "Share of samples whose output equals a reference after lowercasing, trimming, collapsing "
    "whitespace and dropping trailing punctuation.",
    "token_f1": "Mean SQuAD token F1 (0-1) between output and best reference, after removing case, punctuation "
    "and articles.",
    "bleu": "Mean sentence-level BLEU (sacrebleu defaults: 13a tokenisation, exp smoothing; 0-100) against the "
    "references.",
    "chrf": "Mean sentence-level chrF (sacrebleu defaults: character 6-grams, beta 2; 0-100) against the references.",
    "rouge1": "Mean ROUGE-1 F-measure (0-1, Porter stemming) against the best reference.",
    "rouge2": "Mean ROUGE-2 F-measure (0-1, Porter stemming) against the best reference.",
    "rougeL": "Mean ROUGE-L F-measure (0-1, longest common subsequence, Porter stemming) against the best reference.",
    "corpus_bleu": "Corpus BLEU (sacrebleu corpus_bleu, 0-100) pooling n-gram counts over all scored samples; "
    "no per-sample vector, so comparisons show the point difference only (use 'bleu' for statistics).",
    "corpus_chrf": "Corpus chrF (sacrebleu corpus_chrf, 0-100) pooling character n-gram counts over all scored "
    "samples; no per-sample vector, so comparisons show the point difference only (use 'chrf' for statistics).",
    "degenerate_rate": "Share of outputs that are degenerate: empty, whitespace only, or a repetition loop "
    "(the rule of tunegate.suites._text.degenerate_reason); always reported.",
}


class DecodingOptions(BaseModel):
    """The prompt template and decoding settings of a kind that generates one answer per prompt.

    Why a base: `generation` and `pairwise` take the same YAML options for how
    the answer is asked for, so they validate them in one place and build the
    request the same way. A subclass re-declares `max_new_tokens` and `stop`
    for its own defaults; fields keep this order, so dumps and schemas do too.
    """

    model_config = ConfigDict(extra="forbid")

    prompt_template: str = "{prompt}"
    max_new_tokens: int = Field(default=64, ge=1)
    stop: list[str] = Field(default_factory=lambda: ["\n\n"])
    temperature: float = Field(default=0.0, ge=0.0)
    seed: int = 0

    @field_validator("prompt_template")
    @classmethod
    def _template(cls, value: str) -> str:
        return check_template(value, "prompt")

    @field_validator("stop")
    @classmethod
    def _stop(cls, value: list[str]) -> list[str]:
        if any(s == "" for s in value):
            raise ValueError("stop strings must be non-empty")
        return value

    def generate(self, prompt: str) -> GenerateRequest:
        """The request for one answer to the rendered `prompt` under these settings."""
        return GenerateRequest(prompt=prompt, max_new_tokens=self.max_new_tokens, stop=tuple(self.stop),
                               temperature=self.temperature, seed=self.seed)


class GenerationOptions(DecodingOptions):
    """Decoding settings, the prompt template and which metrics to report."""

    metrics: list[MetricName] = Field(default_factory=lambda: list(ALL_METRICS), min_length=1)

    @field_validator("metrics")
    @classmethod
    def _unique(cls, value: list[MetricName]) -> list[MetricName]:
        if len(set(value)) != len(value):
            raise ValueError("a metric is listed twice")
        return value


def references(sample: Sample) -> list[str]:
    """The sample's references as a list (the data may give one string or several)."""
    target = sample.target
    if target is None:
        return []
    return [target] if isinstance(target, str) else list(target)


def _sacrebleu() -> Any:
    try:
        import sacrebleu
    except ImportError:
        raise MissingDependencyError("sacrebleu", purpose="BLEU and chrF") from None
    return sacrebleu


def _rouge_scorer() -> Any:
    try:
        from rouge_score import rouge_scorer
    except ImportError:
        raise MissingDependencyError("rouge-score", purpose="ROUGE") from None
    return rouge_scorer.RougeScorer(list(ROUGE_TYPES), use_stemmer=True)


class Generation(SuiteKind):
    name = "generation"
    description = (
        "Reference-based generation: one greedy generation per prompt scored against references with exact "
        "match, SQuAD token F1, BLEU and chrF (sacrebleu) and ROUGE-1/2/L (rouge_score)."
    )
    Options = GenerationOptions
    default_fields = {"id": "id", "prompt": "prompt", "reference": "reference"}

    _rouge: Any = None

    # ---- data -------------------------------------------------------------
    def to_sample(self, row: Row) -> Sample:
        prompt = row.get("prompt", str)
        if not prompt.strip():
            raise row.fail("prompt", "is empty")
        raw = row.get("reference", (str, list))
        refs = [raw] if isinstance(raw, str) else raw
        if not refs:
            raise row.fail("reference", "is an empty list; give at least one reference text")
        for i, ref in enumerate(refs):
            if not isinstance(ref, str) or not ref.strip():
                which = "" if isinstance(raw, str) else f"reference {i} "
                raise row.fail("reference", f"{which}is {ref!r}; references must be non-empty strings")
        template_vars = extra_template_vars(row, self.options.prompt_template, ("prompt",))
        metadata: dict[str, Any] = {"template_vars": template_vars} if template_vars else {}
        return Sample(id=self.row_id(row), input=prompt, target=raw, metadata=metadata)

    # ---- asking and scoring -----------------------------------------------
    def prompt(self, sample: Sample) -> str:
        values = {**sample.metadata.get("template_vars", {}), "prompt": sample.input}
        return render(self.options.prompt_template, values)

    def requests(self, sample: Sample) -> list[Request]:
        return [self.options.generate(self.prompt(sample))]

    def _score_names(self) -> list[str]:
        return [m for m in self.options.metrics if m not in CORPUS_METRICS]

    def score(self, sample: Sample, responses: list[Response]) -> list[Score]:
        names = self._score_names()
        text = responses[0].text if len(responses) == 1 else None
        if text is None:
            return [score_error(n, "the backend returned no generated text") for n in [*names, "degenerate"]]
        why = degenerate_reason(text)
        degenerate = score_value("degenerate", why is not None, **({"reason": why} if why else {}))
        hyp, refs = text.strip(), references(sample)
        values: dict[str, float] = {}
        if "exact_match" in names:
            values["exact_match"] = float(exact_match(hyp, refs))
        if "token_f1" in names:
            values["token_f1"] = max_token_f1(hyp, refs)
        if "bleu" in names:
            values["bleu"] = float(_sacrebleu().sentence_bleu(hyp, refs).score)
        if "chrf" in names:
            values["chrf"] = float(_sacrebleu().sentence_chrf(hyp, refs).score)
        wanted_rouge = [t for t in ROUGE_TYPES if t in names]
        if wanted_rouge:
            if self._rouge is None:
                self._rouge = _rouge_scorer()
            per_ref = [self._rouge.score(ref, hyp) for ref in refs]
            for t in wanted_rouge:
                values[t] = max(float(s[t].fmeasure) for s in per_ref)
        return [score_value(n, values[n]) for n in names] + [degenerate]

    # ---- metrics ------------------------------------------------------------
    def metrics(self, results: list[SampleResult]) -> list[Metric]:
        out: list[Metric] = []
        for name in self.options.metrics:
            if name in CORPUS_METRICS:
                out.append(self._corpus_metric(name, results))
            else:
                kind: MetricKind = "binary" if name == "exact_match" else "continuous"
                out.append(metric_from_scores(name, results, name, kind=kind, description=DESCRIPTIONS[name]))
        out.append(metric_from_scores("degenerate_rate", results, "degenerate", direction="lower", kind="binary",
                                      description=DESCRIPTIONS["degenerate_rate"]))
        return out

    def _corpus_metric(self, name: str, results: list[SampleResult]) -> Metric:
        """Corpus BLEU/chrF over the scored samples; references padded with None to equal counts."""
        scored = [r for r in results if r.status == "scored" and r.responses and r.responses[0].text is not None]
        errored = sum(1 for r in results if r.status == "errored")
        value: float | None = None
        if scored:
            hyps = [(r.responses[0].text or "").strip() for r in scored]
            refs = [references(r.sample) for r in scored]
            width = max(len(x) for x in refs)
            streams: list[list[str | None]] = [[x[i] if i < len(x) else None for x in refs] for i in range(width)]
            sb = _sacrebleu()
            fn = sb.corpus_bleu if name == "corpus_bleu" else sb.corpus_chrf
            value = float(fn(hyps, streams).score)
            if not math.isfinite(value):
                value = None
        return Metric(
            name=name, value=value, direction="higher", kind="continuous", aggregation="corpus",
            description=DESCRIPTIONS[name], n=len(scored), errored=errored, per_sample={},
        )
