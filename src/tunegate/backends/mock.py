"""A scripted backend for fast unit tests and offline demos of the pipeline.

Answers come from a script: exact prompt -> text, substring rules -> text, and
(context, continuation) or continuation -> log-likelihood, with deterministic
defaults for everything unscripted. It can be built in Python
(`MockBackend.scripted(...)`) or from a ModelSpec whose `options.script` names a
YAML/JSON file, so the CLI path is testable too.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from tunegate.backends.base import Backend
from tunegate.core.config import format_validation_error
from tunegate.core.errors import UserError
from tunegate.core.model_spec import ModelSpec
from tunegate.core.request import GenerateRequest, LoglikelihoodRequest, Response


class MockScript(BaseModel):
    model_config = ConfigDict(extra="forbid")

    generations: dict[str, str] = Field(default_factory=dict, description="exact prompt -> output")
    rules: list[tuple[str, str]] = Field(default_factory=list, description="[substring, output]: first match wins")
    default_text: str = ""
    loglikelihoods: dict[str, float] = Field(default_factory=dict, description="'context|||continuation' or continuation -> ll")
    greedy: list[str] = Field(default_factory=list, description="continuations that count as greedy")
    fail_on: list[str] = Field(default_factory=list, description="prompt/continuation substrings that make the backend raise")
    interrupt_after: int | None = Field(default=None, description="raise KeyboardInterrupt after this many forward passes")


def _default_ll(context: str, continuation: str) -> float:
    """Deterministic, length-dependent pseudo log-likelihood for unscripted pairs."""
    h = int(hashlib.sha256(f"{context}\x00{continuation}".encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
    return -0.25 * max(1, len(continuation)) - h


class MockBackend(Backend):
    name = "mock"

    def __init__(self, spec: ModelSpec, script: MockScript | None = None) -> None:
        super().__init__(spec)
        if script is None:
            script = self._load_script(spec)
        self.script = script

    @classmethod
    def scripted(cls, label: str = "mock", **script: Any) -> MockBackend:
        return cls(ModelSpec(model=label, backend="mock"), MockScript(**script))

    @staticmethod
    def _load_script(spec: ModelSpec) -> MockScript:
        ref = spec.options.get("script")
        if ref is None:
            return MockScript()
        path = Path(ref)
        if not path.is_file():
            raise UserError(f"{path}: mock script not found (options.script)")
        data = yaml.safe_load(path.read_text()) if path.suffix in (".yaml", ".yml") else json.loads(path.read_text())
        try:
            return MockScript.model_validate(data or {})
        except ValidationError as err:
            raise UserError(format_validation_error(str(path), err)) from None

    def fingerprint(self) -> str:
        # failure injection does not change answers, so it is not part of the identity
        answers = self.script.model_dump(exclude={"interrupt_after", "fail_on"})
        payload = json.dumps({"model": self.spec.model, "script": answers}, sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()

    def settings(self) -> dict[str, Any]:
        return {"backend": self.name, "device": "cpu"}

    def _tick(self, text: str) -> None:
        self.forward_passes += 1
        if self.script.interrupt_after is not None and self.forward_passes > self.script.interrupt_after:
            raise KeyboardInterrupt("mock interrupt")
        for bad in self.script.fail_on:
            if bad in text:
                raise RuntimeError(f"scripted failure on {bad!r}")

    def loglikelihood(self, requests: list[LoglikelihoodRequest]) -> list[Response]:
        out = []
        for r in requests:
            self._tick(r.context + r.continuation)
            lls = self.script.loglikelihoods
            ll = lls.get(f"{r.context}|||{r.continuation}", lls.get(r.continuation))
            if ll is None:
                ll = _default_ll(r.context, r.continuation)
            out.append(Response(kind="loglikelihood", loglikelihood=float(ll), is_greedy=r.continuation in self.script.greedy,
                                n_tokens=max(1, len(r.continuation.split()))))
        return out

    def generate(self, requests: list[GenerateRequest]) -> list[Response]:
        out = []
        for r in requests:
            self._tick(r.prompt)
            text = self.script.generations.get(r.prompt)
            if text is None:
                text = next((t for sub, t in self.script.rules if sub in r.prompt), self.script.default_text)
            finish: Literal["stop", "length", "eos"] = "length"
            for s in r.stop:
                if s and s in text:
                    text, finish = text[: text.index(s)], "stop"
            words = text.split(" ")
            if len(words) > r.max_new_tokens:
                text, finish = " ".join(words[: r.max_new_tokens]), "length"
            elif finish != "stop":
                finish = "eos"
            out.append(Response(kind="generate", text=text, n_tokens=len(words), finish_reason=finish))
        return out
