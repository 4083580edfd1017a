"""The records a pairwise comparison keeps beside its metrics: every pair's verdicts, breakdowns, human ratings.

Why separate from `compare.models`: these describe one pairwise suite of one
candidate (`SuiteComparison.pairwise`) and are also built by the human-rating
import (`tunegate rate import`), which must produce the same figures as the
judge; keeping them free of the comparison's own types avoids an import cycle.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Outcome = Literal["win", "loss", "tie", "errored"]
Side = Literal["base", "candidate", "tie"]
LengthBucket = Literal["shorter", "similar", "longer"]


class PairOutcome(BaseModel):
    """One prompt: the candidate's result against the base (`win`/`loss`/`tie`/`errored`) and how it was reached.

    `first` is the judge's verdict with A = base, B = candidate; `second` with A = candidate, B = base, both
    translated to the model they favour. `flipped`: the two orders disagreed, so the pair counts as a tie.
    `length_bucket`: the candidate's answer relative to the base's (`tunegate.compare.pairwise.length_bucket`).
    """

    model_config = ConfigDict(extra="forbid")

    sample_id: str
    category: str | None = None
    outcome: Outcome
    first: Side | None = None
    second: Side | None = None
    flipped: bool = False
    base_chars: int | None = None
    candidate_chars: int | None = None
    length_bucket: LengthBucket | None = None
    reason: str | None = None
    #: "answer": a model gave no answer (already errored in its run); "judge": the judge gave no verdict
    error_stage: Literal["answer", "judge"] | None = None

    @property
    def value(self) -> float | None:
        """The candidate's preference score: 1 win, 0.5 tie, 0 loss; None when errored."""
        return {"win": 1.0, "tie": 0.5, "loss": 0.0}.get(self.outcome)


class OutcomeCounts(BaseModel):
    """Wins, ties and losses over a set of pairs, with the three rates and their intervals.

    `win_ci` and `tie_ci` are exact (Clopper-Pearson) intervals on the n judged pairs; `ties_split_ci` is the seeded
    percentile bootstrap of the mean preference score (ties as 1/2), withheld on fewer than 20 pairs.
    """

    model_config = ConfigDict(extra="forbid")

    n: int = 0
    wins: int = 0
    ties: int = 0
    losses: int = 0
    errored: int = 0
    flipped: int = 0
    win_rate: float | None = None
    tie_rate: float | None = None
    loss_rate: float | None = None
    win_rate_ties_split: float | None = None
    win_ci: tuple[float | None, float | None] = (None, None)
    tie_ci: tuple[float | None, float | None] = (None, None)
    ties_split_ci: tuple[float | None, float | None] = (None, None)


class HumanRatings(BaseModel):
    """Human preference ratings of one candidate's pairs in one suite (`tunegate rate import`).

    `counts`: the pairwise figures from the raters' consensus per pair (the modal rating, a tie when the mode is
    shared). `kappa`: agreement between raters on the pairs rated by every one of the `kappa_raters` (Cohen's for
    two raters, Fleiss' for more). `judge_agreement` / `judge_kappa`: the consensus against the judge's verdict on
    the pairs both decided (Cohen's kappa over win / tie / loss).
    """

    model_config = ConfigDict(extra="forbid")

    raters: list[str] = Field(default_factory=list)
    n_ratings: int = 0
    counts: OutcomeCounts = Field(default_factory=OutcomeCounts)
    kappa: float | None = None
    kappa_method: Literal["cohen", "fleiss"] | None = None
    kappa_pairs: int = 0
    kappa_raters: int = 0
    judge_agreement: float | None = None
    judge_kappa: float | None = None
    judge_pairs: int = 0
    note: str | None = None


class PairwiseSummary(BaseModel):
    """Everything behind one candidate's pairwise metrics in one suite: judge, rubric, counts, breakdowns, pairs."""

    model_config = ConfigDict(extra="forbid")

    judge: dict[str, Any] = Field(default_factory=dict)
    rubric: dict[str, Any] = Field(default_factory=dict)
    length_tolerance: float = 0.2
    counts: OutcomeCounts = Field(default_factory=OutcomeCounts)
    by_category: dict[str, OutcomeCounts] = Field(default_factory=dict)
    by_length: dict[str, OutcomeCounts] = Field(default_factory=dict)
    outcomes: list[PairOutcome] = Field(default_factory=list)
    human: HumanRatings | None = None
    error: str | None = None
