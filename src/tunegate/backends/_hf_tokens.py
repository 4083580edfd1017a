"""Tokenisation rules shared by the `hf` backend's scoring and generation.

The context/continuation boundary follows lm-evaluation-harness: trailing
spaces of the context move to the continuation, the pair is encoded whole, and
the continuation's tokens are what follows the context's own encoding. An empty
context means "after the BOS token" (EOS when the model has no BOS).
"""

from __future__ import annotations

from typing import Any


def bos_id(tokenizer: Any) -> int:
    tid = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
    if tid is None:
        raise ValueError("the tokenizer has neither a BOS nor an EOS token to use as the empty context")
    return int(tid)


def wants_bos(tokenizer: Any) -> bool:
    """True when the tokenizer itself would prepend BOS (Llama-style); we then keep it on every context."""
    return bool(getattr(tokenizer, "add_bos_token", False)) and tokenizer.bos_token_id is not None


def encode(tokenizer: Any, text: str) -> list[int]:
    return list(tokenizer(text, add_special_tokens=False)["input_ids"]) if text else []


def encode_pair(tokenizer: Any, context: str, continuation: str,
                memo: dict[str, list[int]] | None = None) -> tuple[list[int], list[int]]:
    """(context ids, continuation ids) with the lm-eval boundary rule.

    `memo` caches context encodings across the requests of one call: the K
    choices of a question share their context, which is then tokenised once.
    """
    if context == "":
        return [bos_id(tokenizer)], encode(tokenizer, continuation)
    n_spaces = len(context) - len(context.rstrip())
    if n_spaces:
        continuation = context[-n_spaces:] + continuation
        context = context[:-n_spaces]
    whole = encode(tokenizer, context + continuation)
    if memo is None:
        ctx = encode(tokenizer, context)
    elif context in memo:
        ctx = memo[context]
    else:
        ctx = memo[context] = encode(tokenizer, context)
    cont = whole[len(ctx):]
    if wants_bos(tokenizer):
        ctx = [bos_id(tokenizer)] + ctx
    return ctx, cont


def encode_prompt(tokenizer: Any, prompt: str, chat_template: bool) -> list[int]:
    """Prompt ids for generation, optionally wrapped in the tokenizer's chat template."""
    if chat_template:
        if not getattr(tokenizer, "chat_template", None):
            raise ValueError("--chat-template was asked for but the tokenizer has no chat template")
        text = tokenizer.apply_chat_template([{"role": "user", "content": prompt}], add_generation_prompt=True, tokenize=False)
        return encode(tokenizer, text)
    ids = encode(tokenizer, prompt)
    if wants_bos(tokenizer) or not ids:
        ids = [bos_id(tokenizer)] + ids
    return ids


def left_truncate(tokenizer: Any, ids: list[int], room: int) -> tuple[list[int], int]:
    """The last `room` of `ids` (keeping a leading BOS the tokenizer wants), and how many tokens were dropped.

    Used for generation prompts: the start of a too-long prompt is cut so the
    full `max_new_tokens` budget still fits the window; the count is recorded
    in the response (`truncated_tokens`), never dropped silently.
    """
    if room < 1:
        raise ValueError("room must be at least one token")
    if len(ids) <= room:
        return ids, 0
    if room >= 2 and wants_bos(tokenizer) and ids[0] == bos_id(tokenizer):
        kept = [ids[0]] + ids[len(ids) - (room - 1):]
    else:
        kept = ids[len(ids) - room:]
    return kept, len(ids) - len(kept)
