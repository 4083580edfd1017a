"""One exception type for user-facing failures, carrying its documented exit code.

Tracebacks are for bugs; anything a user can fix (bad config, bad data, a missing
model folder) raises `UserError` with a one-line message naming file, row, field
and the fix. The CLI prints `error: <message>` and exits with `exit_code`.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """Exit codes shared by every command (DESIGN.md: rules that hold everywhere)."""

    PASS = 0
    GATE_FAILED = 1
    BAD_INPUT = 2
    INCOMPLETE = 3


class TunegateError(Exception):
    """Base class: a failure a person can act on, with its exit code."""

    exit_code: ExitCode = ExitCode.INCOMPLETE

    def __init__(self, message: str, exit_code: ExitCode | None = None) -> None:
        super().__init__(message)
        self.message = message
        if exit_code is not None:
            self.exit_code = exit_code

    def __str__(self) -> str:
        return self.message


class UserError(TunegateError):
    """Bad configuration or input: exit 2, raised before any model loads."""

    exit_code = ExitCode.BAD_INPUT


class IncompleteError(TunegateError):
    """A run could not complete (infrastructure, a scorer unavailable): exit 3."""

    exit_code = ExitCode.INCOMPLETE


class MissingDependencyError(UserError):
    """An optional plugin dependency is not installed; the message names the pip command."""

    def __init__(self, package: str, extra: str | None = None, purpose: str = "") -> None:
        cmd = f"pip install 'tunegate[{extra}]'" if extra else f"pip install {package}"
        why = f" (needed for {purpose})" if purpose else ""
        super().__init__(f"the optional package '{package}' is not installed{why}; run: {cmd}")
        self.package = package
