"""The pairwise section of a suite card: wins, ties, losses, position flips, breakdowns, human ratings.

Why a module of its own: the metric table already shows `win_rate` and its
interval; a reader of a preference suite also needs the raw counts, how often
the judge's verdict changed with the order (position bias), the win rate per
length bucket (judges favour longer answers) and, when people rated the same
pairs, their figures, their agreement with each other and with the judge.
Everything is computed here; the template only places it.
"""

from __future__ import annotations

from typing import Any

from tunegate.compare.models import CandidateComparison, SuiteComparison
from tunegate.compare.pairwise_models import OutcomeCounts
from tunegate.core.format import fmt


def _interval(ci: tuple[float | None, float | None]) -> str:
    return "" if ci[0] is None or ci[1] is None else f"[{fmt(ci[0])}, {fmt(ci[1])}]"


def counts_row(name: str, c: OutcomeCounts) -> dict[str, Any]:
    """One table row: counts and the three rates with their intervals, as text."""
    return {"name": name, "n": c.n, "wins": c.wins, "ties": c.ties, "losses": c.losses, "errored": c.errored,
            "flipped": c.flipped, "win_rate": fmt(c.win_rate), "win_ci": _interval(c.win_ci),
            "tie_rate": fmt(c.tie_rate), "split": fmt(c.win_rate_ties_split), "split_ci": _interval(c.ties_split_ci)}


def pairwise_rows(per_cand: list[tuple[CandidateComparison, SuiteComparison | None]]) -> list[dict[str, Any]]:
    """One block per candidate whose suite comparison carries a pairwise record."""
    out = []
    for c, cs in per_cand:
        pw = cs.pairwise if cs else None
        if pw is None:
            continue
        human = None
        if pw.human is not None:
            h = pw.human
            human = {"raters": ", ".join(h.raters), "n_ratings": h.n_ratings, "row": counts_row("human raters", h.counts),
                     "kappa": fmt(h.kappa), "kappa_method": {"cohen": "Cohen's", "fleiss": "Fleiss'"}.get(h.kappa_method or "", ""),
                     "kappa_pairs": h.kappa_pairs, "kappa_raters": h.kappa_raters,
                     "judge_agreement": fmt(h.judge_agreement), "judge_kappa": fmt(h.judge_kappa),
                     "judge_pairs": h.judge_pairs, "note": h.note}
        out.append({
            "label": c.model.label,
            "judge": str(pw.judge.get("model") or "(not loaded)"),
            "rubric": f"{pw.rubric.get('name', '?')} v{pw.rubric.get('version', '?')}" if pw.rubric else "(none)",
            "rubric_sha": str(pw.rubric.get("sha256", ""))[:12],
            "error": pw.error,
            "rows": [counts_row("all pairs", pw.counts)]
                    + [counts_row(f"category {k}", v) for k, v in pw.by_category.items()]
                    + [counts_row(f"candidate answer {k}", v) for k, v in pw.by_length.items() if v.n or v.errored],
            "tolerance": f"{100 * pw.length_tolerance:.0f}%",
            "human": human,
        })
    return out
