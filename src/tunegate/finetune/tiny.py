"""Tiny random-init causal LMs built on the fly, for the offline demo and the tests.

Nothing is downloaded: a byte-level BPE tokenizer is trained in-process by
`tokenizers` on a small corpus, and a GPT-2 or Llama config with a few thousand
parameters per layer is initialised from a seed and saved as safetensors in a
normal transformers folder, so it goes through the same loading path as any
local model a user names.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

DEFAULT_CORPUS = [
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
]


def build_tokenizer(out: Path, corpus: Iterable[str] | None = None, vocab_size: int = 512) -> Any:
    """Train a byte-level BPE tokenizer and save it as a transformers fast tokenizer in `out`."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    texts = list(corpus) if corpus is not None else DEFAULT_CORPUS * 20
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["<|endoftext|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(texts, trainer=trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|endoftext|>", eos_token="<|endoftext|>",
                                   unk_token="<|endoftext|>")
    fast.save_pretrained(out)
    return fast


def build_tiny_model(out: Path, arch: str = "gpt2", seed: int = 0, n_positions: int = 128,
                     hidden: int = 32, layers: int = 2, heads: int = 2, corpus: Iterable[str] | None = None,
                     vocab_size: int = 512, pad_vocab_to: int | None = None) -> Path:
    """Random-init tiny causal LM + tokenizer saved (safetensors) under `out`; returns `out`.

    `pad_vocab_to` gives the model more embedding rows than the tokenizer has
    tokens (as real checkpoints pad their vocabulary, e.g. Pythia's 50,304), so a
    small model can have a realistic LM-head cost.
    """
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM, MistralConfig, MistralForCausalLM

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    tok = build_tokenizer(out, corpus, vocab_size)
    torch.manual_seed(seed)
    n_vocab = max(len(tok), pad_vocab_to or 0)
    if arch == "gpt2":
        cfg = GPT2Config(vocab_size=n_vocab, n_positions=n_positions, n_embd=hidden, n_layer=layers, n_head=heads,
                         bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)
        model: Any = GPT2LMHeadModel(cfg)
    elif arch == "llama":
        llama_cfg = LlamaConfig(vocab_size=n_vocab, hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=layers,
                                num_attention_heads=heads, num_key_value_heads=heads, max_position_embeddings=n_positions,
                                bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)
        model = LlamaForCausalLM(llama_cfg)
    elif arch == "mistral":  # sliding-window attention (window 4): exercises caches whose layers see a window
        mistral_cfg = MistralConfig(vocab_size=n_vocab, hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=layers,
                                    num_attention_heads=heads, num_key_value_heads=heads, max_position_embeddings=n_positions,
                                    sliding_window=4, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)
        model = MistralForCausalLM(mistral_cfg)
    else:
        raise ValueError(f"unknown tiny architecture {arch!r}; use gpt2, llama or mistral")
    model.save_pretrained(out, safe_serialization=True)
    return out
