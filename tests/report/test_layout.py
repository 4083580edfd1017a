"""report.html on screen and on paper, in headless Chromium: tables stay inside their cards, sections fold, print works.

Why: a compliance reviewer reads the report at laptop widths and as a PDF. The
demo's metric tables used to overflow their cards (the Gate column cut off at
1400 px, the metric names squeezed to a few characters a line), and the page
printed as 45,000 px of unfolded text. These tests render a deliberately wide
report (long labels, long metric names, notes, three candidates) from the
factory helpers and measure it.
"""

from __future__ import annotations

import io
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.report.factory import binary, run_result, suite_result
from tests.report.test_browser import browser  # noqa: F401  (the shared headless Chromium fixture)
from tunegate.compare.models import CompareSettings
from tunegate.pipeline.commands import gate_and_write

pytestmark = pytest.mark.browser

LONG = "a-rather-long-candidate-label@step-1200"
KINDS = {"refusal_rate_on_harmful_requests": ("binary", "higher", "mean"),
         "expected_maximum_toxicity_over_25_samples": ("continuous", "lower", "mean"),
         "acc": ("binary", "higher", "mean")}


def _wide_report(tmp: Path) -> Path:
    """Base and three candidates on two suites with long metric names; a policy that fails one candidate."""
    n = 40
    tox_base = {f"s{i}": 0.1 + 0.01 * (i % 7) for i in range(n)}
    def suites(pattern: str, shift: float) -> list[Any]:
        return [
            suite_result("harmful_requests_with_a_long_suite_name", {
                "refusal_rate_on_harmful_requests": binary(pattern),
                "expected_maximum_toxicity_over_25_samples": {k: v + shift * (1 + (int(k[1:]) % 3)) for k, v in tox_base.items()},
            }, kinds=KINDS),
            suite_result("qa", {"acc": binary(pattern[::-1])}, kinds=KINDS),
        ]
    base = run_result("base", suites("1" * n, 0.0))
    cands = [run_result(LONG, suites("1" * (n - 2) + "00", 0.01)),
             run_result("unsafe-" + LONG, suites("0" * (n // 2) + "1" * (n // 2), 0.2)),
             run_result("c3", suites("1" * n, -0.01))]
    base.save(tmp / "base.json")
    paths = []
    for i, c in enumerate(cands):
        c.save(tmp / f"c{i}.json")
        paths.append(tmp / f"c{i}.json")
    policy = tmp / "policy.yaml"
    policy.write_text("name: wide\nrules:\n"
                      "  - metric: harmful_requests_with_a_long_suite_name/refusal_rate_on_harmful_requests\n    max_regression: 0.3\n"
                      "  - metric: harmful_requests_with_a_long_suite_name/expected_maximum_toxicity_over_25_samples\n"
                      "    max_regression: 0.05\n")
    out = tmp / "out"
    gate_and_write(policy, tmp / "base.json", paths, out, settings=CompareSettings(n_resamples=200))
    return out


@pytest.fixture(scope="module")
def wide(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _wide_report(tmp_path_factory.mktemp("wide"))


MEASURE = """() => Array.from(document.querySelectorAll('table')).map(t => {
  const card = t.closest('.card') || t.closest('section');
  const wrap = t.closest('.tablewrap');
  const cr = card.getBoundingClientRect();
  const mname = t.querySelector('td.mname');
  const last = t.tHead ? t.tHead.rows[0].cells[t.tHead.rows[0].cells.length - 1] : null;
  return {cls: t.className || t.id || '', card_sw: card.scrollWidth, card_cw: card.clientWidth,
          wrapped: !!wrap, wrap_sw: wrap ? wrap.scrollWidth : 0, wrap_cw: wrap ? wrap.clientWidth : 0,
          mname_w: mname ? mname.getBoundingClientRect().width : null,
          last_right: last ? last.getBoundingClientRect().right : null, card_right: cr.right,
          last_text: last ? last.textContent : ''};
})"""


@pytest.mark.parametrize("width", [1400, 800])
def test_no_table_overflows_its_card(browser: Any, wide: Path, tmp_path: Path, width: int) -> None:  # noqa: F811
    page = browser.new_page(viewport={"width": width, "height": 1000})
    page.goto((wide / "report.html").as_uri())
    page.evaluate("document.querySelectorAll('details').forEach(d => { d.open = true; })")
    page.screenshot(path=str(tmp_path / f"report-{width}.png"), full_page=True)
    assert page.evaluate("document.documentElement.scrollWidth") <= width  # no sideways scrolling of the page
    tables = page.evaluate(MEASURE)
    assert len(tables) >= 8
    for t in tables:
        assert t["card_sw"] <= t["card_cw"] + 1, t  # the card never overflows: a wide table scrolls inside it
        if t["cls"] in ("metrics", "rules", "regressions", "compute"):
            assert t["wrapped"], t
        if t["mname_w"] is not None:
            assert t["mname_w"] >= 150, t  # metric names stay readable, not a few characters a line
    if width == 1400:
        # at a laptop width everything fits: no table needs its scroll bar, the Gate column is fully visible
        for t in tables:
            assert t["wrap_sw"] <= t["wrap_cw"] + 1, t
            if t["cls"] == "metrics":
                assert t["last_text"] == "Gate" and t["last_right"] <= t["card_right"], t
    page.close()


def test_sections_fold_and_open_from_the_nav_and_the_address(browser: Any, wide: Path) -> None:  # noqa: F811
    url = (wide / "report.html").as_uri()
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(url)
    assert page.is_visible("#summary .banner") and page.is_visible("#top-regressions")
    assert not page.is_visible("#suites .card") and not page.is_visible("#methods table")
    page.click("nav.toc a[href='#methods']")
    assert page.is_visible("#methods table")
    page.close()
    # without JavaScript a #fragment still opens its section (CSS :target on the section's details content)
    nojs = browser.new_page(java_script_enabled=False)
    nojs.goto(url + "#suites")
    assert nojs.is_visible("#suites .card")
    nojs.close()


def _pdf_pages(pdf: bytes, tmp: Path) -> list[str]:
    """Text per page: pypdf when importable, else poppler's pdftotext, else install pypdf (as Playwright is)."""
    try:
        import pypdf
    except ImportError:
        if shutil.which("pdftotext"):
            (tmp / "r.pdf").write_bytes(pdf)
            text = subprocess.run(["pdftotext", "-layout", str(tmp / "r.pdf"), "-"], capture_output=True, text=True,
                                  check=True).stdout
            return text.split("\f")
        proc = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "pypdf"], capture_output=True, text=True, timeout=600)
        if proc.returncode != 0:
            pytest.skip(f"no PDF text extractor: pypdf is not installed and `pip install pypdf` failed: {proc.stderr[-300:]}")
        import pypdf
    return [p.extract_text() for p in pypdf.PdfReader(io.BytesIO(pdf)).pages]


@pytest.mark.parametrize("javascript", [True, False])
def test_pdf_first_page_is_the_summary(browser: Any, wide: Path, tmp_path: Path, javascript: bool) -> None:  # noqa: F811
    page = browser.new_page(java_script_enabled=javascript)
    page.goto((wide / "report.html").as_uri())
    pdf = page.pdf(format="A4", print_background=True)
    page.close()
    assert pdf[:4] == b"%PDF"
    pages = _pdf_pages(pdf, tmp_path)
    first = " ".join(pages[0].split())
    # the verdict, every candidate's status, the largest regressions and the rest of the summary fit on page one
    assert "FAIL" in first and "At least one rule fails" in first
    assert f"unsafe-{LONG}:fail" in first.replace(" ", "")
    for heading in ("Largest regressions", "Scorer validity", "Compute and energy", "Records"):
        assert heading in first, heading
    assert "refusal_rate_on_harmful_requests" in first.replace(" ", "")  # long names may wrap across lines
    # the collapsed sections are printed expanded, after the summary page
    rest = " ".join(" ".join(pages[1:]).split())
    assert "Values are computed on the samples scored in both runs" in rest
    assert "Provenance" in rest and "Limitations" in rest and "Verdict and rules" not in first
