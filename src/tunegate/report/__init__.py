"""Renderers: report.html, comparison.json, junit.xml and summary.md, all from one `Comparison`.

`write_outputs` writes the whole set atomically; `rerender` reads a saved
comparison.json (and the run results it references, for the example explorer)
and writes the set again, which is what `tunegate report DIR` does.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from tunegate.compare import Comparison
from tunegate.io import atomic_write_text
from tunegate.results import RunResult

if TYPE_CHECKING:
    from tunegate.compare import CompareSettings
    from tunegate.gate import Verdict

OUTPUTS = ("report.html", "comparison.json", "junit.xml", "summary.md")


def write_outputs(comparison: Comparison, out: Path, runs: Mapping[str, RunResult | None] | None = None) -> dict[str, Path]:
    """Write the four outputs under `out`; `runs` (by label) are read from the comparison's paths when not given."""
    from tunegate.report.context import build_context, load_runs
    from tunegate.report.html import render_html
    from tunegate.report.junit import render_junit
    from tunegate.report.markdown import render_summary

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if runs is None:
        runs = load_runs(comparison, out)
    paths = {name: out / name for name in OUTPUTS}
    comparison.save(paths["comparison.json"])
    atomic_write_text(paths["junit.xml"], render_junit(comparison))
    atomic_write_text(paths["summary.md"], render_summary(comparison, runs))
    atomic_write_text(paths["report.html"], render_html(build_context(comparison, runs)))
    return paths


def rerender(folder: Path) -> tuple[Comparison, dict[str, Path]]:
    """Re-render every output from `folder/comparison.json` (statistics are not recomputed)."""
    comparison = Comparison.load(Path(folder))
    return comparison, write_outputs(comparison, Path(folder))


def compare_and_write(base: Path, candidates: list[Path], out: Path, settings: CompareSettings | None = None) -> Comparison:
    """`tunegate compare`: read the runs, compare, write the four outputs."""
    from tunegate.compare import compare_runs, load_runs

    base_run, cand_runs = load_runs(base, candidates)
    comparison = compare_runs(base_run, cand_runs, settings, base_path=base, candidate_paths=list(candidates))
    runs = {comparison.base.label: base_run, **{c.model.label: r for c, r in zip(comparison.candidates, cand_runs, strict=True)}}
    write_outputs(comparison, out, runs)
    return comparison


def gate_and_write(policy: Path, base: Path, candidates: list[Path], out: Path, *, strict: bool = False,
                   settings: CompareSettings | None = None) -> tuple[Comparison, Verdict]:
    """`tunegate gate`: validate the policy, compare, decide, write the four outputs."""
    from tunegate.gate import gate_files

    comparison, verdict = gate_files(policy, base, candidates, strict=strict, settings=settings)
    write_outputs(comparison, out)
    return comparison, verdict


def describe_verdict(verdict: Verdict) -> list[str]:
    """Lines for the terminal: the verdict, then each candidate's rules."""
    lines = [f"verdict: {verdict.headline} (exit {verdict.exit_code})"]
    for cv in verdict.candidates:
        lines.append(f"  {cv.candidate}: {cv.status}")
        lines += [f"    {o.status:<12} {o.metric} {o.kind} {o.threshold:g}: {o.reason}" for o in cv.outcomes]
        lines += [f"    incomplete   {w}" for w in cv.incomplete if not any(w.startswith(f'{o.metric}:') for o in cv.outcomes)]
    return lines
