"""The XSS corpus in a real browser: headless Chromium (system /usr/bin/chromium) through Playwright.

Set-up installs what is missing (Playwright from PyPI into this interpreter,
Chromium through apt-get when running as root); the test is skipped, with the
reason, only when they cannot be installed or launched.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.report.hostile import BASE_LABEL, CAND_LABEL, XSS, build

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def _ensure_playwright() -> Any:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        proc = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "playwright"], capture_output=True, text=True, timeout=600)
        if proc.returncode != 0:
            pytest.skip(f"playwright is not installed and `pip install playwright` failed: {proc.stderr.strip()[-300:]}")
        from playwright.sync_api import sync_playwright
    return sync_playwright


def _ensure_chromium() -> None:
    if Path(CHROMIUM).is_file():
        return
    if shutil.which("apt-get") is None or os.geteuid() != 0:
        pytest.skip(f"{CHROMIUM} is missing and apt-get cannot install it here (need root and apt-get)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (["apt-get", "update"], ["apt-get", "install", "-y", "chromium"]):
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900, env=env)
        if proc.returncode != 0:
            pytest.skip(f"could not install chromium ({' '.join(cmd)}): {proc.stderr.strip()[-300:]}")


@pytest.fixture(scope="module")
def browser() -> Any:
    sync_playwright = _ensure_playwright()
    _ensure_chromium()
    with sync_playwright() as p:
        try:
            b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        except Exception as exc:  # noqa: BLE001 - a sandbox without the right kernel features, missing libraries...
            pytest.skip(f"headless chromium could not be launched: {str(exc).splitlines()[0]}")
        yield b
        b.close()


def test_xss_corpus_stays_text_in_a_real_browser(browser: Any, tmp_path: Path) -> None:
    out = build(tmp_path)
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    dialogs: list[str] = []
    requests: list[str] = []
    console: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.on("request", lambda r: requests.append(r.url))
    page.on("console", lambda m: console.append(m.text))
    url = (out / "report.html").as_uri()
    page.goto(url)
    page.wait_for_load_state("load")

    assert page.evaluate("typeof window.__xss") == "undefined"
    assert dialogs == []
    assert requests == [url]  # nothing but the file itself: no image, script or style was fetched
    assert not [m for m in console if "Content Security Policy" in m], console  # the hashed script was allowed
    # sections below the summary are collapsed: open each by clicking its heading, as a reader would
    for heading in page.locator("details.sec > summary").all():
        heading.click()
    body = page.inner_text("body")
    for payload in (XSS[0], XSS[1], XSS[2], XSS[3], BASE_LABEL, CAND_LABEL):
        assert payload in body

    # the one script works under the CSP: filtering the explorer changes the row count
    total = page.inner_text("#ex-shown")
    page.fill("#ex-q", "no such text anywhere")
    assert page.inner_text("#ex-shown") == "0"
    page.fill("#ex-q", "")
    assert page.inner_text("#ex-shown") == total

    # content warning: hidden until clicked, then shown literally
    toxic = f"toxic {XSS[0]}"
    assert toxic not in page.inner_text("body")
    summaries = page.locator("details.cw > summary")
    assert summaries.count() == len(XSS)
    for i in range(summaries.count()):
        summaries.nth(i).click()
    assert toxic in page.inner_text("body")
    assert page.evaluate("typeof window.__xss") == "undefined" and dialogs == []
    page.screenshot(path=str(tmp_path / "report.png"), full_page=True)
    page.close()


def test_report_prints_to_pdf(browser: Any, tmp_path: Path) -> None:
    out = build(tmp_path)
    page = browser.new_page()
    page.goto((out / "report.html").as_uri())
    page.emulate_media(media="print")
    assert page.evaluate("getComputedStyle(document.querySelector('.controls')).display") == "none"
    pdf = page.pdf(format="A4", print_background=True)
    assert pdf[:4] == b"%PDF" and len(pdf) > 10_000
    page.close()
