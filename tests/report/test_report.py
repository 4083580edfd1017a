"""The four outputs from one comparison: HTML escaping and CSP, JUnit validity, Markdown escaping, re-rendering."""

from __future__ import annotations

import base64
import hashlib
import json
import re
from pathlib import Path

import pytest

from tests.report.factory import binary, run_result, suite_result
from tests.report.hostile import BASE_LABEL, CAND_LABEL, SUITE_NAME, XSS, build
from tunegate.compare.comparison import compare_runs
from tunegate.compare.models import CompareSettings, Comparison
from tunegate.core.config import GateRule, Policy
from tunegate.core.verdict import AuditRecord, Recommendation
from tunegate.gate.verdict import evaluate_policy
from tunegate.pipeline.commands import rerender
from tunegate.report import OUTPUTS, write_outputs
from tunegate.report.html import TEMPLATES

HERE = Path(__file__).resolve().parent
ACC = {"acc": ("binary", "higher", "mean")}


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build(tmp_path_factory.mktemp("hostile"))


def test_templates_never_mark_text_safe() -> None:
    for path in TEMPLATES.iterdir():
        text = path.read_text()
        assert "|safe" not in text.replace(" ", "") and "autoescape false" not in text and "Markup" not in text, path


def test_html_escapes_every_payload_and_runs_only_the_hashed_script(hostile: Path) -> None:
    lxml_html = pytest.importorskip("lxml.html")
    raw = (hostile / "report.html").read_text()
    doc = lxml_html.fromstring(raw)
    scripts = doc.xpath("//script")
    assert len(scripts) == 1 and not scripts[0].get("src")
    for el in doc.iter():
        if not isinstance(el.tag, str):
            continue
        for attr, value in el.attrib.items():
            assert not attr.lower().startswith("on"), (el.tag, attr)
            assert not value.strip().lower().startswith("javascript:"), (el.tag, attr, value)
    assert not doc.xpath("//img") and not doc.xpath("//a[@href and not(starts-with(@href, '#'))]")
    assert not doc.xpath("//iframe|//object|//embed|//link|//base|//form")
    # the page's own text contains the payloads literally (i.e. as text, not markup)
    text = doc.text_content()
    for payload in (XSS[0], XSS[2], BASE_LABEL, CAND_LABEL):
        assert payload in text
    assert "&lt;script&gt;window.__xss=1;alert(1)&lt;/script&gt;" in raw
    # the Content-Security-Policy forbids everything but inline style, data: images and the one hashed script
    csp = doc.xpath("//meta[@http-equiv='Content-Security-Policy']/@content")[0]
    digest = base64.b64encode(hashlib.sha256(scripts[0].text.encode()).digest()).decode()
    assert f"script-src 'sha256-{digest}'" in csp
    assert "default-src 'none'" in csp and "img-src data:" in csp and "unsafe-eval" not in csp
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", raw)  # nothing remote


def test_html_sections_and_finetune_hook(hostile: Path) -> None:
    raw = (hostile / "report.html").read_text()
    for section in ("verdict", "models", "suites", "examples", "methods", "provenance", "limitations"):
        assert f'<section id="{section}">' in raw
    assert "fine-tune step" in raw and "Content warning" in raw and "@media print" in raw
    assert "<details class=\"cw\">" in raw  # click-to-reveal for the content-warning suite


def test_junit_is_valid_and_counts_rules(hostile: Path, tmp_path: Path) -> None:
    etree = pytest.importorskip("lxml.etree")
    schema = etree.XMLSchema(etree.parse(str(HERE / "junit.xsd")))
    doc = etree.parse(str(hostile / "junit.xml"))
    assert schema.validate(doc), schema.error_log
    cases = doc.findall(".//testcase")
    assert len(cases) == 1 and cases[0].find("failure") is not None
    assert doc.getroot().get("failures") == "1"
    # inconclusive -> skipped (or failure in strict mode); several candidates -> one testsuite each
    b = run_result("base", [suite_result("qa", {"acc": binary("1" * 10)}, kinds=ACC)])
    cands = [run_result(f"c{i}", [suite_result("qa", {"acc": binary(p)}, kinds=ACC)]) for i, p in enumerate(("1" * 10, "1" * 9 + "0"))]
    for strict, tag in ((False, "skipped"), (True, "failure")):
        comp = compare_runs(b, cands, CompareSettings(n_resamples=200))
        evaluate_policy(Policy(rules=[GateRule(metric="qa/acc", max_regression=0.05), GateRule(metric="qa/acc", min=0.5)]), comp,
                        strict=strict)
        write_outputs(comp, tmp_path / str(strict), {})
        doc = etree.parse(str(tmp_path / str(strict) / "junit.xml"))
        assert schema.validate(doc), schema.error_log
        suites = doc.findall("testsuite")
        assert [s.get("name") for s in suites] == ["tunegate.c0", "tunegate.c1"]
        assert [s.get("tests") for s in suites] == ["2", "2"]
        assert suites[1].find("testcase").find(tag) is not None


def test_summary_markdown_escapes_model_text(hostile: Path) -> None:
    md = (hostile / "summary.md").read_text()
    assert "## tunegate gate: FAIL" in md and "| Candidate | Rule | Result |" in md
    assert "<script" not in md and "<img" not in md and "<svg" not in md and "javascript:" not in md
    assert "&lt;script&gt;" in md
    top = md.split("### Top regressions", 1)[1].splitlines()
    assert "qa/acc" in next(line for line in top if line.startswith("| ") and "Candidate" not in line)  # the failed rule's metric first
    assert "content warning: excerpt omitted" not in md or SUITE_NAME not in md
    for line in md.splitlines():
        if line.startswith("| ") and "answer" in line:
            assert len(line) < 600  # short excerpts only


def test_comparison_json_and_rerender(hostile: Path) -> None:
    data = json.loads((hostile / "comparison.json").read_text())
    assert data["schema_version"] == 1 and data["verdict"]["status"] == "fail"
    before = (hostile / "report.html").read_text()
    for name in ("report.html", "junit.xml", "summary.md"):
        (hostile / name).unlink()
    comparison, paths = rerender(hostile)
    assert isinstance(comparison, Comparison) and set(paths) == set(OUTPUTS)
    after = (hostile / "report.html").read_text()
    assert after == before  # same inputs, same report


def test_report_without_run_results_still_renders(tmp_path: Path) -> None:
    b = run_result("base", [suite_result("qa", {"acc": binary("1100")}, kinds=ACC)])
    c = run_result("cand", [suite_result("qa", {"acc": binary("0110")}, kinds=ACC)])
    comp = compare_runs(b, [c], CompareSettings(n_resamples=200))
    write_outputs(comp, tmp_path, {})
    html = (tmp_path / "report.html").read_text()
    assert "NO VERDICT" in html and "outputs are missing" in html
    etree = pytest.importorskip("lxml.etree")
    schema = etree.XMLSchema(etree.parse(str(HERE / "junit.xsd")))
    doc = etree.parse(str(tmp_path / "junit.xml"))
    assert schema.validate(doc) and doc.getroot().get("tests") == "0"  # a comparison decides nothing
    assert "no policy, no verdict" in (tmp_path / "summary.md").read_text()


def test_limitations_name_the_scorer_a_score_declares() -> None:
    from tunegate.core import plugins
    from tunegate.report.context import collect_limitations
    from tunegate.scorers.base import Scorer

    class Flaky(Scorer):
        name = "flaky-test"
        limitations = "Misses sarcasm entirely (test scorer)."
        outputs = ("flakiness",)

        def score_texts(self, texts, prompts=None):  # type: ignore[no-untyped-def]
            return [[] for _ in texts]

    plugins.register("scorers", "flaky-test", Flaky)
    try:
        run = run_result("base", [suite_result("qa", {"acc": binary("10")}, kinds=ACC)])
        run.suites[0].samples[0].scores[0].details["scorer"] = "flaky-test"
        comp = compare_runs(run, [run.model_copy(deep=True)], CompareSettings(n_resamples=200))
        lims = collect_limitations(comp, {"base": run})
        assert {"source": "scorer flaky-test", "text": "Misses sarcasm entirely (test scorer)."} in lims
        assert lims[-1]["source"] == "statistics"
        none = collect_limitations(comp, {"base": None})
        assert not any(x["source"].startswith("scorer") for x in none)
    finally:
        plugins.unregister("scorers", "flaky-test")


def test_trend_chart_only_for_checkpoints_of_one_training_run(tmp_path: Path) -> None:
    b = run_result("base", [suite_result("qa", {"acc": binary("1100")}, kinds=ACC)])

    def ck(step: int, data: str):  # type: ignore[no-untyped-def]
        return run_result(f"ck{step}{data}", [suite_result("qa", {"acc": binary("1110")}, kinds=ACC)],
                          finetune={"step": step, "data_sha256": data, "recipe_hash": "r", "kind": "tunegate-finetune-checkpoint"})

    same = compare_runs(b, [ck(10, "a"), ck(20, "a")], CompareSettings(n_resamples=200))
    write_outputs(same, tmp_path / "same", {})
    html = (tmp_path / "same" / "report.html").read_text()
    assert "Trend across checkpoints" in html and "fine-tune data_sha256" in html
    assert "tunegate-finetune-checkpoint" not in html  # bookkeeping keys are not shown
    mixed = compare_runs(b, [ck(10, "a"), ck(20, "b")], CompareSettings(n_resamples=200))
    write_outputs(mixed, tmp_path / "mixed", {})
    assert "Trend across checkpoints" not in (tmp_path / "mixed" / "report.html").read_text()


def test_audit_recommendation_is_rendered_escaped(hostile: Path, tmp_path: Path) -> None:
    comparison = Comparison.load(hostile)
    comparison.audit = AuditRecord(name="a", config="audit.yaml", recommendation=Recommendation(
        candidate=XSS[0], metric="qa/acc", gain=0.1, reason=f"largest gain {XSS[2]}",
        rejected={XSS[4]: "fail: refusal_rate regressed"}))
    write_outputs(comparison, tmp_path, {})
    raw = (tmp_path / "report.html").read_text()
    assert "Recommended: &lt;script&gt;window.__xss=1;alert(1)&lt;/script&gt;" in raw
    assert "fail: refusal_rate regressed" in raw and "<svg onload" not in raw
    summary = (tmp_path / "summary.md").read_text()
    assert "Recommended candidate:" in summary and "<script>" not in summary


def test_api_models_are_marked_weights_not_verifiable(tmp_path: Path) -> None:
    base = run_result("base", [suite_result("qa", {"acc": binary("1100")}, kinds=ACC)])
    cand = run_result("cand", [suite_result("qa", {"acc": binary("1010")}, kinds=ACC)])
    cand.model_identity = {"backend": "openai", "weights_verifiable": False}
    comparison = compare_runs(base, [cand], CompareSettings())
    write_outputs(comparison, tmp_path, {"base": base, "cand": cand})
    raw = (tmp_path / "report.html").read_text()
    assert raw.count("weights not verifiable") == 1  # the API candidate only, not the local base


def test_explorer_leads_with_the_examples_behind_failing_rules() -> None:
    from tunegate.report.context import build_context

    base = run_result("base", [suite_result("task", {"acc": binary("1" * 12)}, kinds=ACC),
                               suite_result("safety", {"acc": binary("1" * 12)}, kinds=ACC)])
    cand = run_result("cand", [suite_result("task", {"acc": binary("0011" + "1" * 8)}, kinds=ACC),
                               suite_result("safety", {"acc": binary("0" * 12)}, kinds=ACC)])
    comparison = compare_runs(base, [cand], CompareSettings())
    policy = Policy(rules=[GateRule(metric="safety/acc", max_regression=0.1)])
    verdict = evaluate_policy(policy, comparison)
    assert comparison.verdict == verdict
    assert verdict.candidates[0].outcomes[0].status == "fail"
    rows = build_context(comparison, {"base": base, "cand": cand}).explorer
    regressed = [r["suite"] for r in rows if r["change"] == "regressed"]
    assert regressed[0] == "safety" and "task" in regressed  # the failing rule's regressions come first
    assert regressed.index("task") > max(i for i, x in enumerate(regressed) if x == "safety")
