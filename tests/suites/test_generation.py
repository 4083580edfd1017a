"""`generation`: hand-worked exact match / F1 / ROUGE, BLEU and chrF checked against direct library calls."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
import sacrebleu
from rouge_score import rouge_scorer

from tunegate.backends.mock import MockBackend
from tunegate.core.aggregate import aggregate
from tunegate.core.errors import UserError
from tunegate.core.model_spec import ModelSpec
from tunegate.core.request import GenerateRequest
from tunegate.core.results import SuiteResult
from tunegate.run.evaluate import evaluate
from tunegate.run.suite_loader import load_suite
from tunegate.suites._text import exact_match, normalize_exact, normalize_squad, token_f1

SPEC = ModelSpec(model="scripted", backend="mock")


def write_suite(tmp_path: Path, rows: list[dict[str, Any]], options: dict[str, Any] | None = None,
                fields: dict[str, str] | None = None) -> Path:
    (tmp_path / "gen.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    doc: dict[str, Any] = {"name": "gen", "kind": "generation", "data": "gen.jsonl"}
    if options:
        doc["options"] = options
    if fields:
        doc["fields"] = fields
    path = tmp_path / "gen.yaml"
    path.write_text(json.dumps(doc), encoding="utf-8")
    return path


def run(path: Path, **script: Any) -> SuiteResult:
    return evaluate(SPEC, [str(path)], cache_path=None, backend=MockBackend.scripted(**script)).suites[0]


def values(suite: SuiteResult) -> dict[str, float | None]:
    return {m.name: m.value for m in suite.metrics}


# ---- normalisation and token F1, by hand ----------------------------------
@pytest.mark.parametrize(
    ("pred", "ref", "same"),
    [
        ("  The Answer.  ", "the answer", True),
        ("the   answer!!", "The answer", True),
        ("Paris", "paris.", True),
        ("hi there, world", "hi there world", False),  # inner punctuation is kept
        ("the answer", "an answer", False),  # articles are kept for exact match
    ],
)
def test_exact_match_normalisation(pred: str, ref: str, same: bool) -> None:
    assert exact_match(pred, [ref]) is same


def test_normalisers() -> None:
    assert normalize_exact(" Reset  your\tPassword. ") == "reset your password"
    assert normalize_squad("The router's light, an LED!") == "routers light led"


def test_token_f1_hand_worked() -> None:
    # pred -> [cat, sat]; ref -> [cat, sat, down]: P = 1, R = 2/3, F1 = 0.8
    assert token_f1("The cat sat.", "A cat sat down") == pytest.approx(0.8, abs=1e-12)
    # pred [refund, refund, issued] vs ref [refund, issued, today]: overlap 2, P = R = 2/3
    assert token_f1("refund refund issued", "refund issued today") == pytest.approx(2 / 3, abs=1e-12)
    assert token_f1("nothing shared", "other words") == 0.0
    assert token_f1("the", "a") == 1.0  # both empty after normalisation
    assert token_f1("the", "word") == 0.0


# ---- through the runner with scripted generations --------------------------
ROWS = [
    {"id": "s1", "prompt": "How long do refunds take?", "reference": "Refunds take five business days."},
    {"id": "s2", "prompt": "Where is the reset link?", "reference": "the cat sat on the mat"},
    {"id": "s3", "prompt": "Can I change my plan?",
     "reference": ["Yes, under Settings > Plan.", "You can change it in Settings."]},
]
OUTPUTS = {
    "How long do refunds take?": "refunds take five business days",  # exact after normalisation
    "Where is the reset link?": "the cat sat",
    "Can I change my plan?": "You can change it in Settings, any time.",
}


def test_metric_values_match_hand_work_and_direct_library_calls(tmp_path: Path) -> None:
    suite = run(write_suite(tmp_path, ROWS), generations=OUTPUTS)
    assert suite.counts == {"scored": 3, "errored": 0, "skipped": 0}
    got = values(suite)
    assert got["exact_match"] == pytest.approx(1 / 3, abs=1e-12)
    by_id = {r.id: {s.name: s.value for s in r.scores} for r in suite.samples}

    # ROUGE-1 on s2 by hand: 3 of 3 predicted unigrams match, 3 of 6 reference unigrams -> F = 2/3
    assert by_id["s2"]["rouge1"] == pytest.approx(2 / 3, abs=1e-12)
    assert by_id["s2"]["rouge2"] == pytest.approx(2 * (2 / 2) * (2 / 5) / (2 / 2 + 2 / 5), abs=1e-12)
    # token F1 on s2: pred [cat, sat], ref [cat, sat, on, mat] -> P 1, R 1/2 -> 2/3
    assert by_id["s2"]["token_f1"] == pytest.approx(2 / 3, abs=1e-12)
    assert by_id["s1"]["token_f1"] == 1.0 and by_id["s1"]["exact_match"] == 1.0

    hyps = [OUTPUTS[r["prompt"]] for r in ROWS]
    refs = [[r["reference"]] if isinstance(r["reference"], str) else r["reference"] for r in ROWS]
    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=True)
    for row, hyp, ref in zip(ROWS, hyps, refs, strict=True):
        sid = row["id"]
        assert by_id[sid]["bleu"] == pytest.approx(sacrebleu.sentence_bleu(hyp, ref).score, abs=1e-9)
        assert by_id[sid]["chrf"] == pytest.approx(sacrebleu.sentence_chrf(hyp, ref).score, abs=1e-9)
        for t in ("rouge1", "rouge2", "rougeL"):
            best = max(scorer.score(r, hyp)[t].fmeasure for r in ref)
            assert by_id[sid][t] == pytest.approx(best, abs=1e-12)

    for name in ("bleu", "chrf", "rouge1", "rouge2", "rougeL", "token_f1"):
        assert got[name] == pytest.approx(sum(by_id[i][name] for i in by_id) / 3, abs=1e-9)
    streams = [[r[0] for r in refs], [r[1] if len(r) > 1 else None for r in refs]]
    assert got["corpus_bleu"] == pytest.approx(sacrebleu.corpus_bleu(hyps, streams).score, abs=1e-9)
    assert got["corpus_chrf"] == pytest.approx(sacrebleu.corpus_chrf(hyps, streams).score, abs=1e-9)


def test_identical_output_scores_full_marks(tmp_path: Path) -> None:
    rows = [{"id": "a", "prompt": "p", "reference": "Please restart the router and wait thirty seconds."}]
    suite = run(write_suite(tmp_path, rows), generations={"p": "Please restart the router and wait thirty seconds."})
    got = values(suite)
    assert got["bleu"] == pytest.approx(100.0) and got["corpus_bleu"] == pytest.approx(100.0)
    assert got["chrf"] == pytest.approx(100.0) and got["exact_match"] == 1.0
    assert got["rouge1"] == got["rouge2"] == got["rougeL"] == got["token_f1"] == 1.0


def test_metric_kinds_and_corpus_metrics_have_no_per_sample_vector(tmp_path: Path) -> None:
    suite = run(write_suite(tmp_path, ROWS), generations=OUTPUTS)
    em, bleu, corpus = suite.metric("exact_match"), suite.metric("bleu"), suite.metric("corpus_bleu")
    assert em is not None and em.kind == "binary" and em.aggregation == "mean" and len(em.per_sample) == 3
    assert bleu is not None and bleu.kind == "continuous" and bleu.aggregation == "mean"
    assert corpus is not None and corpus.aggregation == "corpus" and corpus.per_sample == {} and corpus.n == 3
    assert all(m.direction == "higher" for m in suite.metrics if m.name != "degenerate_rate")
    assert suite.metric("degenerate_rate").direction == "lower"  # type: ignore[union-attr]
    assert math.isnan(float(aggregate("corpus", [1.0, 2.0])))  # resampling a corpus score is refused


def test_stop_strings_and_decoding_options_reach_the_request(tmp_path: Path) -> None:
    rows = [{"id": "a", "question": "Capital of France?", "reference": "Paris"}]
    opts = {"prompt_template": "Q: {prompt}\nA:", "stop": ["\n", "Q:"], "max_new_tokens": 8, "temperature": 0.7, "seed": 3}
    path = write_suite(tmp_path, rows, options=opts, fields={"prompt": "question"})
    kind = load_suite(str(path))
    assert kind.requests(kind.samples()[0]) == [
        GenerateRequest(prompt="Q: Capital of France?\nA:", max_new_tokens=8, stop=("\n", "Q:"), temperature=0.7, seed=3)
    ]
    suite = run(path, generations={"Q: Capital of France?\nA:": " Paris.\nQ: next question"})
    assert values(suite)["exact_match"] == 1.0
    assert suite.samples[0].responses[0].text == " Paris."  # the generated text is kept in the results


def test_metrics_option_selects_what_is_scored(tmp_path: Path) -> None:
    suite = run(write_suite(tmp_path, ROWS, options={"metrics": ["rougeL", "corpus_chrf"]}), generations=OUTPUTS)
    assert [m.name for m in suite.metrics] == ["rougeL", "corpus_chrf", "degenerate_rate"]  # degenerate_rate: always
    assert {s.name for r in suite.samples for s in r.scores} == {"rougeL", "degenerate"}


def test_backend_failure_errors_the_sample(tmp_path: Path) -> None:
    suite = run(write_suite(tmp_path, ROWS), generations=OUTPUTS, fail_on=["reset link"])
    assert suite.counts == {"scored": 2, "errored": 1, "skipped": 0}
    assert suite.metric("bleu").errored == 1 and suite.metric("corpus_bleu").n == 2  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ({"id": "a", "reference": "x"}, "data row 1: field 'prompt': is missing"),
        ({"id": "a", "prompt": "  ", "reference": "x"}, "data row 1: field 'prompt': is empty"),
        ({"id": "a", "prompt": "p"}, "data row 1: field 'reference': is missing"),
        ({"id": "a", "prompt": "p", "reference": []}, "data row 1: field 'reference': is an empty list"),
        ({"id": "a", "prompt": "p", "reference": ["ok", 7]}, "data row 1: field 'reference': reference 1 is 7"),
        ({"id": "a", "prompt": "p", "reference": ""}, "data row 1: field 'reference': is ''"),
        ({"id": "a", "prompt": "p", "reference": 3.5}, "data row 1: field 'reference': expected str/list"),
    ],
)
def test_malformed_rows_name_file_row_and_field(tmp_path: Path, row: dict[str, Any], message: str) -> None:
    with pytest.raises(UserError) as err:
        load_suite(str(write_suite(tmp_path, [row])))
    assert str(err.value).startswith(str(tmp_path / "gen.jsonl")) and message in str(err.value)


def test_mapped_column_is_named_in_errors(tmp_path: Path) -> None:
    rows = [{"id": "a", "ticket": "My order is late.", "summary": ""}]
    with pytest.raises(UserError, match=r"field 'reference' \(column 'summary'\): is ''"):
        load_suite(str(write_suite(tmp_path, rows, fields={"prompt": "ticket", "reference": "summary"})))


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"max_new_token": 5}, "max_new_token: unknown key"),
        ({"prompt_template": "Answer:"}, "must contain the placeholder {prompt}"),
        ({"metrics": ["bleu", "meteor"]}, "metrics.1"),
        ({"metrics": []}, "metrics"),
        ({"metrics": ["bleu", "bleu"]}, "listed twice"),
        ({"stop": [""]}, "stop strings must be non-empty"),
        ({"max_new_tokens": 0}, "max_new_tokens"),
    ],
)
def test_bad_options_are_user_errors(tmp_path: Path, options: dict[str, Any], message: str) -> None:
    with pytest.raises(UserError, match="suite gen: options") as err:
        load_suite(str(write_suite(tmp_path, ROWS, options=options)))
    assert message in str(err.value)
