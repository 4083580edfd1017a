"""`Backend`: serves one model. Suites never see it; only the runner calls it.

A backend answers a whole list of requests of one type in one call and is free
to sort, batch and deduplicate inside it; it must return responses in request
order and its answers must not depend on batch size or padding side.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar

from tunegate.core.model_spec import ModelSpec
from tunegate.core.request import GenerateRequest, LoglikelihoodRequest, Response


class Backend(ABC):
    """Base class for `tunegate.backends` plugins.

    Subclasses set `name`, implement the two request methods, `fingerprint`
    (identity of the weights: the cache key and the report's hash) and
    `settings` (everything besides the weights that changes an answer: dtype,
    max length, chat template...). `forward_passes` counts model calls so tests
    can prove a cached run computes nothing.

    The cache key is built from `cache_settings()`: the backend's `settings()`
    plus `implementation_version` (and, when a backend sets
    `numerics_packages`, that list), so bumping the version retires the
    backend's cached answers (see `tunegate.core.cache`).
    """

    name: ClassVar[str] = ""
    #: request types the backend can answer; the runner skips the others with a reason
    supports: ClassVar[frozenset[str]] = frozenset({"loglikelihood", "generate"})
    #: bump when a change to the backend's code changes its answers: cached answers of older versions are not reused
    implementation_version: ClassVar[str] = "1"
    #: installed packages whose versions change this backend's answers (None: `cache.NUMERICS_PACKAGES`)
    numerics_packages: ClassVar[tuple[str, ...] | None] = None

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
        return {**self.version_settings(), "backend": self.name}

    def cache_settings(self) -> dict[str, Any]:
        """What the response cache keys on: `settings()` plus `version_settings()` (settings' own keys win)."""
        return {**self.version_settings(), **self.settings()}

    def version_settings(self) -> dict[str, Any]:
        """What every `settings()` carries: the implementation version and the backend's numerics packages."""
        out: dict[str, Any] = {"implementation_version": type(self).implementation_version}
        if type(self).numerics_packages is not None:
            out["numerics_packages"] = list(type(self).numerics_packages or ())
        return out

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


def backend_class(spec: ModelSpec) -> type[Backend]:
    """The registered backend class that serves `spec` (`spec.backend`), imported only now."""
    from tunegate.core import plugins

    cls: type[Backend] = plugins.load("backends", spec.backend)
    return cls


def create_backend(spec: ModelSpec) -> Backend:
    """Check the spec, then load the model: what a scorer that needs a model of its own (the judge) calls."""
    cls = backend_class(spec)
    cls.check(spec)
    return cls(spec)
