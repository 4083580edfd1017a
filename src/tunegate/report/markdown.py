"""summary.md: the verdict, the rules table and the top regressions, for a CI job summary or a PR comment.

Model text appears only as short excerpts, with Markdown and HTML
metacharacters escaped, never inside code spans or links; suites with a
content warning contribute no text at all.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from tunegate.compare.models import Comparison
from tunegate.core.format import fmt
from tunegate.core.results import RunResult
from tunegate.core.status import severity
from tunegate.report.context import response_text
from tunegate.report.summary import compute_rows

EXCERPT = 80
_MD_SPECIAL = re.compile(r"([\\`*_\[\]|~])")


def md_escape(text: str, limit: int = EXCERPT) -> str:
    """One line, at most `limit` characters, with HTML entities and Markdown metacharacters escaped."""
    flat = " ".join(str(text).split())
    if len(flat) > limit:
        flat = flat[: limit - 1] + "…"
    flat = flat.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")
    flat = flat.replace(":", "&#58;")  # no autolinks (javascript:, https:) in a PR comment
    return _MD_SPECIAL.sub(r"\\\1", flat)


def render_summary(comparison: Comparison, runs: Mapping[str, RunResult | None] | None = None, top: int = 5) -> str:
    runs = runs or {}
    v = comparison.verdict
    lines = []
    if v:
        lines.append(f"## tunegate gate: {v.headline}")
        lines.append("")
        lines += _mismatch_lines(comparison)
        lines.append(f"Policy **{md_escape(v.policy_name)}**, exit code {v.exit_code}, base **{md_escape(comparison.base.label)}** "
                     f"(fingerprint {comparison.base.fingerprint[:12]}).")
        lines += ["", "| Candidate | Verdict |", "|---|---|"]
        lines += [f"| {md_escape(cv.candidate)} | **{cv.status}** |" for cv in v.candidates]
        for cv in v.candidates:
            lines += [f"\n> Incomplete ({md_escape(cv.candidate)}): {md_escape(w, 300)}" for w in cv.incomplete]
        rec = comparison.audit.recommendation if comparison.audit else None
        if rec:
            who = f"**{md_escape(rec.candidate)}**" if rec.candidate else "**none**"
            lines += ["", f"Recommended candidate: {who} ({md_escape(rec.reason, 300)})."]
        lines += ["", "### Rules", "",
                  "| Candidate | Rule | Result | Observed | Interval | p (Holm) | Detectable (80% / 95%) | Reason |",
                  "|---|---|---|---|---|---|---|---|"]
        for cv in v.candidates:
            for o in cv.outcomes:
                obs = f"value {fmt(o.value)}" if o.kind in ("min", "max") else f"Δ {fmt(o.delta)}"
                p = f"{fmt(o.p_value, 3)} ({fmt(o.p_holm, 3)})" if o.p_value is not None else "–"
                lines.append(f"| {md_escape(cv.candidate)} | {md_escape(o.metric)} {o.kind} {fmt(o.threshold)} | **{o.status}** | {obs} "
                             f"| [{fmt(o.ci_low)}, {fmt(o.ci_high)}] | {p} | {fmt(o.detectable_80)} / {fmt(o.detectable_95)} "
                             f"| {md_escape(o.reason, 300)} |")
    else:
        lines += ["## tunegate compare (no policy, no verdict)", "", *_mismatch_lines(comparison),
                  f"Base **{md_escape(comparison.base.label)}** (fingerprint {comparison.base.fingerprint[:12]})."]
        lines += ["", "| Candidate | Metric | Base | Candidate | Δ [interval] | p |", "|---|---|---|---|---|---|"]
        for c in comparison.candidates:
            for s in c.suites:
                for m in s.metrics:
                    lines.append(f"| {md_escape(c.model.label)} | {md_escape(m.name)} | {fmt(m.base_value)} | {fmt(m.candidate_value)} "
                                 f"| {fmt(m.delta)} [{fmt(m.ci_low)}, {fmt(m.ci_high)}] | {fmt(m.p_value, 3)} |")
    lines += ["", "### Top regressions", ""]
    rows = _regression_rows(comparison, runs, per_metric=3)
    if rows:
        lines += ["| Candidate | Metric | Sample | Base → candidate | Candidate output (excerpt) |", "|---|---|---|---|---|"]
        lines += rows[: top * 3]
    else:
        lines.append("No sample regressed.")
    lines += ["", "### Compute and energy", "", "| Model | Evaluation: device, wall time | Evaluation energy | Fine-tuning |",
              "|---|---|---|---|"]
    for row in compute_rows(comparison):
        ft = row["finetune"]
        ft_text = "-" if ft is None else (ft.get("missing") or f"{ft.get('wall')}, {ft.get('device_hours')} device-hours, "
                                                                 f"energy {ft.get('energy')}")
        lines.append(f"| {md_escape(row['label'])} | {md_escape(row['device'])}, {md_escape(row['eval_wall'])} "
                     f"| {md_escape(row['eval_energy'], 300)} | {md_escape(str(ft_text), 300)} |")
    if comparison.scorer_validations:
        lines += ["", "### Scorer validity (measured)", ""]
        lines += [f"- **{md_escape(v.scorer)}**: {md_escape(v.sentence(), 600)}" for v in comparison.scorer_validations]
    for w in comparison.warnings:
        lines.append(f"\n> Note: {md_escape(w, 300)}")
    lines += ["", "Full evidence: report.html (self-contained), comparison.json, junit.xml."]
    return "\n".join(lines) + "\n"


def _mismatch_lines(comparison: Comparison) -> list[str]:
    """A red CAUTION alert (GitHub renders `> [!CAUTION]` in red) naming every suite compared despite a mismatch."""
    found = comparison.suite_mismatches()
    if not found:
        return []
    lines = ["> [!CAUTION]",
             "> **Suite mismatch**: compared with --allow-suite-mismatch although the suite settings differ; "
             "these numbers may not be comparable and the verdict does not account for it."]
    lines += [f"> - {md_escape(line, 300)}" for line in found]
    return [*lines, ""]


def _regression_rows(comparison: Comparison, runs: Mapping[str, RunResult | None], per_metric: int) -> list[str]:
    """The worst examples of the metrics that matter most: failed, then inconclusive, then other gated rules, then the rest.

    Metrics have different scales (a rate, BLEU), so examples are ranked within a metric, never across metrics.
    """
    v = comparison.verdict
    priority: dict[tuple[str, str], int] = {}
    for cv in v.candidates if v else []:
        for o in cv.outcomes:
            key = (cv.candidate, o.metric)
            priority[key] = min(priority.get(key, 9), -severity(o.status))
    blocks = []
    for ci, c in enumerate(comparison.candidates):
        run = runs.get(c.model.label)
        for s in c.suites:
            sr = run.suite(s.name) if run else None
            index = {r.id: r for r in sr.samples} if sr else {}
            for mi, m in enumerate(s.metrics):
                if not m.regressed:
                    continue
                out = []
                for ex in m.regressed[:per_metric]:
                    if s.content_warning:
                        text = "(content warning: excerpt omitted, see report.html)"
                    else:
                        text = md_escape(response_text(index.get(ex.sample_id))) if index else ""
                    out.append(f"| {md_escape(c.model.label)} | {md_escape(m.name)} | {md_escape(ex.sample_id, 40)} "
                               f"| {fmt(ex.base)} → {fmt(ex.candidate)} | {text} |")
                blocks.append(((priority.get((c.model.label, m.name), 4), ci, mi), out))
    blocks.sort(key=lambda b: b[0])
    return [row for _, out in blocks for row in out]
