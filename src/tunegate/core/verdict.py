"""The gate's records: each rule's outcome, each candidate's verdict, the overall `Verdict`, and the audit's record.

Why here, under core, while the deciding lives in `tunegate.gate`: a
`Comparison` carries its verdict from creation to rendering as these typed
models (compare, the renderers and the card all read them), and those stages
sit below or beside the gate. Only data and its wording live here.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from tunegate.core.config import CardFields
from tunegate.core.format import fmt
from tunegate.core.status import WORDS, Status


class RuleOutcome(BaseModel):
    """One rule on one candidate: the numbers it was decided on and why.

    `ci_low`/`ci_high`: the two-sided interval at `confidence` of what the rule tests (the candidate's
    value for min/max, the delta for the others); its ends are the one-sided bounds the rule uses.
    `p_value`: the raw one-sided p-value of the FAIL test ("the rule is violated"), `p_holm` the same
    after Holm across the candidate's rules; `p_pass` the one-sided p-value of the PASS test ("the
    rule holds"; no adjustment, see the module docstring). `method`: "exact" (Clopper-Pearson /
    Tango score) or "bootstrap". `n`: the paired samples it was decided on. `detectable_80` /
    `detectable_95`: the smallest regression (metric units, in the metric's bad direction from the
    base's value) this rule would have failed with 80% / 95% probability at that n (None: not even
    the largest possible one); `holm_family`: the number of rules in its Holm family.
    """

    model_config = ConfigDict(extra="forbid")

    metric: str
    kind: str
    threshold: float
    confidence: float
    description: str = ""
    status: Status
    reason: str
    value: float | None = None
    delta: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    p_value: float | None = None
    p_holm: float | None = None
    p_pass: float | None = None
    method: str = ""
    n: int = 0
    holm_family: int = 0
    detectable_80: float | None = None
    detectable_95: float | None = None

    @property
    def label(self) -> str:
        return f"{self.metric} {self.kind} {fmt(self.threshold)}"


class CandidateVerdict(BaseModel):
    model_config = ConfigDict(extra="forbid")

    candidate: str
    status: Status
    outcomes: list[RuleOutcome] = Field(default_factory=list)
    #: every reason the evidence is incomplete: the error-budget breaches below, then each incomplete rule's reason
    incomplete: list[str] = Field(default_factory=list)
    #: suites whose share of errored samples is above the policy's `max_error_rate` (one sentence each)
    error_budget: list[str] = Field(default_factory=list)

    @model_validator(mode="before")
    @classmethod
    def _split_old_record(cls, data: Any) -> Any:
        """Comparisons written before `error_budget` existed kept both kinds in `incomplete`; a rule's own reason
        starts with its metric name, so the rest are the error-budget breaches (the reader for the old schema)."""
        if isinstance(data, dict) and "error_budget" not in data and data.get("incomplete"):
            metrics = {o.get("metric") if isinstance(o, dict) else o.metric for o in data.get("outcomes", [])}
            data = {**data, "error_budget": [w for w in data["incomplete"]
                                             if not any(str(w).startswith(f"{m}:") for m in metrics)]}
        return data


class Verdict(BaseModel):
    """The gate's decision over every candidate, with its exit code."""

    model_config = ConfigDict(extra="forbid")

    status: Status
    strict: bool = False
    exit_code: int
    policy_name: str = ""
    policy_path: str = ""
    policy_sha256: str = ""
    multiplicity: str = ""
    candidates: list[CandidateVerdict] = Field(default_factory=list)

    @property
    def explanation(self) -> str:
        """One sentence on what the overall status means."""
        return {
            "pass": "Every rule holds for every candidate at its stated confidence.",
            "fail": "At least one rule fails for at least one candidate.",
            "inconclusive": "No rule fails, but at least one could not be shown to hold on these samples.",
            "incomplete": "The evidence is incomplete (errored samples above the allowed share, or a metric without a value).",
        }[self.status]

    @property
    def headline(self) -> str:
        word = WORDS[self.status]
        if self.status == "inconclusive":
            tail = "strict mode: treated as a failure" if self.strict else "not strict: exit 0, but nothing was shown to hold"
            return f"{word} ({tail})"
        return word

    def describe(self) -> list[str]:
        """Lines for the terminal: the verdict, then each candidate's rules and error-budget breaches."""
        lines = [f"verdict: {self.headline} (exit {self.exit_code})"]
        for cv in self.candidates:
            lines.append(f"  {cv.candidate}: {cv.status}")
            lines += [f"    {o.status:<12} {o.metric} {o.kind} {o.threshold:g}: {o.reason}" for o in cv.outcomes]
            lines += [f"    incomplete   {w}" for w in cv.error_budget]
        return lines


class Recommendation(BaseModel):
    """The audit's pick among the passing candidates: the largest gain on one task metric, and why not the others."""

    model_config = ConfigDict(extra="forbid")

    candidate: str | None
    metric: str | None
    gain: float | None = None
    reason: str
    rejected: dict[str, str] = Field(default_factory=dict)


class AuditRecord(BaseModel):
    """What `tunegate audit` adds to a comparison: which audit it was, its pick, and the provider's card fields."""

    model_config = ConfigDict(extra="forbid")

    name: str
    description: str = ""
    config: str
    recommendation: Recommendation | None = None
    card: CardFields = Field(default_factory=CardFields)
    grid_intensity_g_per_kwh: float | None = None
