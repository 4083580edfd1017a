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

import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from tunegate.core.config import format_validation_error
from tunegate.core.errors import UserError
from tunegate.core.request import GenerateRequest
from tunegate.scorers.base import Scorer
from tunegate.scorers.judge import (
    RAW_CHARS,
    JudgeOptions,
    JudgeScorer,
    RubricLabel,
    UnparseableVerdict,
    clip,
    neutralise,
    parse_label,
    rubric_path,
)

#: the closed label set of every pairwise rubric: answer A better, answer B better, no real difference
PAIR_LABELS = ("a", "b", "tie")
DEFAULT_PAIRWISE_RUBRIC = "pairwise-preference"
PAIR_PLACEHOLDERS = ("instructions", "definitions", "labels", "prompt", "reply_a", "reply_b", "answer_format")
_SLOT = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


class PairwiseRubric(BaseModel):
    """A pairwise judge rubric file (`kind: pairwise`): data only, unknown keys rejected."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1)
    version: int | str
    kind: Literal["pairwise"]
    description: str = ""
    labels: list[RubricLabel] = Field(min_length=3, max_length=3)
    instructions: str = Field(min_length=1)
    template: str = Field(min_length=1)
    answer_format: str = Field(min_length=1)

    @model_validator(mode="after")
    def _consistent(self) -> PairwiseRubric:
        names = sorted(lab.name for lab in self.labels)
        if names != sorted(PAIR_LABELS):
            raise ValueError(f"labels: a pairwise rubric has exactly the labels a, b and tie (got {', '.join(names)})")
        used = _SLOT.findall(self.template)
        unknown = sorted({u for u in used if u not in PAIR_PLACEHOLDERS})
        if unknown:
            raise ValueError(f"template: unknown placeholder(s) {', '.join('{' + u + '}' for u in unknown)}; "
                             f"allowed: {', '.join('{' + p + '}' for p in PAIR_PLACEHOLDERS)}")
        for slot in ("reply_a", "reply_b"):
            if used.count(slot) != 1:
                raise ValueError(f"template: must contain {{{slot}}} exactly once")
        if used.count("prompt") > 1:
            raise ValueError("template: may contain {prompt} at most once")
        for slot in ("prompt", "reply_a", "reply_b"):
            if slot in used:
                before, after = self.template.split("{" + slot + "}", 1)
                if "<<<" not in before or ">>>" not in after:
                    raise ValueError(f"template: {{{slot}}} must sit between delimiters containing <<< before it and >>> after it")
        return self

    @property
    def label_names(self) -> tuple[str, ...]:
        return tuple(lab.name for lab in self.labels)

    def sha256(self) -> str:
        import hashlib
        import json

        payload = json.dumps(self.model_dump(mode="json"), sort_keys=True, ensure_ascii=False)
        return hashlib.sha256(payload.encode("utf-8")).hexdigest()

    def record(self, source: str) -> dict[str, Any]:
        return {"name": self.name, "version": self.version, "sha256": self.sha256(), "source": source}


def load_pairwise_rubric(ref: str) -> tuple[PairwiseRubric, Path]:
    """A shipped pairwise rubric by name or a user's YAML by path, validated (a UserError naming file and key)."""
    path = rubric_path(ref)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise UserError(f"{path}: cannot read pairwise judge rubric: {exc}") from None
    if not isinstance(data, dict) or data.get("kind") != "pairwise":
        raise UserError(f"{path}: not a pairwise rubric (a pairwise rubric is a YAML mapping with `kind: pairwise`, "
                        "labels a / b / tie and {reply_a} / {reply_b} in its template)")
    try:
        return PairwiseRubric.model_validate(data), path
    except ValidationError as err:
        raise UserError(format_validation_error(str(path), err)) from None


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
    return _SLOT.sub(lambda m: values[m.group(1)], rubric.template)


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

    def __init__(self, **options: Any) -> None:  # noqa: D107 - the parent loads a single-reply rubric; this one a pairwise one
        Scorer.__init__(self, **options)
        self.pair_rubric, self.rubric_file = load_pairwise_rubric(self.options.rubric)
        self.rubric_record = self.pair_rubric.record(str(self.rubric_file))
        setattr(self, "outputs", ("pair_label",))  # noqa: B010 - mypy refuses assigning a ClassVar on an instance
        self.backend = None
        self._memory_cache = None

    @classmethod
    def check(cls, options: Any) -> None:
        """The pairwise rubric loads and the judge's backend accepts the spec (nothing loads)."""
        load_pairwise_rubric(options.rubric)
        from tunegate.backends.base import backend_class

        try:
            backend_class(options.judge).check(options.judge)
        except UserError as err:
            raise UserError(f"judge: {err.message}") from None

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
