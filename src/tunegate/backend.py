"""`Backend`: serves one model. Suites never see it; only the runner calls it.

A backend answers a whole list of requests of one type in one call and is free
to sort, batch and deduplicate inside it; it must return responses in request
order and its answers must not depend on batch size or padding side.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar

from tunegate.model_spec import ModelSpec
from tunegate.request import GenerateRequest, LoglikelihoodRequest, Response


class Backend(ABC):
    """Base class for `tunegate.backends` plugins.

    Subclasses set `name`, implement the two request methods, `fingerprint`
    (identity of the weights: the cache key and the report's hash) and
    `settings` (everything besides the weights that changes an answer: dtype,
    max length, chat template...). `forward_passes` counts model calls so tests
    can prove a cached run computes nothing.
    """

    name: ClassVar[str] = ""
    #: request types the backend can answer; the runner skips the others with a reason
    supports: ClassVar[frozenset[str]] = frozenset({"loglikelihood", "generate"})

    def __init__(self, spec: ModelSpec) -> None:
        self.spec = spec
        self.forward_passes = 0
        #: request kind -> why this model cannot answer it (shown in the skip reason)
        self.unsupported_reasons: dict[str, str] = {}

    @classmethod  # noqa: B027 - optional hook: backends with nothing to check keep the no-op
    def check(cls, spec: ModelSpec) -> None:
        """Validate the spec cheaply before anything loads (missing folder...); raise UserError."""

    @abstractmethod
    def fingerprint(self) -> str:
        """SHA-256 identifying the served weights (and tokenizer)."""

    def settings(self) -> dict[str, Any]:
        """Backend settings that change answers; part of the cache key."""
        return {"backend": self.name}

    def identity(self) -> dict[str, Any]:
        """What the report shows about the model (no secrets)."""
        return {"backend": self.name, "model": self.spec.model, "fingerprint": self.fingerprint()}

    @abstractmethod
    def loglikelihood(self, requests: list[LoglikelihoodRequest]) -> list[Response]:
        """Summed log P(continuation | context) for each request, in order."""

    @abstractmethod
    def generate(self, requests: list[GenerateRequest]) -> list[Response]:
        """Generated text for each request, in order, stop strings removed."""

    def close(self) -> None:  # noqa: B027 - optional hook: backends holding nothing keep the no-op
        """Release the model (GPU memory); the default does nothing."""
