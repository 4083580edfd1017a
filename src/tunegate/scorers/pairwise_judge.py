"""The `judge` scorer kind asked about two replies at once: which answer to a prompt is better.

Why a module of its own and not a new scorer plugin: pairwise judging is the
same judge (any tunegate backend, the response cache, temperature 0 and a
fixed seed, the closed-label parser, fail closed) with a different rubric
shape: the template holds two delimited replies, `{reply_a}` and `{reply_b}`,
and the label set is fixed to `a` / `b` / `tie`. `PairwiseJudge` therefore
subclasses `JudgeScorer` and reuses its backend loading, response cache and
error handling; only the rubric model and the prompt rendering differ. It is
not registered under `tunegate.scorers` (a per-text scorer contract does not
fit a pair); the `pairwise` suite kind records it as scorer `judge` with its
options, and `tunegate.compare.pairwise` builds it from that record.

Hardening is the judge scorer's (docs/judge.md): both replies and the prompt
are inserted once, in one pass, with runs of `<<<`/`>>>` neutralised; the
verdict is parsed against the closed set (`A`, `B`, `tie`; case and markup
ignored); anything else is an error, never a default.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from tunegate.core.request import GenerateRequest
from tunegate.scorers.judge import (
    RAW_CHARS,
    JudgeOptions,
    JudgeScorer,
    RubricFile,
    RubricLabel,
    UnparseableVerdict,
    check_template,
    clip,
    fill_template,
    neutralise,
    parse_label,
)

#: the closed label set of every pairwise rubric: answer A better, answer B better, no real difference
PAIR_LABELS = ("a", "b", "tie")
DEFAULT_PAIRWISE_RUBRIC = "pairwise-preference"
PAIR_PLACEHOLDERS = ("instructions", "definitions", "labels", "prompt", "reply_a", "reply_b", "answer_format")


class PairwiseRubric(RubricFile):
    """A pairwise judge rubric file (`kind: pairwise`): data only, unknown keys rejected."""

    what: ClassVar[str] = "pairwise judge rubric"

    kind: Literal["pairwise"]
    description: str = ""
    labels: list[RubricLabel] = Field(min_length=3, max_length=3)
    instructions: str = Field(min_length=1)
    template: str = Field(min_length=1)
    answer_format: str = Field(min_length=1)

    @classmethod
    def shape_problem(cls, data: Any) -> str | None:
        """A file without `kind: pairwise` is refused as a whole, not field by field (a single-reply rubric, say)."""
        if not isinstance(data, dict) or data.get("kind") != "pairwise":
            return ("not a pairwise rubric (a pairwise rubric is a YAML mapping with `kind: pairwise`, "
                    "labels a / b / tie and {reply_a} / {reply_b} in its template)")
        return None

    @model_validator(mode="after")
    def _consistent(self) -> PairwiseRubric:
        names = sorted(lab.name for lab in self.labels)
        if names != sorted(PAIR_LABELS):
            raise ValueError(f"labels: a pairwise rubric has exactly the labels a, b and tie (got {', '.join(names)})")
        check_template(self.template, PAIR_PLACEHOLDERS, ("reply_a", "reply_b"), delimiter_example=False)
        return self

    @property
    def label_names(self) -> tuple[str, ...]:
        return tuple(lab.name for lab in self.labels)


def load_pairwise_rubric(ref: str) -> tuple[PairwiseRubric, Path]:
    """A shipped pairwise rubric by name or a user's YAML by path, validated (a UserError naming file and key)."""
    return PairwiseRubric.load(ref)


def render_pair_prompt(rubric: PairwiseRubric, reply_a: str, reply_b: str, prompt: str | None) -> str:
    """The judge's prompt for one ordered pair: one pass over the template, untrusted text neutralised."""
    values = {
        "instructions": rubric.instructions.strip(),
        "definitions": "\n".join(f"- {lab.name.upper() if lab.name != 'tie' else 'tie'}: {' '.join(lab.definition.split())}"
                                 for lab in rubric.labels),
        "labels": "A, B, tie",
        "answer_format": rubric.answer_format.strip(),
        "prompt": neutralise(prompt) if prompt is not None else "(the request was not recorded)",
        "reply_a": neutralise(reply_a),
        "reply_b": neutralise(reply_b),
    }
    return fill_template(rubric.template, values)


class PairVerdict(BaseModel):
    """One ordered judgement: the label (`a`, `b`, `tie`) or why there is none; the raw output and whether it was cached."""

    model_config = ConfigDict(extra="forbid")

    label: Literal["a", "b", "tie"] | None = None
    error: str | None = None
    raw: str = ""
    cached: bool = False
    chars_cut: int = 0


class PairwiseJudgeOptions(JudgeOptions):
    """The judge scorer's options; only the default rubric differs (a pairwise one)."""

    rubric: str = Field(default=DEFAULT_PAIRWISE_RUBRIC, description="a shipped pairwise rubric name or a path to one")


class PairwiseJudge(JudgeScorer):
    """The judge scorer with a pairwise rubric: `judge_pairs` labels ordered (A, B) pairs of replies."""

    Options = PairwiseJudgeOptions

    def _use_rubric(self) -> None:
        """A pairwise rubric instead of the parent's single-reply one; one output, the pair's label."""
        self.pair_rubric, self.rubric_file = load_pairwise_rubric(self.options.rubric)
        self.rubric_record = self.pair_rubric.record(str(self.rubric_file))
        setattr(self, "outputs", ("pair_label",))  # noqa: B010 - mypy refuses assigning a ClassVar on an instance

    @classmethod
    def check(cls, options: Any) -> None:
        """The pairwise rubric loads and the judge's backend accepts the spec (nothing loads)."""
        load_pairwise_rubric(options.rubric)
        cls.check_judge(options, "judge")

    def describe(self) -> dict[str, Any]:
        return {"scorer": "judge", "options": self.options.model_dump(mode="json"), "rubric": self.rubric_record,
                "labels": list(PAIR_LABELS), "judge": self.judge_identity(), "generation": self.generation()}

    def score_texts(self, texts: list[str], prompts: list[str | None] | None = None) -> list[list[Any]]:
        raise TypeError("a pairwise judge labels pairs of replies: call judge_pairs")

    def judge_pairs(self, pairs: list[tuple[str | None, str, str]]) -> list[PairVerdict]:
        """One verdict per (prompt, reply A, reply B), in order; every failure is an error verdict, never a label."""
        if self.backend is None:
            self.load()
        from tunegate.core.cache import cache_key

        o = self.options
        planned: list[tuple[GenerateRequest, int]] = []
        for prompt, a, b in pairs:
            ra, ca = clip(a or "", o.max_reply_chars)
            rb, cb = clip(b or "", o.max_reply_chars)
            pr, cp = clip(prompt, o.max_reply_chars) if prompt is not None else (None, 0)
            req = GenerateRequest(prompt=render_pair_prompt(self.pair_rubric, ra, rb, pr), max_new_tokens=o.max_new_tokens,
                                  temperature=0.0, seed=o.seed)
            planned.append((req, ca + cb + cp))
        answers = self._answers([req for req, _ in planned])
        fp, settings = self.backend.fingerprint(), self.backend.cache_settings()
        out = []
        for req, cut in planned:
            resp = answers[cache_key(fp, settings, req)]
            v = PairVerdict(cached=bool(resp.cached), chars_cut=cut)
            err = self._response_error(resp)
            if err is not None:
                v.error = err
            else:
                v.raw = (resp.text or "")[:RAW_CHARS]
                try:
                    v.label = parse_label(resp.text or "", PAIR_LABELS)  # type: ignore[assignment]
                except UnparseableVerdict as exc:
                    v.error = f"judge output unparseable: {exc}; raw output: {v.raw!r}"
            out.append(v)
        return out
