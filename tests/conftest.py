"""Shared fixtures: tiny real models built on the fly (no network), and the mock backend.

The tiny models are random-init GPT-2 and Llama configs with a byte-level BPE
tokenizer trained in-process by `tokenizers` on text written here, saved as
safetensors in a session temp folder, so the real loading path (a local folder)
is what the tests exercise.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

SHARED_DATASETS = Path(__file__).resolve().parents[1].parent / "shared" / "datasets"

from tunegate.finetune.tiny import DEFAULT_CORPUS as CORPUS  # noqa: E402,F401  (re-exported for tests)
from tunegate.finetune.tiny import build_tiny_model, build_tokenizer  # noqa: E402,F401


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random GPT-2 (2 layers, 32 dims, 128 positions) in a local folder."""
    return build_tiny_model(tmp_path_factory.mktemp("tiny-gpt2"), "gpt2")


@pytest.fixture(scope="session")
def tiny_llama_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random Llama in a local folder (rotary positions, different tokenizer path)."""
    return build_tiny_model(tmp_path_factory.mktemp("tiny-llama"), "llama")


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test gets its own response cache and file-hash memo."""
    monkeypatch.setenv("TUNEGATE_CACHE", str(tmp_path / "tunegate-cache"))


@pytest.fixture
def shared_datasets(monkeypatch: pytest.MonkeyPatch) -> Path:
    """../shared/datasets, or skip with a reason when it is absent.

    Suite data must resolve inside its suite's folder or an allowed data root
    (tunegate.core.data); suites written by tests sit in tmp_path and point at the
    shared folder, so handing it out also allows it, for that test only.
    """
    if not SHARED_DATASETS.is_dir():
        pytest.skip(f"shared datasets folder not found at {SHARED_DATASETS}")
    from tunegate.core.data import DATA_ROOTS_ENV

    monkeypatch.setenv(DATA_ROOTS_ENV, str(SHARED_DATASETS))
    return SHARED_DATASETS
