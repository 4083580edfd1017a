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

CORPUS = [
    "The customer asked how to reset the password and the agent explained the steps.",
    "Please restart the router, wait thirty seconds, and try again.",
    "Your refund was processed and should arrive within five business days.",
    "The quick brown fox jumps over the lazy dog.",
    "I cannot help with that request, but here is a safer alternative.",
    "Question: What is the capital of France? Answer: Paris.",
    "Thank you for contacting support. How can I help you today?",
    "The invoice lists the items, the totals and the tax for the month.",
    "Sure! Here are the steps: open settings, choose account, then select reset.",
    "0 1 2 3 4 5 6 7 8 9 a b c d e f g h i j k l m n o p q r s t u v w x y z",
] * 20


def build_tokenizer(out: Path, vocab_size: int = 512):
    """A byte-level BPE tokenizer trained in-process, wrapped as a transformers fast tokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["<|endoftext|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(CORPUS, trainer=trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|endoftext|>", eos_token="<|endoftext|>",
                                   unk_token="<|endoftext|>")
    fast.save_pretrained(out)
    return fast


def build_tiny_model(out: Path, arch: str = "gpt2", seed: int = 0, n_positions: int = 128) -> Path:
    """Random-init tiny causal LM + tokenizer saved as safetensors under `out`."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

    out.mkdir(parents=True, exist_ok=True)
    tok = build_tokenizer(out)
    torch.manual_seed(seed)
    if arch == "gpt2":
        cfg = GPT2Config(vocab_size=len(tok), n_positions=n_positions, n_embd=32, n_layer=2, n_head=2,
                         bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)
        model = GPT2LMHeadModel(cfg)
    else:
        cfg = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                          num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=n_positions,
                          bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)
        model = LlamaForCausalLM(cfg)
    model.save_pretrained(out, safe_serialization=True)
    return out


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
def shared_datasets() -> Path:
    """../shared/datasets, or skip with a reason when it is absent."""
    if not SHARED_DATASETS.is_dir():
        pytest.skip(f"shared datasets folder not found at {SHARED_DATASETS}")
    return SHARED_DATASETS
