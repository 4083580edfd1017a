"""The input/output log of one run: `io_log.jsonl.gz` beside its results.json.

Why a second file when results.json already holds every sample: an auditor
archives and searches the exact inputs and outputs (Article 12 of the EU AI
Act asks for logging), and wants them one record per line, compressed, with
the model fingerprint on every line, in a schema that does not move with the
harness's internal results format. It is written from the assembled
`RunResult` (never from the runner), atomically, and `read_io_log` reads it
back; an unredacted record turns back into the exact `SampleResult`.

Redaction: with `redact=True`, every suite that is *sensitive* keeps its ids,
statuses, numbers and scores but loses its raw text (prompts, references,
choices, outputs, sample metadata and score details), each replaced by null
with the SHA-256 of the UTF-8 text, so a record can still be matched to the
dataset row or output it came from. A suite is sensitive when it carries a
content warning (its YAML says `content_warning: true`) or when the user names
it (`--sensitive-suite NAME`, or `io_log.sensitive_suites` in audit.yaml).
The schema is documented in docs/compliance.md.
"""

from __future__ import annotations

import gzip
import hashlib
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from tunegate.core.errors import UserError
from tunegate.core.io import atomic_write_bytes
from tunegate.core.results import RunResult, SampleResult

IO_LOG_NAME = "io_log.jsonl.gz"
IO_LOG_SCHEMA = 1
IO_LOG_KIND = "tunegate.run.io_log"


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def sensitive_suites(run: RunResult, named: Iterable[str] = ()) -> set[str]:
    """Suites of `run` whose text is dropped under redaction: content-warning suites plus the ones `named`."""
    names = set(named)
    unknown = sorted(names - {s.name for s in run.suites})
    if unknown:
        raise UserError(f"sensitive suites {', '.join(unknown)}: no such suite in this run "
                        f"(it has {', '.join(s.name for s in run.suites)})")
    return {s.name for s in run.suites if s.content_warning} | names


def _hashes(value: Any) -> Any:
    """The SHA-256 of each text in a text or a list of texts (None stays None)."""
    if value is None:
        return None
    if isinstance(value, str):
        return _sha(value)
    return [_sha(str(v)) for v in value]


def _record(run: RunResult, sr: SampleResult, redact: bool) -> dict[str, Any]:
    dump = sr.model_dump(mode="json")
    sample = dump["sample"]
    rec: dict[str, Any] = {
        "record": "sample", "suite": sr.suite, "sample_id": sr.id, "model_fingerprint": run.model_fingerprint,
        "run_id": run.provenance.run_id, "status": sr.status, "reason": sr.reason, "redacted": redact,
        "input": sample["input"], "target": sample["target"], "choices": sample["choices"], "answer": sample["answer"],
        "metadata": sample["metadata"], "requests": dump["requests"], "responses": dump["responses"],
        "scores": dump["scores"], "truncated": sr.truncated, "truncated_tokens": sr.truncated_tokens,
    }
    if not redact:
        return rec
    rec.update(input=None, target=None, choices=None, metadata=None,
               input_sha256=_sha(sr.sample.input), target_sha256=_hashes(sr.sample.target),
               choices_sha256=_hashes(sr.sample.choices))
    for req in rec["requests"]:
        for key in ("prompt", "context", "continuation", "stop"):
            if key in req:
                req[f"{key}_sha256"] = _hashes(req[key])
                req[key] = None
    for resp in rec["responses"]:
        if resp.get("text") is not None:
            resp["text_sha256"] = _sha(resp["text"])
        resp["text"] = None
    for score in rec["scores"]:
        score["details"] = None
    return rec


def io_log_records(run: RunResult, *, redact: bool = False, sensitive: Iterable[str] = ()) -> list[dict[str, Any]]:
    """The header record, then one record per sample in results order."""
    hidden = sensitive_suites(run, sensitive) if redact else set()
    header = {
        "record": "header", "kind": IO_LOG_KIND, "schema_version": IO_LOG_SCHEMA,
        "model": run.model.model, "label": run.model.display_name, "backend": run.model.backend,
        "revision": run.model.revision, "adapter": run.model.adapter, "model_fingerprint": run.model_fingerprint,
        "run_id": run.provenance.run_id, "tunegate_version": run.provenance.tunegate_version,
        "started_at": run.provenance.started_at, "finished_at": run.provenance.finished_at,
        "complete": run.complete, "redacted_suites": sorted(hidden),
        "suites": [{"name": s.name, "kind": s.kind, "version": s.version, "data_hash": s.data_hash,
                    "config_hash": s.config_hash, "content_warning": s.content_warning,
                    "samples": len(s.samples)} for s in run.suites],
    }
    return [header] + [_record(run, sr, s.name in hidden) for s in run.suites for sr in s.samples]


def write_io_log(run: RunResult, path: Path, *, redact: bool = False, sensitive: Iterable[str] = ()) -> Path:
    """Write `path` (gzip, JSON Lines, UTF-8) atomically; the gzip header carries no time, so equal runs give equal bytes."""
    lines = (json.dumps(r, ensure_ascii=False, allow_nan=False, sort_keys=True)
             for r in io_log_records(run, redact=redact, sensitive=sensitive))
    atomic_write_bytes(Path(path), gzip.compress(("\n".join(lines) + "\n").encode("utf-8"), mtime=0))
    return Path(path)


def read_io_log(path: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(header, sample records); UserError (exit 2) naming the file for anything that is not an io log of this schema."""
    path = Path(path)
    try:
        text = gzip.decompress(path.read_bytes()).decode("utf-8")
        records = [json.loads(line) for line in text.splitlines() if line.strip()]
    except FileNotFoundError:
        raise UserError(f"{path}: io log not found") from None
    except (OSError, EOFError, UnicodeDecodeError, ValueError) as exc:
        raise UserError(f"{path}: not a gzip JSON Lines io log ({exc})") from None
    if not records or records[0].get("kind") != IO_LOG_KIND or records[0].get("schema_version") != IO_LOG_SCHEMA:
        raise UserError(f"{path}: not a tunegate io log of schema version {IO_LOG_SCHEMA}")
    return records[0], records[1:]


def sample_result_of(record: dict[str, Any]) -> SampleResult:
    """The `SampleResult` an unredacted record was written from (a redacted one has lost its text: refused)."""
    if record.get("redacted"):
        raise UserError(f"io log record {record.get('suite')}/{record.get('sample_id')}: redacted; its text is not in the log")
    sample = {"id": record["sample_id"], "input": record["input"], "target": record["target"], "choices": record["choices"],
              "answer": record["answer"], "metadata": record["metadata"]}
    return SampleResult.model_validate({
        "suite": record["suite"], "sample": sample, "status": record["status"], "reason": record["reason"],
        "requests": record["requests"], "responses": record["responses"], "scores": record["scores"],
        "truncated": record["truncated"], "truncated_tokens": record["truncated_tokens"]})
