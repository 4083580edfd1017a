"""The report set's completion marker: which files one write of the set produced, and their SHA-256.

Why a marker: report.html, comparison.json, junit.xml and summary.md are read
together (a CI reads the exit code and junit.xml, a reviewer the HTML). A kill
between two file renames must never leave a FAIL comparison next to an older
PASS report that a reader accepts. `tunegate.report.write_outputs` removes the
marker first and writes it last; every reader checks it.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from tunegate.core.errors import UserError

REPORT_MARKER = ".complete"


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def verify_report_set(folder: Path, *, require_all: bool = False) -> dict[str, str]:
    """Check `folder/.complete` against the report files; returns {file name: sha256}.

    The marker is written last and removed first by every write of the set, so
    its absence means a write was interrupted (or an older tunegate wrote the
    folder). Every listed file that is present must match its hash, and
    comparison.json must be present: a mix of two writes is never accepted.
    A derived file deleted by hand (report.html...) is tolerated unless
    `require_all`, since `tunegate report` writes it again from comparison.json.
    """
    folder = Path(folder)
    marker = folder / REPORT_MARKER

    def refuse(why: str) -> UserError:
        return UserError(f"{folder}: incomplete report set ({why}); rerun the tunegate compare, gate or audit "
                         "command that wrote it")

    if not marker.is_file():
        raise refuse("no completion marker: a write was interrupted, or an older tunegate wrote this folder")
    try:
        raw = json.loads(marker.read_text(encoding="utf-8"))
        files = raw["files"]
        if not isinstance(files, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in files.items()):
            raise TypeError("files")
    except (OSError, ValueError, KeyError, TypeError):
        raise refuse(f"unreadable {REPORT_MARKER} marker") from None
    if "comparison.json" not in files:
        raise refuse(f"the {REPORT_MARKER} marker does not list comparison.json")
    for name, digest in sorted(files.items()):
        if name != Path(name).name or name in ("", ".", ".."):
            raise refuse(f"the {REPORT_MARKER} marker lists a path, not a file name: {name!r}")
        p = folder / name
        if not p.is_file():
            if require_all or name == "comparison.json":
                raise refuse(f"{name} is missing")
            continue
        if file_sha256(p) != digest:
            raise refuse(f"{name} does not match the completed set")
    return dict(files)
