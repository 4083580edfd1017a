"""The gate's one status vocabulary and its one severity order.

Why one module: the order used to exist in five copies that disagreed (one put
`incomplete` before `fail`, another after), so the same verdict was listed in
different orders in the report, the Markdown summary and the audit's
recommendation. The order here is the one the exit code follows: missing
evidence (`incomplete`, exit 3) outranks a failed rule (`fail`, exit 1), which
outranks a rule that could not be shown to hold (`inconclusive`), which
outranks `pass`. A sample's own state (scored, errored, skipped) is a
different thing and is `tunegate.core.results.SampleStatus`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Literal, TypeVar, get_args

Status = Literal["pass", "inconclusive", "fail", "incomplete"]

#: least to most severe; `worst` and every "worst first" listing follow it
SEVERITY: tuple[Status, ...] = get_args(Status)

#: how each status is written where a reader scans for it (terminal, summary, report badge)
WORDS: dict[Status, str] = {"pass": "PASS", "inconclusive": "INCONCLUSIVE", "fail": "FAIL", "incomplete": "INCOMPLETE"}

T = TypeVar("T")


def severity(status: Status) -> int:
    """0 for pass up to 3 for incomplete."""
    return SEVERITY.index(status)


def worst(statuses: Iterable[Status], default: Status = "pass") -> Status:
    """The most severe of `statuses` (`default` when there are none)."""
    return max(statuses, key=severity, default=default)


def worst_first(items: Sequence[T], status: Callable[[T], Status]) -> list[T]:
    """`items` ordered most severe first; equal statuses keep their order."""
    return sorted(items, key=lambda item: -severity(status(item)))
