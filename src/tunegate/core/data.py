"""Reading suite data rows from JSONL, JSON, CSV or a Hub dataset.

Each row comes back as a `Row` that knows its file and line, so a suite's
loader can raise an error that names file, row and field without threading
that context around by hand.

Suite data stays inside the suite's folder. A data path is resolved through
`..` and every symlink, and must then lie inside the folder of the suite file,
tunegate's shipped suite data, or a folder named in `TUNEGATE_DATA_ROOTS`
(os.pathsep-separated); anything else is a UserError (exit 2) naming the
resolved path. A suite file is data, and data must not be able to read
/etc/passwd into results.json.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import json
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tunegate.core.config import DataSource
from tunegate.core.errors import UserError

_MISSING = object()

#: environment variable: folders (os.pathsep-separated) a suite's data may come from besides the suite's own folder
DATA_ROOTS_ENV = "TUNEGATE_DATA_ROOTS"


def data_roots() -> list[Path]:
    """Folders every suite may read data from: `TUNEGATE_DATA_ROOTS`, then tunegate's shipped suite data."""
    from tunegate.core.shipped import shipped_dir

    roots = [Path(p).expanduser() for p in os.environ.get(DATA_ROOTS_ENV, "").split(os.pathsep) if p.strip()]
    with contextlib.suppress(FileNotFoundError):  # a broken installation: nothing shipped to allow
        roots.append(shipped_dir("suites"))
    return roots


def check_inside(resolved: Path, base_dir: Path, what: str) -> Path:
    """`resolved` (already resolved) when it lies in `base_dir` or an allowed data root, else a UserError naming it."""
    home = base_dir.resolve()
    roots = [home, *(r.resolve() for r in data_roots())]
    if any(resolved == r or resolved.is_relative_to(r) for r in roots):
        return resolved
    raise UserError(
        f"{what} resolves to {resolved}, outside the suite's folder {home} and the allowed data roots; "
        f"move the data into the suite's folder or add its folder to {DATA_ROOTS_ENV} ({os.pathsep!r}-separated folders)"
    )


def resolve_data_path(ref: str | Path, base_dir: Path, what: str = "data.path") -> Path:
    """A path from a suite file (relative to the suite's folder, or absolute) resolved through `..` and symlinks.

    The result must lie inside the suite's folder or an allowed data root
    (`data_roots`); otherwise a UserError (exit 2) names the resolved path.
    Suite kinds that read more files than `data:` (group lists, references)
    resolve them here too.
    """
    path = Path(ref)
    if not path.is_absolute():
        path = base_dir / path
    return check_inside(path.resolve(), base_dir, f"{what} {str(ref)!r}")


@dataclass(frozen=True)
class Row:
    """One raw record plus where it came from; `fields` maps logical names to columns."""

    data: Mapping[str, Any]
    source: str
    line: int
    fields: Mapping[str, str]

    def where(self, field: str | None = None) -> str:
        loc = f"{self.source}: data row {self.line}"
        if field is not None:
            col = self.fields.get(field, field)
            loc += f": field '{col}'" if col == field else f": field '{field}' (column '{col}')"
        return loc

    def fail(self, field: str | None, message: str) -> UserError:
        """An error to raise: `file: data row N: field 'x': message`."""
        return UserError(f"{self.where(field)}: {message}")

    def has(self, field: str) -> bool:
        val = self.data.get(self.fields.get(field, field), None)
        return val is not None and val != ""

    def get(self, field: str, typ: type | tuple[type, ...] | None = None, default: Any = _MISSING) -> Any:
        """Value of logical `field`, type-checked; a missing required field is a UserError."""
        col = self.fields.get(field, field)
        if col not in self.data or self.data[col] is None:
            if default is not _MISSING:
                return default
            raise self.fail(field, "is missing")
        val = self.data[col]
        if typ is not None:
            if typ is int and isinstance(val, str) and val.strip().lstrip("-").isdigit():
                val = int(val)
            if typ is str and isinstance(val, (int, float)) and not isinstance(val, bool):
                val = str(val)
            if not isinstance(val, typ) or (typ is int and isinstance(val, bool)):
                tname = typ.__name__ if isinstance(typ, type) else "/".join(t.__name__ for t in typ)
                raise self.fail(field, f"expected {tname}, got {type(val).__name__} {str(val)[:40]!r}")
        return val


def iter_jsonl(path: Path, unit: str = "data row") -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, object) for every non-blank line; a bad line is a UserError naming `unit` and its number."""
    with path.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise UserError(f"{path}: {unit} {lineno}: invalid JSON ({exc.msg} at column {exc.colno})") from None
            if not isinstance(obj, dict):
                raise UserError(f"{path}: {unit} {lineno}: expected a JSON object, got {type(obj).__name__}")
            yield lineno, obj


def _iter_json(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise UserError(f"{path}: invalid JSON at line {exc.lineno}: {exc.msg}") from None
    if isinstance(obj, dict):
        # {"data": [...]} or a single top-level list under one key
        lists = [v for v in obj.values() if isinstance(v, list)]
        if len(lists) != 1:
            raise UserError(f"{path}: expected a JSON list of objects (or an object holding exactly one list)")
        obj = lists[0]
    if not isinstance(obj, list):
        raise UserError(f"{path}: expected a JSON list of objects")
    for i, row in enumerate(obj, start=1):
        if not isinstance(row, dict):
            raise UserError(f"{path}: data row {i}: expected a JSON object, got {type(row).__name__}")
        yield i, row


def _iter_csv(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    with path.open(encoding="utf-8", newline="") as fh:
        reader = csv.DictReader(fh)
        for i, row in enumerate(reader, start=1):
            yield i, {(k or "").strip(): v for k, v in row.items()}


_READERS = {"jsonl": iter_jsonl, "json": _iter_json, "csv": _iter_csv}


def _format_of(path: Path, declared: str) -> str:
    if declared != "auto":
        return declared
    suffix = path.suffix.lower().lstrip(".")
    if suffix in ("jsonl", "ndjson"):
        return "jsonl"
    if suffix in _READERS:
        return suffix
    raise UserError(f"{path}: cannot tell the data format from the extension; set data.format to jsonl, json or csv")


def read_rows(source: DataSource, base_dir: Path, fields: Mapping[str, str]) -> tuple[list[Row], str]:
    """All rows of `source` and a SHA-256 content hash of the data (file bytes or Hub fingerprint)."""
    if source.path is not None:
        path = resolve_data_path(source.path, base_dir)
        if not path.is_file():
            raise UserError(f"{path}: data file not found (data.path is resolved relative to the suite file)")
        fmt = _format_of(path, source.format)
        if fmt not in _READERS:
            raise UserError(f"{path}: unknown data.format {fmt!r}; use jsonl, json or csv")
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        rows = [Row(d, str(path), n, fields) for n, d in _READERS[fmt](path)]
    else:
        hf = source.hf or ""
        local = Path(hf).expanduser()
        if local.is_absolute() or hf.startswith((".", "~")) or local.exists():
            # datasets.load_dataset reads a local folder or file named in place of a Hub id: the same rule applies
            check_inside(local.resolve(), base_dir, f"data.hf {hf!r} (a local path)")
        rows, digest = _read_hub(source, fields)
    if source.limit is not None:
        rows = rows[: source.limit]
    if not rows:
        raise UserError(f"{source.path or source.hf}: the data has no rows")
    return rows, digest


def _read_hub(source: DataSource, fields: Mapping[str, str]) -> tuple[list[Row], str]:
    """Load a Hub dataset split (network only when not cached and HF_HUB_OFFLINE is unset)."""
    import datasets  # heavy; only when a Hub dataset is named

    try:
        ds = datasets.load_dataset(source.hf, source.config, split=source.split)
    except Exception as exc:  # noqa: BLE001 - any loader failure is a user-facing input problem
        raise UserError(
            f"{source.hf}: could not load split {source.split!r} ({type(exc).__name__}: {str(exc).splitlines()[0][:160]}); "
            "check the dataset id, config and split, or download it first / point data.path at a local file"
        ) from None
    label = f"{source.hf}[{source.split}]"
    rows = [Row(dict(r), label, i, fields) for i, r in enumerate(ds, start=1)]
    return rows, getattr(ds, "_fingerprint", "") or hashlib.sha256(label.encode()).hexdigest()
