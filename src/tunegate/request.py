"""`Request` and `Response`: what a suite asks of a backend and what it answers.

Suites never call a model; they emit requests. The runner pools the requests of
every suite, deduplicates them, serves what it can from the cache and hands each
backend one batched call per request type. A request's `key()` is the content
hash the cache is keyed on (together with the model fingerprint and backend
settings), so it must depend on every field that changes the answer.
"""

from __future__ import annotations

import hashlib
import json
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field


class _RequestBase(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    def key(self) -> str:
        """Stable SHA-256 of the request content (canonical JSON)."""
        payload = json.dumps(self.model_dump(mode="json"), sort_keys=True, ensure_ascii=False)
        return hashlib.sha256(payload.encode("utf-8")).hexdigest()


class LoglikelihoodRequest(_RequestBase):
    """Log P(continuation | context), summed over the continuation's tokens.

    An empty context means "score the whole continuation after the model's BOS
    (or EOS) token", as lm-evaluation-harness does for causal models; a
    continuation longer than the model's window is scored in rolling windows.
    """

    kind: Literal["loglikelihood"] = "loglikelihood"
    context: str
    continuation: str


class GenerateRequest(_RequestBase):
    """Generate from `prompt`: greedy when temperature is 0, seeded sampling otherwise."""

    kind: Literal["generate"] = "generate"
    prompt: str
    max_new_tokens: int = Field(default=64, ge=1)
    stop: tuple[str, ...] = ()
    temperature: float = Field(default=0.0, ge=0.0)
    top_p: float = Field(default=1.0, gt=0.0, le=1.0)
    seed: int = 0


Request = Annotated[LoglikelihoodRequest | GenerateRequest, Field(discriminator="kind")]


class Response(BaseModel):
    """A backend's answer to one request.

    For log-likelihood: `loglikelihood` (nats, summed), `is_greedy` (every
    continuation token is the argmax) and `n_tokens` (continuation tokens, for
    perplexity). For generation: `text` (stop strings removed) and `n_tokens`
    generated. `error` is set when the backend could not answer; the sample then
    ends as errored, never silently scored. `cached` is filled by the runner.
    """

    model_config = ConfigDict(extra="forbid")

    kind: Literal["loglikelihood", "generate"]
    loglikelihood: float | None = None
    is_greedy: bool | None = None
    n_tokens: int | None = None
    text: str | None = None
    finish_reason: Literal["stop", "length", "eos", "error"] | None = None
    error: str | None = None
    cached: bool = False

    @property
    def ok(self) -> bool:
        return self.error is None
