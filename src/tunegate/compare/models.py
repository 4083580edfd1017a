"""The comparison's records: `Comparison` and what it holds, from creation to rendering.

`tunegate.compare.comparison` computes them from two or more `RunResult`s; the
gate adds its `Policy` and `Verdict`, the audit its `AuditRecord`, all typed;
the renderers read them. comparison.json is `Comparison.to_json()`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr

from tunegate.compare import stats
from tunegate.compare.pairwise_models import PairwiseSummary
from tunegate.compare.scorer_validation import ScorerValidation
from tunegate.core.config import Policy
from tunegate.core.io import atomic_write_text, read_json_model
from tunegate.core.metric import Direction, MetricKind
from tunegate.core.report_marker import REPORT_MARKER, verify_report_set
from tunegate.core.verdict import AuditRecord, Verdict

COMPARISON_SCHEMA_VERSION = 1
# a continuous metric with fewer paired samples gives no test: the percentile bootstrap's coverage
# falls well under its nominal level on a handful of samples (docs/gate-statistics.md)
MIN_PAIRS_CONTINUOUS = 20


class CompareSettings(BaseModel):
    """How the statistics were computed (shown in the report's methods section)."""

    model_config = ConfigDict(extra="forbid")

    confidence: float = Field(default=0.95, gt=0.5, lt=1.0)
    n_resamples: int = Field(default=stats.DEFAULT_RESAMPLES, ge=100)
    seed: int = 0
    top_k: int = Field(default=10, ge=0, description="examples kept per metric in each of regressed/improved")
    allow_suite_mismatch: bool = Field(
        default=False, description="compare suites whose config hash, data hash or version differ (recorded and shown in red)")


class ExampleDelta(BaseModel):
    """One sample's per-sample metric value on both sides."""

    model_config = ConfigDict(extra="forbid")

    sample_id: str
    base: float
    candidate: float
    delta: float


class MetricComparison(BaseModel):
    """One metric, base vs candidate, over the samples both runs scored.

    `delta` is candidate minus base (raw units); `gain` turns it into "positive
    is better" using the direction. `unavailable` says why no statistic exists
    (a scorer was unavailable, no paired samples, the metric is missing on one side).
    """

    model_config = ConfigDict(extra="forbid")

    suite: str
    metric: str
    direction: Direction
    kind: MetricKind
    aggregation: str
    description: str = ""
    base_reported: float | None = None
    candidate_reported: float | None = None
    base_value: float | None = None
    candidate_value: float | None = None
    delta: float | None = None
    confidence: float = 0.95
    ci_low: float | None = None
    ci_high: float | None = None
    base_ci: tuple[float | None, float | None] = (None, None)
    candidate_ci: tuple[float | None, float | None] = (None, None)
    test: Literal["mcnemar-exact", "paired-permutation", "none"] = "none"
    p_value: float | None = None
    # how the intervals were computed: "exact" (Clopper-Pearson for each value, Tango's continuity-corrected
    # score interval for the paired delta; pass/fail metrics), "bootstrap" (seeded paired percentile
    # bootstrap; continuous metrics) or "none"
    interval_method: Literal["exact", "bootstrap", "none"] = "none"
    # pass/fail metrics: the paired table {n, base_ones, candidate_ones, up, down} the exact statistics use
    binary_counts: dict[str, int] | None = None
    discordant_worse: int | None = None
    discordant_better: int | None = None
    n_paired: int = 0
    n_unpaired: int = 0
    n_regressed: int = 0
    n_improved: int = 0
    n_unchanged: int = 0
    regressed: list[ExampleDelta] = Field(default_factory=list)
    improved: list[ExampleDelta] = Field(default_factory=list)
    unavailable: str | None = None
    note: str | None = None

    _boot: stats.Bootstrap | None = PrivateAttr(default=None)

    @property
    def name(self) -> str:
        return f"{self.suite}/{self.metric}"

    @property
    def sign(self) -> float:
        """+1 when higher is better (or neutral), -1 when lower is better."""
        return -1.0 if self.direction == "lower" else 1.0

    @property
    def counts(self) -> stats.PairedCounts | None:
        """The paired 0/1 table of a pass/fail metric (None for continuous metrics)."""
        return stats.PairedCounts(**self.binary_counts) if self.binary_counts else None

    def delta_interval(self, confidence: float) -> tuple[float | None, float | None]:
        """The delta interval at `confidence` (exact for pass/fail metrics; else from the kept resamples)."""
        if self.counts is not None:
            return stats.tango_interval(self.counts, confidence)
        if self._boot is not None and abs(confidence - self.confidence) > 1e-12:
            return self._boot.delta_interval(confidence)
        return self.ci_low, self.ci_high

    def candidate_interval(self, confidence: float) -> tuple[float | None, float | None]:
        if self.counts is not None:
            return stats.clopper_pearson(self.counts.candidate_ones, self.counts.n, confidence)
        if self._boot is not None and abs(confidence - self.confidence) > 1e-12:
            return self._boot.candidate_interval(confidence)
        return self.candidate_ci

    def undecidable(self, which: Literal["candidate", "delta"]) -> str | None:
        """Why no one-sided test exists for the candidate value or the delta (None when one does)."""
        if self.counts is not None:
            return None
        if self._boot is None:
            return self.note or "no per-sample statistics were kept (re-run compare)"
        if self.n_paired < MIN_PAIRS_CONTINUOUS:
            return (f"only {self.n_paired} paired samples: the bootstrap needs at least {MIN_PAIRS_CONTINUOUS} "
                    "before its interval means anything")
        if self._boot.degenerate(which):
            return "every bootstrap resample gave the same value: a zero-width interval is not evidence"
        return None

    def pvalues(self, which: Literal["candidate", "delta"], theta0: float) -> tuple[float, float] | None:
        """One-sided p-values (above theta0, below theta0) for the candidate value or the delta, consistent
        with the intervals: exact binomial / Tango score for pass/fail metrics, bootstrap for continuous ones."""
        counts = self.counts
        if counts is not None:
            if which == "candidate":
                return stats.binomial_pvalues(counts.candidate_ones, counts.n, theta0)
            return stats.tango_pvalues(counts, theta0)
        if self.undecidable(which) is not None or self._boot is None:
            return None
        return self._boot.pvalues(which, theta0)

    def standard_error(self, which: Literal["base", "candidate", "delta"]) -> float | None:
        """Bootstrap standard error (continuous metrics; None when there are no resamples)."""
        return self._boot.se(which) if self._boot is not None else None


class SuiteComparison(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    kind: str
    version: str
    candidate_version: str
    description: str = ""
    source: str = ""
    content_warning: bool = False
    data_hash: str = ""
    candidate_data_hash: str = ""
    # where the base's rows came from (Hub id, config, split, commit; lm-eval task and version), as its results say
    data_source: dict[str, Any] | None = None
    config_hash: str = ""
    candidate_config_hash: str = ""
    # what differs between the two runs' suite (config hash, data hash, version); only non-empty when
    # the comparison was made with allow_suite_mismatch, otherwise such a pair is refused
    mismatch: list[str] = Field(default_factory=list)
    n_samples: int = 0
    counts_base: dict[str, int] = Field(default_factory=dict)
    counts_candidate: dict[str, int] = Field(default_factory=dict)
    metrics: list[MetricComparison] = Field(default_factory=list)
    warnings: list[str] = Field(default_factory=list)
    # `pairwise` suites only: the judge's verdict on every pair, the breakdowns and any human ratings (compare/pairwise.py)
    pairwise: PairwiseSummary | None = None

    def error_rate(self, side: Literal["base", "candidate"]) -> float:
        """Errored share of the samples that were meant to be scored (skipped ones excluded)."""
        c = self.counts_base if side == "base" else self.counts_candidate
        denom = c.get("scored", 0) + c.get("errored", 0)
        return c.get("errored", 0) / denom if denom else 0.0

    def metric(self, name: str) -> MetricComparison | None:
        return next((m for m in self.metrics if m.metric == name), None)


class ModelInfo(BaseModel):
    """What the report shows about one run's model: names, hashes, fine-tune origin, provenance."""

    model_config = ConfigDict(extra="forbid")

    label: str
    model: str
    backend: str
    fingerprint: str
    revision: str | None = None
    adapter: str | None = None
    results_path: str = ""
    complete: bool = True
    counts: dict[str, int] = Field(default_factory=dict)
    identity: dict[str, Any] = Field(default_factory=dict)
    finetune: dict[str, Any] | None = None
    provenance: dict[str, Any] = Field(default_factory=dict)

    @property
    def step(self) -> int | None:
        """The training step of a fine-tuned checkpoint, when its manifest gave one."""
        step = (self.finetune or {}).get("step")
        return int(step) if isinstance(step, (int, float)) and not isinstance(step, bool) else None


class CandidateComparison(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: ModelInfo
    suites: list[SuiteComparison] = Field(default_factory=list)

    def metric(self, name: str) -> MetricComparison | None:
        """`suite/metric` lookup."""
        suite, _, metric = name.partition("/")
        s = next((x for x in self.suites if x.name == suite), None)
        return s.metric(metric) if s else None

    def suite(self, name: str) -> SuiteComparison | None:
        return next((x for x in self.suites if x.name == name), None)


class Comparison(BaseModel):
    """The one result object: comparisons, then (after `gate`) the policy and the verdict.

    Assignments are validated, so what the gate and the audit attach is the typed record, never a loose dict.
    """

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    schema_version: int = COMPARISON_SCHEMA_VERSION
    created_at: str = ""
    tunegate_version: str = ""
    settings: CompareSettings = Field(default_factory=CompareSettings)
    base: ModelInfo
    candidates: list[CandidateComparison]
    warnings: list[str] = Field(default_factory=list)
    # decided by tunegate.gate (`evaluate_policy`): the policy applied and its verdict
    policy: Policy | None = None
    verdict: Verdict | None = None
    # added by tunegate.pipeline.audit: the audit's name, config path, recommended candidate and card fields
    audit: AuditRecord | None = None
    # attached by `audit` (scorer_validations:) or `tunegate report --scorer-validation`: measured agreement of scorers
    scorer_validations: list[ScorerValidation] = Field(default_factory=list)

    def metric_names(self) -> list[str]:
        seen: dict[str, None] = {}
        for c in self.candidates:
            for s in c.suites:
                for m in s.metrics:
                    seen.setdefault(m.name, None)
        return list(seen)

    def suite_mismatches(self) -> list[str]:
        """One line per (candidate, suite) compared although its suite settings differ from the base's."""
        return [f"{c.model.label}, suite '{s.name}': {'; '.join(s.mismatch)}"
                for c in self.candidates for s in c.suites if s.mismatch]

    def to_json(self) -> str:
        """The comparison.json text; NaN/inf are refused (a NaN here is a bug, not a value)."""
        return json.dumps(self.model_dump(mode="json"), indent=1, ensure_ascii=False, allow_nan=False) + "\n"

    def save(self, path: Path) -> None:
        """Atomic write of this one file (`tunegate.report.write_outputs` writes the whole report set)."""
        atomic_write_text(path, self.to_json())

    @classmethod
    def load(cls, path: Path) -> Comparison:
        """Read comparison.json; a report folder is read only when its completion marker vouches for it."""
        path = Path(path)
        if path.is_dir() and ((path / "comparison.json").exists() or (path / REPORT_MARKER).exists()):
            verify_report_set(path)
        return read_json_model(path, cls, filename="comparison.json", version=COMPARISON_SCHEMA_VERSION,
                               what="comparison", hint="write one with `tunegate compare` or `tunegate gate`")
