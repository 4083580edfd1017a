"""The facts a model card and a technical documentation show, each with the recorded field it came from.

Why every value carries its source: the EU AI Act documentation (Annex IV for
high-risk systems, Annex XI for general-purpose models) is a statement of
fact, and a reviewer must be able to check each one. A `Fact` is either read
from a file the audit wrote (comparison.json, a run's results.json or
io_log.jsonl.gz, a fine-tuning manifest.json) at a stated key path, or given
by the provider in the `card:` block of audit.yaml (recorded into
comparison.json by `tunegate audit`), or missing; a missing fact is shown as
missing, never filled in. The renderers only place these facts.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tunegate.compare.models import Comparison
from tunegate.core.format import fmt

TO_PROVIDE = "to be provided by the provider"
NOT_RECORDED = "not recorded by this audit"


def show(raw: Any) -> str:
    """How a recorded value is written: text as is, numbers to 4 significant digits, lists joined, None as missing."""
    if raw is None:
        return NOT_RECORDED
    if isinstance(raw, bool):
        return "yes" if raw else "no"
    if isinstance(raw, float):
        return fmt(raw)
    if isinstance(raw, (list, tuple)):
        return ", ".join(show(x) for x in raw) if raw else "none"
    if isinstance(raw, dict):
        return ", ".join(f"{k} {show(v)}" for k, v in sorted(raw.items())) if raw else "none"
    return str(raw)


@dataclass
class Fact:
    """One shown value. `file`: the record it was read from ("comparison.json", "results.json of <label>",
    "manifest.json of <label>", "io_log of <label>", "audit.yaml card"); `path`: the key path in it;
    `raw`: the value there (None when absent). `kind`: recorded | provided | to_provide | missing."""

    label: str
    raw: Any
    file: str
    path: tuple[str | int, ...]
    kind: str
    note: str = ""

    @property
    def text(self) -> str:
        if self.kind == "to_provide":
            return TO_PROVIDE
        if self.kind == "missing":
            return f"{NOT_RECORDED}{': ' + self.note if self.note else ''}"
        return show(self.raw)


@dataclass
class Section:
    key: str
    title: str
    annex: str
    facts: list[Fact] = field(default_factory=list)
    tables: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


@dataclass
class CardContext:
    title: str
    subject: str | None  # the candidate the model card describes (the recommended one, or the only one)
    subject_reason: str
    sections: list[Section]
    metadata: dict[str, Any]  # the model card's YAML header
    documents: dict[str, dict[str, Any]]  # the records read: name -> parsed JSON (for tracing in tests)


def dig(doc: Any, path: tuple[str | int, ...]) -> Any:
    """The value at `path` in nested dicts/lists, None when any step is absent."""
    cur = doc
    for step in path:
        if isinstance(cur, dict) and isinstance(step, str):
            cur = cur.get(step)
        elif isinstance(cur, list) and isinstance(step, int) and -len(cur) <= step < len(cur):
            cur = cur[step]
        else:
            return None
        if cur is None:
            return None
    return cur


class _Reader:
    """Builds facts against the loaded records, so each fact's raw value is by construction the recorded one."""

    def __init__(self, documents: dict[str, dict[str, Any]], provided: Mapping[str, Any]) -> None:
        self.documents = documents
        self.provided = provided

    def rec(self, label: str, file: str, *path: str | int, note: str = "") -> Fact:
        raw = dig(self.documents.get(file), path)
        return Fact(label, raw, file, tuple(path), "missing" if raw is None or raw == "" else "recorded", note)

    def hand(self, label: str, key: str) -> Fact:
        raw = self.provided.get(key)
        given = raw not in (None, "", [])
        return Fact(label, raw if given else None, "audit.yaml card", (key,), "provided" if given else "to_provide")


def _load_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def load_documents(comparison: Comparison) -> dict[str, dict[str, Any]]:
    """comparison.json (as written), each run's results.json header, io-log header and fine-tuning manifest."""
    from tunegate.report.summary import manifest_path
    from tunegate.run.io_log import IO_LOG_NAME, read_io_log

    docs: dict[str, dict[str, Any]] = {"comparison.json": json.loads(comparison.to_json())}
    for info in [comparison.base, *(c.model for c in comparison.candidates)]:
        if info.results_path:
            run = _load_json(Path(info.results_path))
            if run is not None:
                run.pop("suites", None)  # the samples are not card material; the header is
                docs[f"results.json of {info.label}"] = run
            log = Path(info.results_path).parent / IO_LOG_NAME
            if log.is_file():
                try:
                    header, _ = read_io_log(log)
                except Exception:  # noqa: BLE001 - an unreadable log is reported as missing, not fatal
                    header = None
                if header is not None:
                    import hashlib

                    docs[f"io_log of {info.label}"] = {**header, "path": str(log),
                                                      "file_sha256": hashlib.sha256(log.read_bytes()).hexdigest()}
        mp = manifest_path(info)
        if mp is not None:
            manifest = _load_json(mp)
            if manifest is not None:
                docs[f"manifest.json of {info.label}"] = {**manifest, "path": str(mp)}
    return docs
