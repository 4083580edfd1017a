"""`RunResult`: one model over its suites, written as schema-versioned JSON.

Everything the report and the comparison need is in here: every sample with its
requests, responses, scores and status; the metrics with their per-sample
vectors; cache counts; provenance. It is written atomically with NaN refused,
and `RunResult.load` reads it back (rejecting an unknown schema version).

Schema versions: 2 added `SuiteResult.scorers` (the scorers behind each
suite's scores). Version 1 files still load; their suites carry
`scorers=None` ("not recorded"), which the report states instead of guessing,
and a loaded run is upgraded in memory to the current version, so saving it
again writes a file that says what it holds.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from tunegate.core.io import atomic_write_text, read_json_model
from tunegate.core.metric import Metric
from tunegate.core.model_spec import ModelSpec
from tunegate.core.redact import redact_secrets
from tunegate.core.request import Request, Response
from tunegate.core.sample import Sample
from tunegate.core.score import Score

SCHEMA_VERSION = 2
#: versions `RunResult.load` reads: 1 is the same shape without `SuiteResult.scorers`
READABLE_SCHEMA_VERSIONS = (1, 2)

#: a sample's own state (the gate's pass/fail vocabulary is `tunegate.core.status.Status`)
SampleStatus = Literal["scored", "errored", "skipped"]


class SampleResult(BaseModel):
    """One sample's full trail. `reason` says why it errored or was skipped.

    `truncated` / `truncated_tokens`: the backend had to cut the sample's input
    to fit the model's window (the most tokens any of its requests lost).
    """

    model_config = ConfigDict(extra="forbid")

    suite: str
    sample: Sample
    status: SampleStatus
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


class ScorerRecord(BaseModel):
    """One scorer plugin behind a suite's scores, as configured for the run.

    Why: the report states each scorer's known limitations and its measured
    agreement with human labels, and must read which scorer that was from
    the results alone (re-reading suite definitions could describe a suite
    that changed since the run). Built by `tunegate.scorers.base.scorer_record`.

    `options` are the scorer's resolved options (defaults filled in), with
    anything that could be a credential replaced (`tunegate.core.redact`),
    here as well as where the record is built, so no record carries a secret.
    `version` is the scorer class's own `version` when it declares one, else
    `sha256:` + a SHA-256 over the class's import path and these options (a
    stable identity of what was configured; the code's version is the run's
    `provenance.tunegate_version` / `libraries`), or `unknown` when the plugin
    could not be imported while recording.
    """

    model_config = ConfigDict(extra="forbid")

    name: str
    options: dict[str, Any] = Field(default_factory=dict)
    version: str

    @field_validator("options")
    @classmethod
    def _no_secrets(cls, value: dict[str, Any]) -> dict[str, Any]:
        redacted: dict[str, Any] = redact_secrets(value)
        return redacted


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
    #: where the data came from when it is more than a local file: a Hub dataset's id, config, split and the
    #: commit read (`tunegate.core.data.LoadedData.origin`); None: a local file (named by data_hash) or not recorded
    data_source: dict[str, Any] | None = None
    counts: dict[str, int] = Field(default_factory=dict)
    truncated: int = Field(default=0, ge=0)
    metrics: list[Metric] = Field(default_factory=list)
    samples: list[SampleResult] = Field(default_factory=list)
    #: the scorer plugins behind these scores ([] when the kind uses none); None: not recorded (schema 1 files)
    scorers: list[ScorerRecord] | None = None

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

    @field_validator("schema_version")
    @classmethod
    def _readable(cls, value: int) -> int:
        """Any readable version is upgraded in memory: what an older file lacks is None ("not recorded")."""
        if value not in READABLE_SCHEMA_VERSIONS:
            raise ValueError(f"results schema version {value!r}; this tunegate reads versions "
                             f"{', '.join(map(str, READABLE_SCHEMA_VERSIONS))}")
        return SCHEMA_VERSION

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
        return read_json_model(path, cls, filename="results.json", version=READABLE_SCHEMA_VERSIONS, what="results",
                               hint="give a results.json written by `tunegate run`")
