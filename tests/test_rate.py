"""Human ratings: `tunegate rate export` (blinded offline sheet, CSV, key) and `tunegate rate import`.

The audit is the scripted pairwise comparison of tests/suites/test_pairwise.py
(14 wins, 5 ties, 3 losses, 2 unjudged pairs). A rater who rates like the
judge must reproduce the judge's figures exactly; a second rater who calls
four of those wins ties gives a hand-computed Cohen's kappa; three raters give
a hand-computed Fleiss' kappa. The browser test fills the sheet in headless
Chromium with the keyboard shortcuts and catches the JSONL download.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from tests.suites.test_pairwise import run_pair, scripted_rules, write_suite
from tunegate.cli import main
from tunegate.compare.comparison import compare_runs
from tunegate.compare.models import Comparison
from tunegate.compare.stats.agreement import cohen_kappa, fleiss_kappa
from tunegate.core.errors import UserError
from tunegate.pipeline.rate import export_sheet, import_ratings
from tunegate.report import write_outputs

OUT = ("win", "tie", "loss")


@pytest.fixture
def audit(tmp_path: Path) -> Path:
    base, cand = run_pair(write_suite(tmp_path, scripted_rules()))
    folder = tmp_path / "audit"
    for name, run in (("base", base), ("cand", cand)):
        (tmp_path / name).mkdir()
        run.save(tmp_path / name / "results.json")
    comparison = compare_runs(base, [cand], base_path=tmp_path / "base" / "results.json",
                              candidate_paths=[tmp_path / "cand" / "results.json"])
    write_outputs(comparison, folder, {comparison.base.label: base, comparison.candidates[0].model.label: cand})
    return folder


def judge_outcomes(audit: Path) -> dict[str, str]:
    pw = Comparison.load(audit).candidates[0].suites[0].pairwise
    assert pw is not None
    return {o.sample_id: o.outcome for o in pw.outcomes}


def rating_for(outcome: str, a_side: str) -> str | None:
    """The sheet rating (a / tie / b) that expresses `outcome` for the candidate, given which model is A."""
    if outcome == "errored":
        return None
    if outcome == "tie":
        return "tie"
    favoured = "candidate" if outcome == "win" else "base"
    return "a" if favoured == a_side else "b"


BOB_TIES = {"p00", "p02", "p04", "p06"}  # wins in the judge's verdict that bob calls ties


def intended(key: dict[str, Any], judge: dict[str, str], rater: str) -> dict[str, str]:
    """item -> rating: alice rates like the judge, bob too except four wins he calls ties, both skip unjudged pairs."""
    out = {}
    for item, k in key["items"].items():
        outcome = judge[k["sample_id"]]
        if rater == "bob" and k["sample_id"] in BOB_TIES:
            outcome = "tie"
        r = rating_for(outcome, k["a"])
        if r is not None:
            out[item] = r
    return out


def write_jsonl(path: Path, sheet: str, rater: str, ratings: dict[str, str]) -> Path:
    path.write_text("".join(json.dumps({"sheet": sheet, "item": i, "rater": rater, "rating": r}) + "\n"
                            for i, r in ratings.items()), encoding="utf-8")
    return path


def test_export_is_blinded_and_keyed(audit: Path, tmp_path: Path) -> None:
    report = (audit / "report.html").read_text(encoding="utf-8")
    assert "win rate [exact]" in report and "14 / 5 / 3" in report  # the pairwise block of the suite card
    paths = export_sheet(audit, tmp_path / "sheet", seed=3)
    html = paths["html"].read_text(encoding="utf-8")
    key = json.loads(paths["key"].read_text())
    assert len(key["items"]) == 24
    assert "base-model" not in html and "cand-model" not in html and '"a": "base"' not in html
    assert "Content-Security-Policy" in html and "http://" not in html and "https://" not in html
    sides = [k["a"] for k in key["items"].values()]
    assert 0 < sides.count("base") < 24  # A/B randomised per pair
    order = [k["sample_id"] for k in key["items"].values()]
    assert order != sorted(order)  # randomised order
    assert json.loads(export_sheet(audit, tmp_path / "again", seed=3)["key"].read_text())["items"] == key["items"]
    assert paths["csv"].read_text(encoding="utf-8").startswith("sheet,item,prompt,answer_a,answer_b,rater,rating")


def test_import_reproduces_the_judge_and_measures_agreement(audit: Path, tmp_path: Path) -> None:
    paths = export_sheet(audit, tmp_path / "sheet", seed=3)
    key = json.loads(paths["key"].read_text())
    judge = judge_outcomes(audit)
    alice = write_jsonl(tmp_path / "sheet" / "alice.jsonl", key["sheet"], "alice", intended(key, judge, "alice"))
    rep = import_ratings([alice])
    (g,) = rep["groups"]
    h = g["human"]
    assert (h["counts"]["n"], h["counts"]["wins"], h["counts"]["ties"], h["counts"]["losses"]) == (22, 14, 5, 3)
    assert h["judge_agreement"] == 1.0 and h["judge_kappa"] == pytest.approx(1.0) and h["kappa"] is None
    # the same metrics as the judge's: value, exact interval, p-value
    comp = Comparison.load(audit).candidates[0].suites[0]
    for m in g["metrics"]:
        if m["metric"] in ("win_rate", "tie_rate", "win_rate_ties_split", "win_rate/alpha"):
            jm = comp.metric(m["metric"])
            assert jm is not None and m["candidate_value"] == pytest.approx(jm.candidate_value, abs=1e-12)
            assert m["candidate_ci"][0] == pytest.approx(jm.candidate_ci[0], abs=1e-12)
            assert m["p_value"] == pytest.approx(jm.p_value, abs=1e-12)

    bob = write_jsonl(tmp_path / "sheet" / "bob.jsonl", key["sheet"], "bob", intended(key, judge, "bob"))
    rep = import_ratings([alice, bob])
    h = rep["groups"][0]["human"]
    # consensus: alice win + bob tie is a shared mode -> tie: 10 wins, 9 ties, 3 losses
    assert (h["counts"]["wins"], h["counts"]["ties"], h["counts"]["losses"]) == (10, 9, 3)
    assert h["kappa_method"] == "cohen" and h["kappa_pairs"] == 22
    p_o, p_e = 18 / 22, (14 * 10 + 5 * 9 + 3 * 3) / 22 ** 2
    assert h["kappa"] == pytest.approx((p_o - p_e) / (1 - p_e), abs=1e-12)
    assert h["judge_agreement"] == pytest.approx(18 / 22, abs=1e-12)
    # attached to the comparison and shown in the re-rendered report
    assert Comparison.load(audit).candidates[0].suites[0].pairwise.human.kappa == pytest.approx(h["kappa"])  # type: ignore[union-attr]
    report = (audit / "report.html").read_text(encoding="utf-8")
    assert "human raters" in report and "judge&ndash;human agreement" in report

    # the CLI says the same; a ratings file from another sheet is refused (exit 2)
    main(["rate", "import", str(alice), str(bob)])  # returns on success (exit 0)
    wrong = write_jsonl(tmp_path / "wrong.jsonl", "0000", "eve", {"item-0001": "a"})
    with pytest.raises(UserError, match="not this key's sheet"):
        import_ratings([wrong], key_path=paths["key"])
    bad = write_jsonl(tmp_path / "sheet" / "bad.jsonl", key["sheet"], "eve", {"item-0001": "maybe"})
    with pytest.raises(UserError, match="rating"):
        import_ratings([bad])


def test_kappa_formulas() -> None:
    # Fleiss (1971) by hand: 4 items, 3 raters: P-bar = 2/3, P_e = 50/144 -> kappa = 46/94
    items = [["win"] * 3, ["win", "win", "tie"], ["tie", "tie", "loss"], ["loss"] * 3]
    assert fleiss_kappa(items, OUT) == pytest.approx(46 / 94, abs=1e-12)
    # Cohen: 2x2-style table on three categories, p_o = 0.7, p_e = (0.5*0.4 + 0.3*0.4 + 0.2*0.2)
    a = ["win"] * 5 + ["tie"] * 3 + ["loss"] * 2
    b = ["win"] * 4 + ["tie"] + ["tie"] * 2 + ["win"] + ["loss"] * 2
    p_o = sum(x == y for x, y in zip(a, b, strict=True)) / 10
    p_e = 0.5 * 0.5 + 0.3 * 0.3 + 0.2 * 0.2
    assert cohen_kappa(a, b, OUT) == pytest.approx((p_o - p_e) / (1 - p_e), abs=1e-12)
    assert cohen_kappa(["tie"] * 4, ["tie"] * 4, OUT) is None  # chance explains everything: undefined, not 1


def test_three_raters_use_fleiss(audit: Path, tmp_path: Path) -> None:
    paths = export_sheet(audit, tmp_path / "sheet", seed=1)
    key = json.loads(paths["key"].read_text())
    judge = judge_outcomes(audit)
    files = [write_jsonl(tmp_path / "sheet" / f"{r}.jsonl", key["sheet"], r, intended(key, judge, "alice" if r != "bob" else "bob"))
             for r in ("alice", "bob", "carol")]
    h = import_ratings(files)["groups"][0]["human"]
    assert h["kappa_method"] == "fleiss" and h["kappa_raters"] == 3
    rows = []
    for sid, o in sorted(judge.items()):
        if o == "errored":
            continue
        bob = "tie" if sid in BOB_TIES else o
        rows.append([o, bob, o])
    assert h["kappa"] == pytest.approx(fleiss_kappa(rows, OUT), abs=1e-12)
    # two of three say win where bob says tie: the consensus keeps the judge's figures
    assert (h["counts"]["wins"], h["counts"]["ties"]) == (14, 5)


# ---- the sheet in a real browser ----------------------------------------------------------------


@pytest.mark.browser
def test_rating_sheet_round_trip_in_chromium(audit: Path, tmp_path: Path) -> None:
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.skip("chromium is not installed")
    sync_api = pytest.importorskip("playwright.sync_api")
    paths = export_sheet(audit, tmp_path / "sheet", seed=3)
    key = json.loads(paths["key"].read_text())
    judge = judge_outcomes(audit)
    keys = {"a": "1", "tie": "2", "b": "3"}
    saved = []
    with sync_api.sync_playwright() as p:
        try:
            browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox", "--disable-gpu"])
        except Exception as exc:  # noqa: BLE001 - a sandbox without the kernel features chromium needs
            pytest.skip(f"headless chromium could not be launched: {str(exc).splitlines()[0]}")
        requests: list[str] = []
        for rater in ("alice", "bob"):
            context = browser.new_context(accept_downloads=True)  # own local storage per rater
            page = context.new_page()
            page.on("request", lambda r: requests.append(r.url))
            errors: list[str] = []
            page.on("console", lambda m, errs=errors: errs.append(m.text) if m.type == "error" else None)
            page.goto(paths["html"].as_uri())
            page.fill("#rater", rater)
            want = intended(key, judge, rater)
            for _ in range(len(key["items"])):
                page.locator("main").click(position={"x": 1, "y": 1})  # focus off the name field
                item = page.evaluate("document.querySelector('.item:not([hidden])').dataset.item")
                page.keyboard.press(keys[want[item]] if item in want else "ArrowRight")
            with page.expect_download() as dl:
                page.click("#download")
            target = tmp_path / "sheet" / f"browser-{rater}.jsonl"
            dl.value.save_as(str(target))
            saved.append(target)
            assert not [e for e in errors if "Content Security Policy" in e], errors
            context.close()
        browser.close()
    assert all(u.startswith(("file://", "blob:")) for u in requests), requests  # nothing from the network
    rows = [json.loads(line) for line in saved[0].read_text().splitlines()]
    assert {r["item"]: r["rating"] for r in rows} == intended(key, judge, "alice")
    from_browser = import_ratings(saved, out=tmp_path / "b.json")["groups"][0]
    scripted = [write_jsonl(tmp_path / "sheet" / f"{r}.jsonl", key["sheet"], r, intended(key, judge, r)) for r in ("alice", "bob")]
    from_python = import_ratings(scripted, out=tmp_path / "p.json")["groups"][0]
    assert from_browser["metrics"] == from_python["metrics"]
    assert from_browser["human"]["kappa"] == pytest.approx(from_python["human"]["kappa"])
    assert from_browser["human"]["counts"]["win_rate"] == pytest.approx(10 / 22)
