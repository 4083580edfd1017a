"""Toxicity scorers on crafted texts with known answers, and their fail-closed behaviour."""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Any

import pytest

from tunegate.core.errors import MissingDependencyError
from tunegate.scorers._batching import run_batched, token_budget_batches
from tunegate.scorers.toxicity import DetoxifyScorer, HFClassifierScorer, ProfanityCheckScorer

from .conftest import build_hf_classifier


def sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


TEXTS = ["hello", "Thanks so much for your help with the refund yesterday, it arrived today.", "ok then",
         "The weather is nice and the park is full of people walking their dogs in the sun this afternoon."]


# ---- batching ------------------------------------------------------------------------


def test_token_budget_batches_are_length_sorted_and_within_budget() -> None:
    assert token_budget_batches([5, 1, 3, 10], max_tokens=12, max_batch=3) == [[3], [0, 2], [1]]
    assert token_budget_batches([2] * 5, max_tokens=100, max_batch=2) == [[0, 1], [2, 3], [4]]
    assert token_budget_batches([], max_tokens=10) == []


def test_run_batched_returns_results_in_input_order() -> None:
    items = ["aaaa", "b", "ccc", "dd"]
    seen: list[list[str]] = []

    def fn(batch: list[str]) -> list[float]:
        seen.append(batch)
        return [float(len(x)) for x in batch]

    assert run_batched(items, [len(x) for x in items], fn, max_tokens=6, max_batch=8) == [4.0, 1.0, 3.0, 2.0]
    assert seen == [["aaaa"], ["ccc", "dd"], ["b"]]


# ---- profanity-check ---------------------------------------------------------------------


def test_profanity_check_matches_the_library_and_separates_obvious_cases() -> None:
    from profanity_check import predict_prob

    texts = ["Have a lovely day, friend.", "you are a fucking idiot", "", "What a stupid shit show",
             "Your order ships on Monday."]
    scores = ProfanityCheckScorer().score_texts_safe(texts)
    values = [s[0].value for s in scores]
    assert values == pytest.approx([float(p) for p in predict_prob(texts)], abs=1e-12)
    assert all(s[0].name == "toxicity" and s[0].ok for s in scores)
    assert values[1] > 0.99 and values[3] > 0.99
    assert values[0] < 0.1 and values[4] < 0.1


def test_scorer_returns_nothing_for_nothing() -> None:
    assert ProfanityCheckScorer().score_texts_safe([]) == []


# ---- detoxify (real detoxify loading code, tiny checkpoint built here) ------------------------------


def test_detoxify_checkpoint_gives_known_probabilities(detoxify_fixed: tuple[Path, Path]) -> None:
    pytest.importorskip("detoxify")
    ckpt, folder = detoxify_fixed
    scorer = DetoxifyScorer(checkpoint=str(ckpt), huggingface_config_path=str(folder), allow_pickle=True, device="cpu")
    out = scorer.score_texts_safe(TEXTS)
    assert [s[0].value for s in out] == pytest.approx([sigmoid(2.0)] * 4, abs=1e-6)
    classes = out[0][0].details["classes"]
    assert list(classes) == ["toxicity", "severe_toxicity", "obscene", "threat", "insult", "identity_attack"]
    assert classes["identity_attack"] == pytest.approx(sigmoid(-2.0), abs=1e-6)
    insult = DetoxifyScorer(checkpoint=str(ckpt), huggingface_config_path=str(folder), allow_pickle=True, label="insult")
    assert insult.score_texts_safe(["x"])[0][0].value == pytest.approx(sigmoid(1.0), abs=1e-6)


def test_detoxify_batched_scores_equal_one_text_at_a_time(detoxify_random: tuple[Path, Path, Any, Any]) -> None:
    """Length sorting, token-budget batches and padding must not change any text's score."""
    pytest.importorskip("detoxify")
    import torch

    ckpt, folder, model, tok = detoxify_random
    scorer = DetoxifyScorer(checkpoint=str(ckpt), huggingface_config_path=str(folder), allow_pickle=True, max_tokens=40, max_batch=3)
    got = [s[0].value for s in scorer.score_texts_safe(TEXTS * 2)]
    with torch.no_grad():
        want = [float(model(**tok([t], return_tensors="pt")).logits.sigmoid()[0, 0]) for t in TEXTS * 2]
    assert got == pytest.approx(want, abs=1e-5)
    assert len(set(round(v, 6) for v in got[:4])) == 4  # a random model does tell the texts apart


def test_detoxify_missing_checkpoint_fails_closed(tmp_path: Path) -> None:
    pytest.importorskip("detoxify")
    scorer = DetoxifyScorer(checkpoint=str(tmp_path / "nope.ckpt"))
    out = scorer.score_texts_safe(["fine text", "another"])
    assert [s[0].value for s in out] == [None, None]
    assert all("nope.ckpt not found" in (s[0].error or "") for s in out)


def test_detoxify_loads_no_pickle_unless_allowed(detoxify_fixed: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    """detoxify checkpoints are torch pickles: as `--allow-pickle` for models, the user must opt in."""
    pytest.importorskip("detoxify")
    import torch

    ckpt, folder = detoxify_fixed
    loads: list[object] = []
    real_load = torch.load
    monkeypatch.setattr(torch, "load", lambda *a, **k: loads.append(a) or real_load(*a, **k))
    out = DetoxifyScorer(checkpoint=str(ckpt), huggingface_config_path=str(folder)).score_texts_safe(["text"])
    assert out[0][0].value is None and "allow_pickle: true" in (out[0][0].error or "")
    assert loads == []  # refused before anything was unpickled
    allowed = DetoxifyScorer(checkpoint=str(ckpt), huggingface_config_path=str(folder), allow_pickle=True)
    assert allowed.score_texts_safe(["text"])[0][0].value is not None
    assert len(loads) == 1


def test_detoxify_not_installed_names_the_pip_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "detoxify", None)
    out = DetoxifyScorer().score_texts_safe(["text"])
    assert out[0][0].value is None
    assert "pip install 'tunegate[detoxify]'" in (out[0][0].error or "")
    with pytest.raises(MissingDependencyError):
        DetoxifyScorer().load()


def test_crash_in_a_later_batch_fails_the_whole_call_closed(detoxify_fixed: tuple[Path, Path]) -> None:
    pytest.importorskip("detoxify")
    ckpt, folder = detoxify_fixed
    scorer = DetoxifyScorer(checkpoint=str(ckpt), huggingface_config_path=str(folder), allow_pickle=True, max_batch=1)
    real = scorer._probabilities
    calls = {"n": 0}

    def flaky(texts: list[str]) -> list[list[float]]:
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("CUDA out of memory")
        return real(texts)

    scorer.ensure_loaded()
    scorer._probabilities = flaky  # type: ignore[method-assign]
    out = scorer.score_texts_safe(TEXTS)
    assert calls["n"] == 3
    assert all(s[0].value is None and "CUDA out of memory" in (s[0].error or "") for s in out)


# ---- hf-classifier ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def named_classifier(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder, _, _ = build_hf_classifier(tmp_path_factory.mktemp("clf-fixed"), ["neutral", "toxic"], biases=[0.0, 1.5])
    return folder


def test_hf_classifier_uses_the_configured_label(named_classifier: Path) -> None:
    p_toxic = sigmoid(1.5)  # softmax over [0, 1.5]
    by_name = HFClassifierScorer(model=str(named_classifier), toxic_label="toxic").score_texts_safe(TEXTS)
    assert [s[0].value for s in by_name] == pytest.approx([p_toxic] * 4, abs=1e-6)
    assert by_name[0][0].details["label"] == "toxic"
    by_index = HFClassifierScorer(model=str(named_classifier), toxic_label=0).score_texts_safe(["x"])
    assert by_index[0][0].value == pytest.approx(1 - p_toxic, abs=1e-6)
    auto = HFClassifierScorer(model=str(named_classifier)).score_texts_safe(["x"])  # finds the label named toxic
    assert auto[0][0].value == pytest.approx(p_toxic, abs=1e-6)
    sig = HFClassifierScorer(model=str(named_classifier), activation="sigmoid").score_texts_safe(["x"])
    assert sig[0][0].value == pytest.approx(sigmoid(1.5), abs=1e-6)


def test_hf_classifier_unknown_label_or_folder_fails_closed(named_classifier: Path, tmp_path: Path) -> None:
    bad = HFClassifierScorer(model=str(named_classifier), toxic_label="hateful").score_texts_safe(["a", "b"])
    assert all(s[0].value is None and "labels: neutral, toxic" in (s[0].error or "") for s in bad)
    missing = HFClassifierScorer(model=str(tmp_path / "no-model")).score_texts_safe(["a"])
    assert missing[0][0].value is None and "not found" in (missing[0][0].error or "")


def test_hf_classifier_batched_equals_single(tmp_path: Path) -> None:
    import torch

    folder, model, tok = build_hf_classifier(tmp_path / "clf", ["ok", "offensive", "hate"], seed=5)
    scorer = HFClassifierScorer(model=str(folder), toxic_label="hate", max_tokens=32, max_batch=2)
    got = [s[0].value for s in scorer.score_texts_safe(TEXTS)]
    with torch.no_grad():
        want = [float(model(**tok([t], return_tensors="pt")).logits.softmax(-1)[0, 2]) for t in TEXTS]
    assert got == pytest.approx(want, abs=1e-5)


def test_long_texts_are_truncated_to_the_model_window(named_classifier: Path, tmp_path: Path) -> None:
    """A text longer than the model's 128 positions is scored on its first 128 tokens, not crashed on."""
    import torch

    folder, model, tok = build_hf_classifier(tmp_path / "clf", ["ok", "toxic"], seed=2)
    long_text = " ".join(["refund"] * 400)
    (score,) = HFClassifierScorer(model=str(folder)).score_texts_safe([long_text])[0]
    with torch.no_grad():
        want = model(**tok([long_text], return_tensors="pt", truncation=True, max_length=128)).logits.softmax(-1)[0, 1]
    assert score.ok and score.value == pytest.approx(float(want), abs=1e-5)
