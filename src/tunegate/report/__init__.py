"""Renderers: report.html, comparison.json, junit.xml and summary.md, all from one `Comparison`.

`write_outputs` writes the whole set as one unit: every file is rendered in
memory, written and fsynced into a temporary folder `out/.report-<random>/`,
then the completion marker `out/.complete` is removed, each file is moved into
place with `os.replace`, and a new marker listing the SHA-256 of every file is
moved in last. A write killed at any point leaves either the previous complete
set or a folder without a valid marker, which every reader refuses
(`Comparison.load`, `tunegate report DIR`); the next write removes the stray
temporary folder. Reading files is the pipeline's job (`tunegate.pipeline.commands`):
this package renders what it is handed.
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

from tunegate.compare.models import Comparison
from tunegate.core.report_marker import REPORT_MARKER
from tunegate.core.results import RunResult

OUTPUTS = ("report.html", "comparison.json", "junit.xml", "summary.md")


def write_outputs(comparison: Comparison, out: Path, runs: Mapping[str, RunResult | None]) -> dict[str, Path]:
    """Render the four outputs from `comparison` and the `runs` behind it (by model label; a missing run shows the
    example explorer with sample ids only) and write them under `out` as one set."""
    from tunegate.report.context import build_context
    from tunegate.report.html import render_html
    from tunegate.report.junit import render_junit
    from tunegate.report.markdown import render_summary

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
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
