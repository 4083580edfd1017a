"""`Metric`: an aggregate over per-sample scores that keeps its per-sample vector.

The vector (keyed by sample id) is what makes paired statistics possible: base
and candidate are aligned on the same ids and resampled together.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from tunegate.core.aggregate import aggregate

Direction = Literal["higher", "lower", "neutral"]
MetricKind = Literal["binary", "continuous"]


class Metric(BaseModel):
    """One number with its definition and evidence.

    `kind` is "binary" when every per-sample value is 0/1 under a mean: `compare`
    then uses exact statistics (Clopper-Pearson intervals for each rate, Tango's
    score interval for the paired change, McNemar's exact test), provided the
    vectors really are 0/1, the aggregation is "mean" and there are no weights
    (else it falls back to the continuous path). Every other metric is
    "continuous" (seeded paired bootstrap, paired permutation test). `direction`
    says which way is better; "neutral" metrics (e.g. a count) are reported but
    only gated with explicit min/max bounds. `n` counts the samples that entered
    the value; `errored` those that should have but could not be scored.
    """

    model_config = ConfigDict(extra="forbid")

    name: str
    value: float | None
    direction: Direction = "higher"
    kind: MetricKind = "continuous"
    aggregation: str = "mean"
    description: str = ""
    n: int = 0
    errored: int = 0
    per_sample: dict[str, float] = Field(default_factory=dict)
    weights: dict[str, float] | None = None

    @classmethod
    def from_values(
        cls,
        name: str,
        values: Mapping[str, float],
        *,
        direction: Direction = "higher",
        kind: MetricKind = "continuous",
        aggregation: str = "mean",
        description: str = "",
        weights: Mapping[str, float] | None = None,
        errored: int = 0,
    ) -> Metric:
        """Build a metric from per-sample values, computing the aggregate once here."""
        ids = list(values)
        vec = [float(values[i]) for i in ids]
        wvec = [float(weights[i]) for i in ids] if weights is not None else None
        raw = float(aggregate(aggregation, vec, wvec)) if ids else float("nan")
        return cls(
            name=name,
            value=None if math.isnan(raw) or math.isinf(raw) else raw,
            direction=direction,
            kind=kind,
            aggregation=aggregation,
            description=description,
            n=len(ids),
            errored=errored,
            per_sample=dict(zip(ids, vec, strict=True)),
            weights=dict(zip(ids, wvec, strict=True)) if wvec is not None else None,
        )
