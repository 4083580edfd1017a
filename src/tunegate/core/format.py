"""How numbers are written for people: one place, so the report, the summary, the card and the terminal agree."""

from __future__ import annotations


def fmt(x: float | None, digits: int = 4) -> str:
    """Short human number: 4 significant digits, n/a for None, never "-0"."""
    if x is None:
        return "n/a"
    return f"{x + 0.0 if x != 0 else 0.0:.{digits}g}"


def pct(x: float) -> str:
    """A share as a percentage with 3 significant digits."""
    return f"{100 * x:.3g}%"
