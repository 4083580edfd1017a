"""`tunegate card` and the card files `tunegate audit` writes: every value shown traces to a recorded field.

The audit runs on the scripted mock backend (tests/test_audit.py's helpers); a
second test builds runs with a fine-tuning manifest by hand, so the training
and energy facts are traced too without training anything.
"""

from __future__ import annotations

import gzip
import hashlib
import html
import json
from pathlib import Path
from typing import Any

import pytest

from tests.cli import run_cli_merged as run_cli
from tests.report.factory import binary, run_result, suite_result
from tests.test_audit import _audit, _script
from tunegate.compare.comparison import compare_runs
from tunegate.compare.models import CompareSettings, Comparison
from tunegate.pipeline.audit import run_audit
from tunegate.report.card import CARD_FILES, write_card
from tunegate.report.card.build import build_card
from tunegate.report.card.context import TO_PROVIDE, CardContext, dig, show
from tunegate.run.io_log import read_io_log

PURPOSE = "Answer customer-support questions for <b>Acme</b> shop; not for medical or legal advice."
OVERSIGHT = "A support agent reviews every answer before it is sent."


def _sources_from_disk(comparison_path: Path) -> dict[str, Any]:
    """The records, read back independently of the card code: comparison.json, results headers, io-log headers."""
    comp = json.loads(comparison_path.read_text())
    docs: dict[str, Any] = {"comparison.json": comp}
    for info in [comp["base"], *(c["model"] for c in comp["candidates"])]:
        results = json.loads(Path(info["results_path"]).read_text())
        results.pop("suites")
        docs[f"results.json of {info['label']}"] = results
        log = Path(info["results_path"]).parent / "io_log.jsonl.gz"
        header = json.loads(gzip.decompress(log.read_bytes()).decode().splitlines()[0])
        docs[f"io_log of {info['label']}"] = {**header, "path": str(log), "file_sha256": hashlib.sha256(log.read_bytes()).hexdigest()}
    return docs


def _facts(card: CardContext) -> list[Any]:
    out = [f for s in card.sections for f in s.facts]
    out += [f for s in card.sections for t in s.tables for row in t["rows"] for f in row]
    return out


def test_audit_writes_a_card_whose_every_value_traces_to_a_record(tmp_path: Path) -> None:
    path = _audit(tmp_path, [_script(tmp_path, "good", refuse=True, answered=12)],
                  card={"intended_purpose": PURPOSE, "human_oversight": OVERSIGHT, "license": "apache-2.0", "tags": ["support"]},
                  io_log={"redact": True, "sensitive_suites": ["harm"]})
    outcome = run_audit(path, echo=lambda s: None)
    out = outcome.out
    for name in CARD_FILES:
        assert (out / name).is_file(), name
    comparison = Comparison.load(out)
    assert comparison.audit is not None and comparison.audit.card.intended_purpose == PURPOSE  # recorded
    card = build_card(comparison, {})
    disk = _sources_from_disk(out / "comparison.json")
    facts = _facts(card)
    recorded = [f for f in facts if f.kind == "recorded"]
    assert len(recorded) > 60
    for f in recorded:
        assert f.file in disk, f
        assert f.raw == dig(disk[f.file], f.path), f  # the value shown is the value at that key of that record
        assert f.text == show(f.raw)
    for f in facts:
        if f.kind == "missing":
            assert dig(disk.get(f.file), f.path) in (None, ""), f  # shown as missing only when it is missing
    provided = {f.path[0]: f for f in facts if f.file == "audit.yaml card"}
    assert provided["intended_purpose"].kind == "provided" and provided["intended_purpose"].text == PURPOSE
    assert provided["human_oversight"].text == OVERSIGHT
    for key in ("provider", "risk_management", "post_market_monitoring", "data_governance"):
        assert provided[key].kind == "to_provide" and provided[key].text == TO_PROVIDE
    # the rendered files show those values, escaped, and the markers
    page = (out / "technical_documentation.html").read_text()
    assert html.escape(PURPOSE, quote=False) in page and "<b>Acme</b>" not in page and "<script" not in page
    assert TO_PROVIDE in page and "default-src 'none'" in page
    lxml_html = pytest.importorskip("lxml.html")
    shown = " ".join(lxml_html.fromstring(page).text_content().split())
    for f in recorded:
        assert " ".join(f.text.split()) in shown, f
    md = (out / "model_card.md").read_text()
    header = md.split("---\n")[1]
    assert "license: apache-2.0" in header and "- support" in header and "model-index:" in header
    assert "<b>" not in md and f"*{TO_PROVIDE}*" in md
    assert (out / "technical_documentation.md").read_text().count(TO_PROVIDE) >= 10
    # the io logs: one per run, redacted as configured, linked from the report together with the card
    log_header, records = read_io_log(out / "runs" / "good" / "io_log.jsonl.gz")
    assert log_header["redacted_suites"] == ["harm"]
    assert all(r["input"] is None for r in records if r["suite"] == "harm")
    assert all(r["input"] for r in records if r["suite"] == "task")
    report = (out / "report.html").read_text()
    assert 'href="runs/good/io_log.jsonl.gz"' in report and 'href="runs/_base/io_log.jsonl.gz"' in report
    assert 'href="technical_documentation.html"' in report and 'href="model_card.md"' in report


def test_card_command_and_its_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _audit(tmp_path, [_script(tmp_path, "good", refuse=True, answered=12)])
    run_audit(path, echo=lambda s: None)
    code, output = run_cli(["card", str(tmp_path / "out"), "--out", str(tmp_path / "card")], capsys)
    assert code == 0, output
    md = (tmp_path / "card" / "model_card.md").read_text()
    assert md.count(TO_PROVIDE) >= 10  # nothing provided: every hand-filled field says so
    assert "license:" not in md.split("---\n")[1]  # no license was given, so none is claimed
    code, output = run_cli(["card", str(tmp_path / "nowhere"), "--out", str(tmp_path / "c2")], capsys)
    assert code == 2 and "comparison.json not found" in output
    code, output = run_cli(["card", str(tmp_path / "out"), "--out", str(tmp_path / "c3"), "--candidate", "nope"], capsys)
    assert code == 2 and "--candidate 'nope'" in output


def test_training_and_energy_facts_come_from_the_manifest(tmp_path: Path) -> None:
    ckpt = tmp_path / "ft" / "final"
    ckpt.mkdir(parents=True)
    manifest = {"status": "complete", "method": "lora", "base": {"fingerprint": "f" * 64},
                "data": {"path": "train.jsonl", "sha256": "a" * 64, "rows": 110, "rows_used": 108, "rows_dropped_for_length": 2,
                         "trained_tokens": 4681},
                "eval_data": None, "recipe": {"method": "lora", "epochs": 3, "learning_rate": 0.001, "lora": {"r": 8}},
                "recipe_hash": "b" * 64, "overrides": {}, "steps": {"completed": 84}, "parameters": {"trainable": 98304, "total": 857216},
                "final": {"train_loss": 5.4}, "libraries": {"torch": "2"}, "wall_time_s": 36.5, "device_hours": 0.0101,
                "device_hours_definition": "wall x processes", "devices": {"device_type": "cuda", "num_processes": 1},
                "energy": {"status": "measured", "kwh": 0.0123, "joules": 44280.0, "method": "NVML delta"}}
    (tmp_path / "ft" / "manifest.json").write_text(json.dumps(manifest))
    acc = {"acc": ("binary", "higher", "mean")}
    base = run_result("base", [suite_result("qa", {"acc": binary("1" * 30)}, kinds=acc)])
    cand = run_result("cand", [suite_result("qa", {"acc": binary("1" * 29 + "0")}, kinds=acc)],
                      finetune={"step": 84, "manifest": "../manifest.json", "data_sha256": "a" * 64})
    cand.model = cand.model.model_copy(update={"adapter": str(ckpt), "label": "cand"})
    base.save(tmp_path / "base.json")
    cand.save(tmp_path / "cand.json")
    comparison = compare_runs(base, [cand], CompareSettings(n_resamples=200), base_path=tmp_path / "base.json",
                              candidate_paths=[tmp_path / "cand.json"])
    write_card(comparison, tmp_path / "card", {"base": base, "cand": cand})
    card = build_card(comparison, {"base": base, "cand": cand})
    by_label = {f.label: f for f in _facts(card)}
    assert by_label["cand: training data SHA-256"].raw == "a" * 64
    assert by_label["cand: training data rows"].raw == 110 and by_label["cand: rows used"].raw == 108
    assert by_label["cand: recipe learning_rate"].raw == 0.001
    assert by_label["cand: fine-tuning energy (kWh)"].raw == 0.0123
    assert by_label["cand: fine-tuning device-hours"].raw == 0.0101
    assert by_label["cand: evaluation data SHA-256"].kind == "missing"  # no eval data: shown as missing, not invented
    assert by_label["base: io log"].kind == "missing"  # these runs were saved without io logs
    for f in _facts(card):
        if f.kind == "recorded" and f.file.startswith("manifest.json"):
            assert f.raw == dig({**manifest, "path": str((tmp_path / "ft" / "manifest.json").resolve())}, f.path), f
    assert "fine-tuning energy (kWh) | 0.0123 |" in (tmp_path / "card" / "technical_documentation.md").read_text()
