"""The compare, gate and report commands: read files at the boundary, then compare, decide and render in memory.

`tunegate compare` / `tunegate gate` read the run results once, pass them to the
comparison and on to the renderer; `tunegate report DIR` reads a saved
comparison.json and the run results it references (for the example explorer)
and renders the set again without recomputing any statistic.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from tunegate.compare.comparison import compare_runs, load_runs
from tunegate.compare.models import CompareSettings, Comparison
from tunegate.compare.pairwise import metric_names as pairwise_metric_names
from tunegate.core.config import Policy
from tunegate.core.errors import TunegateError
from tunegate.core.results import RunResult
from tunegate.core.verdict import Verdict
from tunegate.gate.verdict import check_metric_names, evaluate_policy, load_policy
from tunegate.report import write_outputs


def runs_for_report(comparison: Comparison, folder: Path | None) -> dict[str, RunResult | None]:
    """Run results by model label; a missing or unreadable file gives None (the explorer then shows ids only)."""
    out: dict[str, RunResult | None] = {}
    for info in [comparison.base, *(c.model for c in comparison.candidates)]:
        run = None
        if info.results_path:
            p = Path(info.results_path)
            tries = [p] + ([folder / p.name, folder / p.parent.name / p.name] if folder else [])
            for cand in tries:
                if cand.is_file():
                    try:
                        run = RunResult.load(cand)
                        break
                    except TunegateError:
                        continue
        out[info.label] = run
    return out


def card_from_folder(folder: Path, out: Path, candidate: str | None = None) -> dict[str, Path]:
    """`tunegate card AUDIT_DIR --out DIR`: read the audit's complete report set (else exit 2) and write the card."""
    from tunegate.report.card import write_card

    comparison = Comparison.load(Path(folder))
    return write_card(comparison, out, runs_for_report(comparison, Path(folder)), candidate)


def rerender(folder: Path, scorer_validations: list[Path] | None = None) -> tuple[Comparison, dict[str, Path]]:
    """Re-render every output from `folder/comparison.json` (statistics are not recomputed).

    The folder must hold a complete set (its marker vouches for comparison.json), else a UserError (exit 2).
    `scorer_validations` (validate-scorer files), when given, replace the ones attached before.
    """
    folder = Path(folder)
    comparison = Comparison.load(folder)
    if scorer_validations:
        from tunegate.compare.scorer_validation import load_scorer_validations

        comparison.scorer_validations = load_scorer_validations(scorer_validations)
    return comparison, write_outputs(comparison, folder, runs_for_report(comparison, folder))


def runs_by_label(comparison: Comparison, base_run: RunResult, cand_runs: list[RunResult]) -> dict[str, RunResult | None]:
    """The runs as the renderer takes them: by the model labels the comparison gave them."""
    return {comparison.base.label: base_run,
            **{c.model.label: r for c, r in zip(comparison.candidates, cand_runs, strict=True)}}


def compare_and_write(base: Path, candidates: list[Path], out: Path, settings: CompareSettings | None = None) -> Comparison:
    """`tunegate compare`: read the runs, compare, write the four outputs."""
    base_run, cand_runs = load_runs(base, candidates)
    comparison = compare_runs(base_run, cand_runs, settings, base_path=base, candidate_paths=list(candidates))
    write_outputs(comparison, out, runs_by_label(comparison, base_run, cand_runs))
    return comparison


def gate_runs(policy: Policy, policy_path: Path, policy_sha256: str, base_run: RunResult, cand_runs: list[RunResult],
              *, base_path: Path | None = None, candidate_paths: Sequence[Path | None] | None = None, strict: bool = False,
              settings: CompareSettings | None = None) -> tuple[Comparison, Verdict]:
    """Compare runs already in memory and decide: what `tunegate gate` and `tunegate audit` both do."""
    known = {*base_run.metric_names(), *(n for r in cand_runs for n in r.metric_names())}
    known |= set(pairwise_metric_names(base_run))  # added by the comparison, where both runs' answers are judged
    check_metric_names(policy, known, str(policy_path))  # unknown names fail fast, before the bootstrap
    # the report's intervals use the policy's confidence; rules with their own level are recomputed (exactly, or from the same resamples)
    settings = (settings or CompareSettings()).model_copy(update={"confidence": policy.confidence})
    comparison = compare_runs(base_run, cand_runs, settings, base_path=base_path,
                              candidate_paths=list(candidate_paths) if candidate_paths is not None else None)
    verdict = evaluate_policy(policy, comparison, strict=strict, source=str(policy_path),
                              policy_path=str(policy_path), policy_sha256=policy_sha256)
    return comparison, verdict


def gate_files(policy_path: Path, base: Path, candidates: list[Path], *, strict: bool = False,
               settings: CompareSettings | None = None) -> tuple[Comparison, Verdict, dict[str, RunResult | None]]:
    """`tunegate gate` without writing: read and validate the policy (exit 2 before any statistics), read the runs,
    compare, decide; returns the runs by label for the renderer."""
    policy, digest = load_policy(policy_path)
    base_run, cand_runs = load_runs(base, candidates)
    comparison, verdict = gate_runs(policy, policy_path, digest, base_run, cand_runs, base_path=base,
                                    candidate_paths=[*candidates], strict=strict, settings=settings)
    return comparison, verdict, runs_by_label(comparison, base_run, cand_runs)


def gate_and_write(policy: Path, base: Path, candidates: list[Path], out: Path, *, strict: bool = False,
                   settings: CompareSettings | None = None) -> tuple[Comparison, Verdict]:
    """`tunegate gate`: validate the policy, compare, decide, write the four outputs."""
    comparison, verdict, runs = gate_files(policy, base, candidates, strict=strict, settings=settings)
    write_outputs(comparison, out, runs)
    return comparison, verdict
