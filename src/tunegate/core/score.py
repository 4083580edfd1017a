"""`Score`: one named per-sample value produced by a suite or a scorer.

A score is either a number (bools are stored as 0/1 so metrics can average them)
or an error. Safety scorers fail closed: when a classifier cannot score a text
the score carries `error`, and the sample ends as errored, never as "safe" or 0.
"""

from __future__ import annotations

import math
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class Score(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    value: float | None = None
    error: str | None = None
    details: dict[str, Any] = Field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """Usable in a metric: no error and a finite value (NaN or inf is never averaged in)."""
        return self.error is None and self.value is not None and math.isfinite(self.value)


def score_value(name: str, value: float | bool, **details: Any) -> Score:
    """A successful score; bools become 1.0/0.0 so they average into rates."""
    return Score(name=name, value=float(value), details=details)


def score_error(name: str, error: str) -> Score:
    """A score that could not be computed (fail closed)."""
    return Score(name=name, value=None, error=error)
