"""Reading suite data rows: local JSONL/JSON/CSV, anything `datasets` reads, or a Hub dataset.

Each row comes back as a `Row` that knows its file and line, so a suite's
loader can raise an error that names file, row and field without threading
that context around by hand.

Two readers, chosen by format. JSONL, JSON and CSV files keep tunegate's own
small readers (stdlib `json`/`csv`): their errors name the file line, rows stay
schema-free (a column may hold a list in one row and a dict in the next, which
an Arrow table refuses), and their data hash stays the SHA-256 of the file
bytes, so results written before `datasets` sources existed still compare.
Everything else (parquet, arrow, a folder of data files, a `save_to_disk`
folder, a Hub dataset) goes through `datasets`, and its data hash is the
SHA-256 of the rows actually used (after `limit`), in canonical JSON: the
same rows give the same hash whichever revision, cache or file layout they
came from, and the Hub commit they came from is recorded beside it
(`LoadedData.origin`).

Offline (`HF_DATASETS_OFFLINE=1` or `HF_HUB_OFFLINE=1`) a Hub dataset is read
from the local datasets cache (`HF_DATASETS_CACHE`), as an earlier online
`load_dataset` left it; a dataset not cached there is exit 2 naming it.

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
import datetime
import hashlib
import json
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
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

    def _lookup(self, col: str) -> Any:
        """The column's value; a mapped column `a.b` that is not itself a column reads key `b` of column `a`.

        Why: Hub datasets nest (`question.stem`, `answers.text`), and the
        mapping lives in the suite YAML as data, not in a kind's code.
        """
        if col in self.data:
            return self.data[col]
        if "." not in col:
            return None
        val: Any = self.data
        for part in col.split("."):
            if isinstance(val, Mapping) and part in val:
                val = val[part]
            elif isinstance(val, list) and part.isdigit() and int(part) < len(val):
                val = val[int(part)]
            else:
                return None
        return val

    def has(self, field: str) -> bool:
        val = self._lookup(self.fields.get(field, field))
        return val is not None and val != ""

    def get(self, field: str, typ: type | tuple[type, ...] | None = None, default: Any = _MISSING) -> Any:
        """Value of logical `field`, type-checked; a missing required field is a UserError."""
        col = self.fields.get(field, field)
        val = self._lookup(col)
        if val is None:
            if default is not _MISSING:
                return default
            raise self.fail(field, "is missing")
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


#: formats read by tunegate's own readers: their data hash is the file's bytes
_READERS = {"jsonl": iter_jsonl, "json": _iter_json, "csv": _iter_csv}
#: single-file formats read through `datasets` (its packaged builder of the same name)
_DATASETS_FORMATS = ("parquet", "arrow")
_FORMATS = (*_READERS, *_DATASETS_FORMATS)
_SHA = re.compile(r"^[0-9a-f]{40}$")


@dataclass(frozen=True)
class LoadedData:
    """A suite's rows, the hash of what they hold, and where they came from.

    `origin` is recorded in the results (`SuiteResult.data_source`): for a Hub
    dataset its id, config, split and the commit the rows were read at, so a
    reviewer can fetch exactly that data again.
    """

    rows: list[Row]
    digest: str
    origin: dict[str, Any] = field(default_factory=dict)


def _format_of(path: Path, declared: str) -> str:
    if declared != "auto":
        return declared
    if path.is_dir():
        return "folder"
    suffix = path.suffix.lower().lstrip(".")
    if suffix in ("jsonl", "ndjson"):
        return "jsonl"
    if suffix in _FORMATS:
        return suffix
    raise UserError(f"{path}: cannot tell the data format from the extension; set data.format to one of "
                    f"{', '.join(_FORMATS)}")


def load_data(source: DataSource, base_dir: Path, fields: Mapping[str, str]) -> LoadedData:
    """All rows of `source` (after `limit`), their content hash and their origin; every failure is a UserError."""
    if source.path is not None:
        path = resolve_data_path(source.path, base_dir)
        if not path.exists():
            raise UserError(f"{path}: data file not found (data.path is resolved relative to the suite file)")
        fmt = _format_of(path, source.format)
        if fmt in _READERS and path.is_file():
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
            rows = [Row(d, str(path), n, fields) for n, d in _READERS[fmt](path)]
            if source.limit is not None:
                rows = rows[: source.limit]
            loaded = LoadedData(rows, digest, {"path": str(path), "format": fmt})
        elif fmt in (*_DATASETS_FORMATS, "folder"):
            loaded = _read_local_with_datasets(path, fmt, source, fields)
        else:
            raise UserError(f"{path}: unknown data.format {fmt!r}; use one of {', '.join(_FORMATS)} (or a folder)")
    else:
        hub = source.hf or ""
        local = Path(hub).expanduser()
        if local.is_absolute() or hub.startswith((".", "~")) or local.exists():
            # datasets.load_dataset reads a local folder or file named in place of a Hub id: the same rule applies
            check_inside(local.resolve(), base_dir, f"data.hub {hub!r} (a local path)")
        loaded = _read_hub(source, fields)
    if not loaded.rows:
        raise UserError(f"{source.path or source.hf}: the data has no rows")
    return loaded


def read_rows(source: DataSource, base_dir: Path, fields: Mapping[str, str]) -> tuple[list[Row], str]:
    """All rows of `source` and their data hash (`load_data` without the origin)."""
    loaded = load_data(source, base_dir, fields)
    return loaded.rows, loaded.digest


# ---- through `datasets` -----------------------------------------------------
def _jsonable(value: Any) -> Any:
    """A JSON stand-in for the non-JSON values Arrow rows may hold (bytes, dates), for hashing only."""
    if isinstance(value, (bytes, bytearray)):
        return {"sha256": hashlib.sha256(value).hexdigest()}
    if isinstance(value, (datetime.date, datetime.datetime, datetime.time)):
        return value.isoformat()
    return repr(value)


def rows_digest(records: Sequence[Mapping[str, Any]]) -> str:
    """SHA-256 over the rows in order, each as canonical JSON (sorted keys): the rows used, not the files."""
    h = hashlib.sha256()
    for rec in records:
        h.update(json.dumps(rec, sort_keys=True, ensure_ascii=False, default=_jsonable, allow_nan=True).encode())
        h.update(b"\n")
    return h.hexdigest()


def _offline() -> bool:
    import datasets.config

    return bool(datasets.config.HF_HUB_OFFLINE)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {(text[0] if text else '')[:200]}"


def _rows_of(ds: Any, source: DataSource, label: str, fields: Mapping[str, str]) -> tuple[list[Row], str]:
    """The first `limit` rows of a `datasets.Dataset` as Rows, and their hash."""
    if source.limit is not None and source.limit < len(ds):
        ds = ds.select(range(source.limit))
    records = ds.to_list()
    return [Row(r, label, i, fields) for i, r in enumerate(records, start=1)], rows_digest(records)


def _split_of(builder: Any, split: str, name: str) -> Any:
    """`builder.as_dataset(split)`, or a UserError listing the splits there are."""
    try:
        return builder.as_dataset(split=split)
    except (ValueError, KeyError) as exc:
        have = ", ".join(sorted(builder.info.splits or {})) or "none"
        raise UserError(f"{name}: could not load split {split!r} ({_first_line(exc)}); splits: {have}; "
                        "set data.split") from None


def _read_local_with_datasets(path: Path, fmt: str, source: DataSource, fields: Mapping[str, str]) -> LoadedData:
    """A parquet/arrow file, a folder of data files or a `save_to_disk` folder, read through `datasets`."""
    import datasets  # heavy; only for the formats tunegate does not read itself

    try:
        if fmt == "folder" and ((path / "state.json").is_file() or (path / "dataset_dict.json").is_file()):
            ds = datasets.load_from_disk(str(path))
            if isinstance(ds, datasets.DatasetDict):
                if source.split not in ds:
                    raise UserError(f"{path}: no split {source.split!r}; splits: {', '.join(sorted(ds))}; set data.split")
                ds = ds[source.split]
            label = str(path) if fmt != "folder" else f"{path}[{source.split}]"
        else:
            if fmt == "folder":
                builder = datasets.load_dataset_builder(str(path))
                split, label = source.split, f"{path}[{source.split}]"
            else:
                builder = datasets.load_dataset_builder(fmt, data_files={"data": str(path)})
                split, label = "data", str(path)
            builder.download_and_prepare()
            ds = _split_of(builder, split, str(path))
    except UserError:
        raise
    except Exception as exc:  # noqa: BLE001 - any reader failure is a problem with the user's data
        raise UserError(f"{path}: could not read as {fmt} through datasets ({_first_line(exc)})") from None
    rows, digest = _rows_of(ds, source, label, fields)
    return LoadedData(rows, digest, {"path": str(path), "format": fmt, "split": source.split if fmt == "folder" else None})


def _read_hub(source: DataSource, fields: Mapping[str, str]) -> LoadedData:
    """A Hub dataset split: from the Hub, or offline from the local datasets cache; the commit read is recorded.

    Why a builder and not `load_dataset`: the builder tells which commit its
    data is (`builder.hash`: the Hub commit online, the cached copy's commit
    offline), so a pinned `revision` is checked against what is actually read.
    """
    import datasets  # heavy; only when a Hub dataset is named

    name = source.hf or ""
    try:
        builder = datasets.load_dataset_builder(name, source.config, revision=source.revision)
    except Exception as exc:  # noqa: BLE001 - any loader failure is a user-facing input problem
        if _offline():
            raise UserError(
                f"dataset {name!r}{f' (config {source.config!r})' if source.config else ''} is not in the local "
                f"datasets cache ({datasets.config.HF_DATASETS_CACHE}) and offline mode is on (HF_DATASETS_OFFLINE "
                f"or HF_HUB_OFFLINE): load it once online, or unset offline mode, or point data.path at a local copy "
                f"({_first_line(exc)})"
            ) from None
        raise UserError(
            f"dataset {name!r}: could not load ({_first_line(exc)}); check the dataset id, config and revision, "
            "or download it first / point data.path at a local file"
        ) from None
    resolved = builder.hash if isinstance(builder.hash, str) else None
    is_hub = not Path(name).expanduser().exists()
    if is_hub and source.revision and _SHA.match(source.revision) and resolved != source.revision:
        where = "the local datasets cache holds" if _offline() else "the Hub served"
        raise UserError(f"dataset {name!r}: revision {source.revision} is pinned but {where} {resolved}; "
                        "go online once to fetch the pinned revision, or change data.revision")
    try:
        builder.download_and_prepare()
    except Exception as exc:  # noqa: BLE001
        raise UserError(f"dataset {name!r}: could not prepare ({_first_line(exc)})") from None
    ds = _split_of(builder, source.split, f"dataset {name!r}")
    label = f"{name}[{source.split}]"
    rows, digest = _rows_of(ds, source, label, fields)
    origin: dict[str, Any] = {"hub": name, "config": builder.config.name, "split": source.split}
    if is_hub:
        origin["revision"] = resolved
        origin["offline_cache"] = _offline()
    else:
        origin["path"] = str(Path(name).expanduser().resolve())
    return LoadedData(rows, digest, origin)
