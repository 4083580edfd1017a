"""`RunResult`: one model over its suites, written as schema-versioned JSON.

Everything the report and the comparison need is in here: every sample with its
requests, responses, scores and status; the metrics with their per-sample
vectors; cache counts; provenance. It is written atomically with NaN refused,
and `RunResult.load` reads it back (rejecting an unknown schema version).
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from tunegate.io import atomic_write_text, read_json_model
from tunegate.metric import Metric
from tunegate.model_spec import ModelSpec
from tunegate.request import Request, Response
from tunegate.sample import Sample
from tunegate.score import Score

SCHEMA_VERSION = 1

Status = Literal["scored", "errored", "skipped"]


class SampleResult(BaseModel):
    """One sample's full trail. `reason` says why it errored or was skipped.

    `truncated` / `truncated_tokens`: the backend had to cut the sample's input
    to fit the model's window (the most tokens any of its requests lost).
    """

    model_config = ConfigDict(extra="forbid")

    suite: str
    sample: Sample
    status: Status
    reason: str | None = None
    requests: list[Request] = Field(default_factory=list)
    responses: list[Response] = Field(default_factory=list)
    scores: list[Score] = Field(default_factory=list)
    truncated: bool = False
    truncated_tokens: int = Field(default=0, ge=0)

    @property
    def id(self) -> str:
        return self.sample.id

    def score(self, name: str) -> float | None:
        """The value of score `name`, or None when absent or errored."""
        for s in self.scores:
            if s.name == name:
                return s.value if s.ok else None
        return None


class SuiteResult(BaseModel):
    """One suite's samples and metrics. `counts` are scored/errored/skipped; `truncated` counts the samples
    whose input was cut to fit the model's window (they are still scored unless the suite sets
    `truncation: error`)."""

    model_config = ConfigDict(extra="forbid")

    name: str
    kind: str
    version: str
    description: str = ""
    source: str = ""
    content_warning: bool = False
    data_hash: str
    config_hash: str
    counts: dict[str, int] = Field(default_factory=dict)
    truncated: int = Field(default=0, ge=0)
    metrics: list[Metric] = Field(default_factory=list)
    samples: list[SampleResult] = Field(default_factory=list)

    def metric(self, name: str) -> Metric | None:
        return next((m for m in self.metrics if m.name == name), None)


class Provenance(BaseModel):
    model_config = ConfigDict(extra="allow")

    tunegate_version: str
    git_commit: str | None = None
    python: str
    platform: str
    libraries: dict[str, str] = Field(default_factory=dict)
    device: str = "cpu"
    seed: int = 0
    config: dict[str, Any] = Field(default_factory=dict)
    config_hash: str = ""
    started_at: str = ""
    finished_at: str = ""
    timings: dict[str, float] = Field(default_factory=dict)
    # a uuid4 per run, so `compare` can refuse a run compared with itself (None in files written before it existed)
    run_id: str | None = None


class RunResult(BaseModel):
    model_config = ConfigDict(extra="forbid")

    schema_version: int = SCHEMA_VERSION
    model: ModelSpec
    model_fingerprint: str
    model_identity: dict[str, Any] = Field(default_factory=dict)
    complete: bool = True
    suites: list[SuiteResult] = Field(default_factory=list)
    cache: dict[str, int] = Field(default_factory=lambda: {"hits": 0, "computed": 0})
    provenance: Provenance

    def suite(self, name: str) -> SuiteResult | None:
        return next((s for s in self.suites if s.name == name), None)

    def counts(self) -> dict[str, int]:
        """Scored/errored/skipped totals over all suites."""
        total: Counter[str] = Counter()
        for s in self.suites:
            total.update(s.counts)
        return dict(total)

    def metric_names(self) -> list[str]:
        """Every metric as `suite/metric`, the name policies refer to."""
        return [f"{s.name}/{m.name}" for s in self.suites for m in s.metrics]

    def save(self, path: Path) -> None:
        """Atomic write; NaN/inf are refused (a NaN reaching here is a bug). A run without a run id gets one here."""
        if not self.provenance.run_id:
            import uuid

            self.provenance.run_id = uuid.uuid4().hex
        payload = self.model_dump(mode="json")
        text = json.dumps(payload, indent=1, ensure_ascii=False, allow_nan=False)
        atomic_write_text(path, text + "\n")

    @classmethod
    def load(cls, path: Path) -> RunResult:
        return read_json_model(path, cls, filename="results.json", version=SCHEMA_VERSION, what="results",
                               hint="give a results.json written by `tunegate run`")
