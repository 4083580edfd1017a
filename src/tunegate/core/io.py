"""Atomic file writes: a temp file in the same folder, fsync, then rename.

A reader (or a resumed run) never sees half a file.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Any


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; outputs are shared artifacts
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def check_output_folder(path: Path, what: str = "--out") -> None:
    """Refuse an output folder that cannot be written, before any model loads or trains.

    Why: discovering that `--out` names a file (or a read-only place) after a
    45-second evaluation wastes the run and used to end in a traceback.
    """
    from tunegate.core.errors import UserError

    path = Path(path)
    if path.exists() and not path.is_dir():
        raise UserError(f"{what} {path}: is a file, not a folder; give a folder for the outputs")
    probe = path
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir():
        raise UserError(f"{what} {path}: {probe} is a file, so the folder cannot be created; give another folder")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise UserError(f"{what} {path}: {probe} is not writable; give a folder you can write to")


def read_json_model(path: Path, model: Any, *, filename: str, version: int | tuple[int, ...], what: str,
                    hint: str) -> Any:
    """Read a schema-versioned JSON file (a folder means `folder/filename`) into pydantic `model`.

    `version` is the schema version read, or every version read (a file type
    whose older versions still load, upgraded by `model`'s own validators).
    Every failure is one UserError line naming the file: missing (with `hint`),
    not JSON, a schema version this tunegate does not read, or invalid content.
    """
    import json

    from pydantic import ValidationError

    from tunegate.core.errors import UserError

    path = Path(path)
    if path.is_dir():
        path = path / filename
    if not path.is_file():
        raise UserError(f"{path}: {filename} not found ({hint})")
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: not valid JSON ({exc})") from None
    found = raw.get("schema_version") if isinstance(raw, dict) else None
    versions = version if isinstance(version, tuple) else (version,)
    if found not in versions:
        readable = f"version {versions[0]}" if len(versions) == 1 else f"versions {', '.join(map(str, versions))}"
        raise UserError(f"{path}: {what} schema version {found!r}; this tunegate reads {readable}")
    try:
        return model.model_validate(raw)
    except ValidationError as err:
        first = err.errors()[0]
        raise UserError(f"{path}: invalid {what} file at {'.'.join(map(str, first['loc']))}: {first['msg']}") from None
