"""Renderers: report.html, comparison.json, junit.xml and summary.md, all from one `Comparison`.

`write_outputs` writes the whole set as one unit: every file is rendered in
memory, written and fsynced into a temporary folder `out/.report-<random>/`,
then the completion marker `out/.complete` is removed, each file is moved into
place with `os.replace`, and a new marker listing the SHA-256 of every file is
moved in last. A write killed at any point leaves either the previous complete
set or a folder without a valid marker, which every reader refuses
(`Comparison.load`, `tunegate report DIR`); the next write removes the stray
temporary folder. `rerender` reads a saved comparison.json (and the run results
it references, for the example explorer) and writes the set again, which is
what `tunegate report DIR` does.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from tunegate.compare import Comparison
from tunegate.report_marker import REPORT_MARKER
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
    # render everything first: a rendering failure leaves the previous set untouched
    texts = {
        "report.html": render_html(build_context(comparison, runs, out)),
        "comparison.json": comparison.to_json(),
        "junit.xml": render_junit(comparison),
        "summary.md": render_summary(comparison, runs),
    }
    write_report_set(out, {name: texts[name].encode("utf-8") for name in OUTPUTS})
    return {name: out / name for name in OUTPUTS}


TEMP_PREFIX = ".report-"
# temp files that older versions' per-file atomic writes could leave behind when killed
_STRAY_FILE = re.compile(r"^\.(?:report\.html|comparison\.json|junit\.xml|summary\.md|complete)\..+\.tmp$")


def _fsync_dir(folder: Path) -> None:
    """Make renames in `folder` durable (a no-op where directories cannot be opened, e.g. Windows)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _write_synced(path: Path, data: bytes) -> None:
    with open(path, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


def remove_stray_temps(out: Path) -> None:
    """Remove what an interrupted write left in `out`: `.report-*` temp folders and `.<output>.*.tmp` files."""
    for child in Path(out).iterdir():
        if child.name.startswith(TEMP_PREFIX) and child.is_dir() and not child.is_symlink():
            shutil.rmtree(child, ignore_errors=True)
        elif _STRAY_FILE.match(child.name) and (child.is_file() or child.is_symlink()):
            with contextlib.suppress(FileNotFoundError):
                child.unlink()


def write_report_set(out: Path, files: Mapping[str, bytes]) -> None:
    """Replace the report set in `out` by `files` so that no reader ever accepts a mix of two writes.

    Order: write + fsync every file into a temp folder inside `out`; remove the
    completion marker (the old set stops being complete); `os.replace` each
    file into place; move in the new marker (file name -> SHA-256) last.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    remove_stray_temps(out)
    tmp = Path(tempfile.mkdtemp(prefix=TEMP_PREFIX, dir=out))
    try:
        for name, data in files.items():
            _write_synced(tmp / name, data)
        marker = {"schema_version": 1, "files": {name: hashlib.sha256(data).hexdigest() for name, data in files.items()}}
        _write_synced(tmp / REPORT_MARKER, (json.dumps(marker, indent=1, sort_keys=True) + "\n").encode("utf-8"))
        _fsync_dir(tmp)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(out / REPORT_MARKER)
        _fsync_dir(out)
        for name in files:
            os.replace(tmp / name, out / name)
        _fsync_dir(out)
        os.replace(tmp / REPORT_MARKER, out / REPORT_MARKER)
        _fsync_dir(out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def rerender(folder: Path, scorer_validations: list[Path] | None = None) -> tuple[Comparison, dict[str, Path]]:
    """Re-render every output from `folder/comparison.json` (statistics are not recomputed).

    The folder must hold a complete set (its marker vouches for comparison.json), else a UserError (exit 2).
    `scorer_validations` (validate-scorer files), when given, replace the ones attached before.
    """
    comparison = Comparison.load(Path(folder))
    if scorer_validations:
        from tunegate.scorer_validation import load_scorer_validations

        comparison.scorer_validations = load_scorer_validations(scorer_validations)
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
