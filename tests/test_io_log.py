"""io_log.jsonl.gz: every input, output and score of a run, one line per sample, and its redaction."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from tests.report.factory import binary, run_result, suite_result
from tunegate.core.errors import UserError
from tunegate.run.io_log import IO_LOG_SCHEMA, read_io_log, sample_result_of, write_io_log

ACC = {"acc": ("binary", "higher", "mean")}
SECRET = "a prompt nobody may archive"


def _run():  # type: ignore[no-untyped-def]
    run = run_result("m", [
        suite_result("qa", {"acc": binary("1101")}, kinds=ACC, prompts={"s0": "What is 2+2? ünïcode"}),
        suite_result("tox", {"acc": binary("01")}, kinds=ACC, prompts={"s0": SECRET}, outputs={"s1": "an insult"},
                     content_warning=True),
        suite_result("pii", {"acc": binary("1")}, kinds=ACC, prompts={"s0": "my phone number is 555"}, errored={"s9"}),
    ])
    run.provenance.run_id = "r1"
    return run


def test_round_trip_equals_the_results_samples(tmp_path: Path) -> None:
    run = _run()
    path = write_io_log(run, tmp_path / "io_log.jsonl.gz")
    header, records = read_io_log(path)
    assert header["schema_version"] == IO_LOG_SCHEMA and header["model_fingerprint"] == run.model_fingerprint
    assert header["run_id"] == "r1" and header["started_at"] == run.provenance.started_at
    assert header["redacted_suites"] == [] and [s["name"] for s in header["suites"]] == ["qa", "tox", "pii"]
    originals = [sr for s in run.suites for sr in s.samples]
    assert len(records) == len(originals) == 4 + 2 + 2
    for rec, sr in zip(records, originals, strict=True):
        assert (rec["suite"], rec["sample_id"], rec["model_fingerprint"]) == (sr.suite, sr.id, run.model_fingerprint)
        assert sample_result_of(rec) == sr  # prompt, requests, outputs, scores, status: all of it
    assert any(r["status"] == "errored" and r["reason"] for r in records)
    # deterministic bytes (no time in the gzip header) and no temp file left behind
    assert path.read_bytes() == write_io_log(run, tmp_path / "again.jsonl.gz").read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["again.jsonl.gz", "io_log.jsonl.gz"]


def test_redaction_drops_text_of_sensitive_suites_only(tmp_path: Path) -> None:
    run = _run()
    path = write_io_log(run, tmp_path / "io.jsonl.gz", redact=True, sensitive=["pii"])
    raw = gzip.decompress(path.read_bytes()).decode()
    assert SECRET not in raw and "an insult" not in raw and "555" not in raw
    assert "What is 2+2? ünïcode" in raw  # a suite that is not sensitive keeps its text
    header, records = read_io_log(path)
    assert header["redacted_suites"] == ["pii", "tox"]  # content warning + named
    tox = [r for r in records if r["suite"] == "tox"]
    assert all(r["redacted"] and r["input"] is None and r["responses"][0]["text"] is None for r in tox)
    import hashlib
    assert tox[0]["input_sha256"] == hashlib.sha256(SECRET.encode()).hexdigest()  # still traceable to the data row
    assert tox[1]["responses"][0]["text_sha256"] == hashlib.sha256(b"an insult").hexdigest()
    assert [s["value"] for r in tox for s in r["scores"]] == [0.0, 1.0]  # scores are kept
    with pytest.raises(UserError, match="redacted"):
        sample_result_of(tox[0])
    qa = [r for r in records if r["suite"] == "qa"]
    assert [sample_result_of(r) for r in qa] == run.suites[0].samples
    with pytest.raises(UserError, match="no such suite"):
        write_io_log(run, tmp_path / "x.jsonl.gz", redact=True, sensitive=["nope"])


def test_a_file_that_is_not_an_io_log_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl.gz"
    bad.write_bytes(gzip.compress(json.dumps({"kind": "other"}).encode()))
    with pytest.raises(UserError, match="not a tunegate io log"):
        read_io_log(bad)
    (tmp_path / "plain").write_text("x")
    with pytest.raises(UserError, match="not a gzip"):
        read_io_log(tmp_path / "plain")
