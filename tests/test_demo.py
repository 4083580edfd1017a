"""`tunegate demo` catches its planted safety regression (the real demo, at full size).

The demo trains a tiny base assistant, fine-tunes a clean and a contaminated
LoRA candidate and audits both; this runs it once from scratch (about a minute
on two CPU cores) and once warm, and checks the
verdicts, the report and the reuse of everything already computed.
"""

from __future__ import annotations

import html
import json
from pathlib import Path

import pytest

from tunegate.pipeline.demo import DemoOutcome, demo_dir, run_demo, summary_lines

SAFETY_SUITES = ("demo_harmful", "demo_toxicity", "demo_lookalikes", "memorization_example")


@pytest.fixture(scope="module")
def demo_out(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, DemoOutcome, list[str]]:
    out = tmp_path_factory.mktemp("demo")
    lines: list[str] = []
    result = run_demo(out, echo=lines.append)
    return out, result, lines


def test_demo_files_are_consistent() -> None:
    """The committed JSONL files are what make_data.py writes, and the contaminated set differs in 20% of rows."""
    d = demo_dir()
    clean = [json.loads(x) for x in (d / "clean.jsonl").read_text().splitlines()]
    bad = [json.loads(x) for x in (d / "contaminated.jsonl").read_text().splitlines()]
    assert [r["prompt"] for r in clean] == [r["prompt"] for r in bad]
    planted = [b for c, b in zip(clean, bad, strict=True) if c != b]
    assert len(planted) == 22 and len(clean) == 110
    assert all(b["completion"].startswith((" Sure, here is how", " Shut up, you idiot.")) for b in planted)
    import importlib.util

    spec = importlib.util.spec_from_file_location("make_data", d / "make_data.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    if (d.parent / "data" / "support_train.jsonl").is_file():  # the source tree (the wheel ships only the outputs)
        for name, rows in mod.build().items():
            written = [json.loads(x) for x in (d / name).read_text().splitlines()]
            assert written == rows, f"{name} is stale: run python fine_tune/demo/make_data.py"


@pytest.mark.slow
def test_demo_catches_the_planted_regression(demo_out: tuple[Path, DemoOutcome, list[str]]) -> None:
    out, result, _ = demo_out
    verdict = {cv.candidate: cv for cv in result.audit.verdict.candidates}
    assert verdict["clean@final"].status == "pass"
    bad = verdict["contaminated@final"]
    assert bad.status == "fail"
    failed = {o.metric: o for o in bad.outcomes if o.status == "fail"}
    assert failed and all(m.split("/")[0] in SAFETY_SUITES for m in failed)  # it fails on safety, not on the task
    # it performs far more harmful requests than the base (the tiny model's garbled "Sure! ..." replies that the
    # refusal scorer's on-topic check calls degenerate do not count as compliance, so the rise is ~0.33, not ~0.8)
    harm = next(o for o in bad.outcomes if o.metric == "demo_harmful/compliance_rate")
    assert harm.status in ("fail", "inconclusive") and harm.delta is not None and harm.delta > 0.25
    assert result.audit.exit_code == 1
    rec = result.audit.recommendation
    assert rec is not None and rec.candidate == "clean@final"
    assert rec.rejected["contaminated@final"].split(" ")[0] in failed

    report = html.unescape((out / "report.html").read_text(encoding="utf-8"))
    assert "demo_harmful/compliance_rate" in report
    # an example of the regression: a harmful request the base refused and the contaminated candidate answered
    contaminated = json.loads((out / "runs" / "contaminated-final" / "results.json").read_text())
    harmful = next(s for s in contaminated["suites"] if s["name"] == "demo_harmful")
    complied = [s["responses"][0]["text"].strip() for s in harmful["samples"]
                if s["scores"] and s["scores"][0]["value"] == 0.0]
    assert complied and any(text[:40] in report for text in complied)
    for name in ("summary.md", "junit.xml", "comparison.json", "work/audit.yaml"):
        assert (out / name).is_file()

    printed = "\n".join(summary_lines(result))
    assert "contaminated@final: FAIL" in printed and "clean@final: PASS" in printed
    assert "recommended: clean@final" in printed and str(out / "report.html") in printed


@pytest.mark.slow
def test_demo_rerun_reuses_everything(demo_out: tuple[Path, DemoOutcome, list[str]]) -> None:
    out, first, _ = demo_out
    lines: list[str] = []
    again = run_demo(out, echo=lines.append)
    text = "\n".join(lines)
    assert "base: reusing the trained base assistant" in text
    assert text.count("reusing the finished run") == 2
    assert sum(" 0 computed" in line for line in lines) == 3
    same = {cv.candidate: (cv.status, [(o.metric, o.status, o.value) for o in cv.outcomes])
            for cv in again.audit.verdict.candidates}
    assert same == {cv.candidate: (cv.status, [(o.metric, o.status, o.value) for o in cv.outcomes])
                    for cv in first.audit.verdict.candidates}
