"""Which scorer plugins produced the results a report shows, read from the results only.

Why a module of its own: the Limitations section (`report.context`) and the
scorer-validity summary (`report.summary`) both need the answer and must give
the same one, and neither may import the other for it (that was an import
cycle). The answer comes from `SuiteResult.scorers`, which the runner records
per suite. Results written before that record existed (schema 1) are not
guessed at from suite definitions or score names: a scorer a score itself
declares (`details["scorer"]`) is named, and any other suite is reported as
"scorer not recorded".
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from tunegate.core.results import RunResult, SuiteResult

#: samples read per suite for the scorer names scores declare (a scorer declares itself on every score it makes)
DECLARED_SAMPLES = 50


@dataclass(frozen=True)
class ScorersUsed:
    """`names`: every scorer plugin behind these results; `unrecorded`: suites whose scorers the results do not say."""

    names: list[str] = field(default_factory=list)
    unrecorded: list[str] = field(default_factory=list)


def declared_scorers(suite: SuiteResult) -> set[str]:
    """Scorer names the suite's scores declare in `details["scorer"]` (the judge and embedding scorers do)."""
    return {str(sc.details["scorer"]) for r in suite.samples[:DECLARED_SAMPLES] for sc in r.scores
            if isinstance(sc.details.get("scorer"), str)}


def suite_scorers(suite: SuiteResult) -> set[str] | None:
    """The scorer names behind one suite's scores: recorded ones plus declared ones; None when neither says."""
    declared = declared_scorers(suite)
    if suite.scorers is None:
        return declared or None
    return {s.name for s in suite.scorers} | declared


def scorers_used(runs: Mapping[str, RunResult | None]) -> ScorersUsed:
    """The scorers behind every suite of `runs` (runs that were not found count for nothing)."""
    names: set[str] = set()
    unrecorded: set[str] = set()
    for run in runs.values():
        for suite in run.suites if run else []:
            found = suite_scorers(suite)
            if found is None:
                unrecorded.add(suite.name)
            else:
                names |= found
    return ScorersUsed(names=sorted(names), unrecorded=sorted(unrecorded))


def not_recorded_text(suites: list[str]) -> str:
    """The sentence the report gives for suites whose results do not say which scorers produced their scores."""
    return ("Scorer not recorded for suite(s) " + ", ".join(suites) + ": these results were written by a tunegate "
            "that did not record the scorers behind each suite (results schema 1), so their scorers' limitations and "
            "measured agreement with human labels are not stated here; re-run the suites to record them.")
