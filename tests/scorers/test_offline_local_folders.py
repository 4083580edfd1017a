"""`detoxify` and `hf-classifier` load from local files with no network and an empty Hugging Face cache.

A real detoxify checkpoint names its base model by Hub id (`bert-base-uncased`);
detoxify itself would read that config from the Hub even with
`huggingface_config_path`, so tunegate loads it from the local folder.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.scorers.conftest import build_detoxify_checkpoint, build_hf_classifier
from tunegate.scorers.toxicity import DetoxifyScorer, HFClassifierScorer


@pytest.fixture
def empty_hub_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty-hf-home"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-hf-home" / "hub"))


def test_detoxify_release_style_checkpoint_loads_offline(tmp_path: Path, empty_hub_cache: None) -> None:
    pytest.importorskip("detoxify")
    import torch

    folder = tmp_path / "bert-base-uncased"
    path, _, _ = build_detoxify_checkpoint(folder, biases=[2.0, -3.0, 0.0, -1.0, 1.0, -2.0])
    ckpt = torch.load(path, weights_only=False)
    ckpt["config"]["arch"]["args"]["model_type"] = "bert-base-uncased"  # as in detoxify's release checkpoints
    torch.save(ckpt, path)
    s = DetoxifyScorer(checkpoint=str(path), huggingface_config_path=str(folder), allow_pickle=True, device="cpu")
    (score,) = s.score_texts_safe(["an ordinary sentence"])[0]
    assert score.ok, score.error
    assert score.value == pytest.approx(torch.sigmoid(torch.tensor(2.0)).item(), abs=1e-5)
    assert set(score.details["classes"]) == {"toxicity", "severe_toxicity", "obscene", "threat", "insult", "identity_attack"}


def test_detoxify_local_folder_without_config_fails_closed(tmp_path: Path, empty_hub_cache: None) -> None:
    pytest.importorskip("detoxify")
    folder = tmp_path / "base"
    path, _, _ = build_detoxify_checkpoint(folder)
    empty = tmp_path / "empty"
    empty.mkdir()
    (score,) = DetoxifyScorer(checkpoint=str(path), huggingface_config_path=str(empty), allow_pickle=True).score_texts_safe(["x"])[0]
    assert not score.ok and "config.json" in (score.error or "")


def test_hf_classifier_loads_a_relative_local_folder_offline(tmp_path: Path, empty_hub_cache: None,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    build_hf_classifier(tmp_path / "models" / "tox", ["non-toxic", "toxic"], biases=[0.0, 1.0])
    monkeypatch.chdir(tmp_path)
    assert os.path.isdir("models/tox")
    for ref in ("models/tox", "./models/tox", str(tmp_path / "models" / "tox")):
        (score,) = HFClassifierScorer(model=ref, device="cpu").score_texts_safe(["hello there"])[0]
        assert score.ok, (ref, score.error)
        assert score.details["label"] == "toxic"
