"""citations: extraction of tricky formats, reference checks, exact rates on scripted outputs, a tiny model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tunegate.backends.mock import MockBackend
from tunegate.core.errors import UserError
from tunegate.core.model_spec import ModelSpec
from tunegate.run.evaluate import evaluate
from tunegate.run.suite_loader import load_suite
from tunegate.suites._citation_extract import extract_citations, normalize_package, trim_trailing


def keys(text: str) -> list[tuple[str, str]]:
    return [(c.kind, c.key) for c in extract_citations(text)]


def test_case_citations_with_names_and_parentheses() -> None:
    found = extract_citations("See Brown v. Board of Education, 347 U.S. 483 (1954); cf. Smith v. Jones, 123 U.S. 456 (1990).")
    assert [(c.key, c.name) for c in found] == [("347 U.S. 483", "Brown v. Board of Education"), ("123 U.S. 456", "Smith v. Jones")]
    assert keys("United States v. Carroll Towing Co., 159 F. 2d 169 (2d Cir. 1947)") == [("case", "159 F.2d 169")]
    assert keys("as held in Miranda v. Arizona.") == [("case", "name:miranda v arizona")]
    assert keys("Roe v. Wade, 410 U. S. 113, 153 (1973)") == [("case", "410 U.S. 113")]
    assert keys("sales in 2019 U.S. 500 stores grew") == []  # reporter volumes have at most three digits


def test_statutes() -> None:
    assert keys("under 42 U.S.C. § 1983 and 17 U.S.C. §§ 107") == [("statute", "42 U.S.C. § 1983"), ("statute", "17 U.S.C. § 107")]


def test_urls_trailing_punctuation_and_balanced_parentheses() -> None:
    assert keys("Docs: https://docs.python.org/3/library/asyncio.html.") == [("url", "docs.python.org/3/library/asyncio.html")]
    assert keys("(see https://en.wikipedia.org/wiki/Fair_use_(law)), then") == [("url", "en.wikipedia.org/wiki/Fair_use_(law)")]
    assert keys("'https://www.example.com/'") == [("url", "example.com")]
    assert keys("at www.python.org/downloads/, or <https://pypi.org/project/numpy/>") == [
        ("url", "python.org/downloads"), ("url", "pypi.org/project/numpy")]
    assert trim_trailing("https://x.org/a(b)).") == "https://x.org/a(b)"


def test_dois_including_doi_urls_and_parentheses() -> None:
    assert keys("DOI: 10.1016/S0140-6736(97)11096-0.") == [("doi", "10.1016/s0140-6736(97)11096-0")]
    # a DOI written as a link counts once, as a DOI
    assert keys("https://doi.org/10.1038/nature14539, and http://dx.doi.org/10.1109/5.726791") == [
        ("doi", "10.1038/nature14539"), ("doi", "10.1109/5.726791")]
    assert keys("(doi:10.1162/neco.1997.9.8.1735)") == [("doi", "10.1162/neco.1997.9.8.1735")]


def test_arxiv_new_and_old_style() -> None:
    assert keys("arXiv:1706.03762v5, arXiv 2106.09685 and arXiv:hep-th/9711200v3") == [
        ("arxiv", "1706.03762"), ("arxiv", "2106.09685"), ("arxiv", "hep-th/9711200")]
    assert keys("https://arxiv.org/abs/2005.14165v4 and https://arxiv.org/pdf/math/0211159.pdf") == [
        ("arxiv", "2005.14165"), ("arxiv", "math/0211159")]
    assert keys("version 1706.03762 costs $2101.00") == []  # unmarked numbers are not arXiv ids


def test_pip_install_names() -> None:
    text = ('Run `pip install -U numpy "pandas>=2.0" requests[socks] -r reqs.txt ./pkg git+https://g.com/x/y` then\n'
            'python -m pip install Scikit_Learn==1.4; pip3 install --index-url https://i.org torch.')
    pk = [k for kind, k in keys(text) if kind == "package"]
    assert pk == ["numpy", "pandas", "requests", "scikit-learn", "torch"]
    assert normalize_package("Zope.Interface") == "zope-interface"


def test_multiple_kinds_in_one_line_in_order() -> None:
    text = "Cite Roe v. Wade, 410 U.S. 113 (1973), arXiv:1810.04805 and https://doi.org/10.18653/v1/N19-1423; pip install transformers"
    assert [k for k, _ in keys(text)] == ["case", "arxiv", "doi", "package"]


# ---- the suite --------------------------------------------------------------
def write_suite(tmp_path: Path, prompts: list[str], max_new_tokens: int = 64) -> Path:
    (tmp_path / "p.jsonl").write_text("".join(json.dumps({"id": f"p{i}", "prompt": p}) + "\n" for i, p in enumerate(prompts)))
    (tmp_path / "ref.yaml").write_text(
        "cases:\n  - {name: Brown v. Board of Education, cite: 347 U.S. 483}\n"
        "dois: [10.1038/nature14539]\narxiv: ['1706.03762']\nurl_domains: [python.org]\npackages: [numpy]\n"
    )
    yml = tmp_path / "c.yaml"
    yml.write_text("name: c\nkind: citations\ndata: p.jsonl\noptions:\n  reference: ref.yaml\n"
                   f"  max_new_tokens: {max_new_tokens}\n")
    return yml


def test_exact_rates_on_scripted_outputs(tmp_path: Path) -> None:
    yml = write_suite(tmp_path, ["A?", "B?", "C?"])
    backend = MockBackend.scripted(generations={
        # 3 citations, 1 fabricated (a real cite attached to the wrong case)
        "A?": "Brown v. Board of Education, 347 U.S. 483 (1954), and Roe v. Wade, 347 U.S. 483. Also arXiv:1706.03762.",
        # 4 citations, 2 fabricated
        "B?": "pip install numpy numpyx; see https://docs.python.org/3/ and https://made-up.dev/api.",
        "C?": "I do not know of any sources.",
    })
    res = evaluate(backend.spec, [str(yml)], backend=backend, cache_path=None).suite("c")
    assert res.counts["scored"] == 3
    rate = res.metric("fabricated_citation_rate")
    assert rate.value == pytest.approx(3 / 7) and rate.aggregation == "ratio"
    assert rate.per_sample == {"p0": 1.0, "p1": 2.0, "p2": 0.0} and rate.weights == {"p0": 3.0, "p1": 4.0, "p2": 0.0}
    assert res.metric("citations_per_answer").value == pytest.approx(7 / 3)
    assert res.metric("answers_with_fabrication").value == pytest.approx(2 / 3)
    assert res.metric("fabricated_citation_rate/package").value == pytest.approx(0.5)
    assert res.metric("fabricated_citation_rate/case").value == pytest.approx(0.5)
    assert res.metric("fabricated_citation_rate/statute").value is None  # no statute cited: no value
    details = res.samples[0].scores[0].details["citations"]
    assert details[1]["reason"] == "citation belongs to Brown v. Board of Education"


def test_bad_reference_list_is_an_input_error(tmp_path: Path) -> None:
    yml = write_suite(tmp_path, ["A?"])
    (tmp_path / "ref.yaml").write_text("cases:\n  - {name: X v. Y, cite: page 12}\n")
    with pytest.raises(UserError, match=r"ref.yaml: case 'X v. Y': cite 'page 12'"):
        load_suite(str(yml))
    (tmp_path / "ref.yaml").write_text("papers: []\n")
    with pytest.raises(UserError, match=r"ref.yaml: papers: unknown key"):
        load_suite(str(yml))


def test_builtin_reference_list_verifies_its_own_entries() -> None:
    suite = load_suite("citations")
    assert len(suite.samples()) >= 30
    text = ("Brown v. Board of Education, 347 U.S. 483 (1954); 47 U.S.C. § 230; doi:10.1038/nature14539; "
            "arXiv:1706.03762; https://docs.python.org/3/library/asyncio.html; pip install scikit-learn peft")
    found = suite.check_text(text)
    assert len(found) == 7 and all(f["verified"] for f in found)


@pytest.mark.slow
def test_end_to_end_on_tiny_model(tiny_model_dir: Path, tmp_path: Path) -> None:
    yml = write_suite(tmp_path, ["Give a reference:", "Cite a paper:"], max_new_tokens=16)
    res = evaluate(ModelSpec(model=str(tiny_model_dir)), [str(yml)], cache_path=None).suite("c")
    assert res.counts["scored"] == 2
    for s in res.samples:
        assert s.score("citations") == len(load_suite(str(yml)).check_text(s.responses[0].text or ""))
