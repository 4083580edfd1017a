"""`Sample`: one dataset row after loading and validation.

Nothing past a suite's loader sees a raw dict: a loader validates each row and
builds a `Sample`, so an error names the file, the row and the field once, early.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class Sample(BaseModel):
    """One evaluation item.

    `input` is the prompt or question; `target` is the reference text (or several
    references); for multiple choice, `choices` holds the options and `answer` the
    index of the correct one. Suite-specific facts (group, category, pair id, the
    true answers of TruthfulQA MC2...) live in `metadata`.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str
    input: str
    target: str | list[str] | None = None
    choices: list[str] | None = None
    answer: int | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)
