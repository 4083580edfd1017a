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
import math
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

    `truncated_tokens` is how many input tokens the backend had to drop to fit
    the model's window: for generation, prompt tokens cut from the left so the
    full `max_new_tokens` budget fits; for log-likelihood, context tokens the
    first continuation token could not condition on (scoring a continuation
    longer than the window in rolling windows is the documented method, not
    truncation). 0 means the model saw the whole input.
    """

    model_config = ConfigDict(extra="forbid")

    kind: Literal["loglikelihood", "generate"]
    loglikelihood: float | None = None
    is_greedy: bool | None = None
    n_tokens: int | None = None
    text: str | None = None
    finish_reason: Literal["stop", "length", "eos", "error"] | None = None
    error: str | None = None
    truncated_tokens: int = Field(default=0, ge=0)
    cached: bool = False

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def truncated(self) -> bool:
        return self.truncated_tokens > 0


class InvalidResponse(ValueError):
    """A response that carries no usable value (see `response_problem`); its message is the reason."""


def response_problem(response: Response) -> str | None:
    """Why a response without an error still cannot be used, or None when it can.

    A log-likelihood must be a finite number: a diverged model gives NaN, and
    the JSON cache used to store that NaN as null. A generation must carry
    text. No caller may turn a missing value into a number.
    """
    if response.error is not None:
        return None
    if response.kind == "loglikelihood":
        ll = response.loglikelihood
        if ll is None:
            return "no log-likelihood in the response"
        if not math.isfinite(ll):
            return f"non-finite log-likelihood ({ll}): the model's outputs are not finite"
    elif response.text is None:
        return "no generated text in the response"
    return None


def checked(response: Response) -> Response:
    """The response itself when usable, else an error response with the reason (never cached, never scored).

    The runner applies this to every backend answer and every cache hit, so a
    diverged model's NaN or an old cache entry holding null ends as an errored
    sample instead of an invented score.
    """
    why = response_problem(response)
    if why is None:
        return response
    return response.model_copy(update={"error": why, "finish_reason": "error", "loglikelihood": None,
                                       "is_greedy": None})


def finite_loglikelihoods(responses: list[Response], expected: int | None = None) -> list[float]:
    """The responses' log-likelihoods as finite floats, or `InvalidResponse` with the reason.

    Suites that compare log-likelihoods call this instead of `float(r.loglikelihood or 0.0)`:
    on `InvalidResponse` they return score errors for the sample, so it ends as errored.
    """
    if expected is not None and len(responses) != expected:
        raise InvalidResponse(f"expected {expected} log-likelihood responses, got {len(responses)}")
    out: list[float] = []
    for r in responses:
        if r.error is not None:
            raise InvalidResponse(r.error)
        why = response_problem(r) if r.kind == "loglikelihood" else "a generation response where a log-likelihood was expected"
        if why is not None or r.loglikelihood is None:
            raise InvalidResponse(why or "no log-likelihood in the response")
        out.append(float(r.loglikelihood))
    return out
