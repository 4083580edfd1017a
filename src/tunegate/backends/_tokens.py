"""Token-level rules every local backend shares: the context/continuation boundary, prompts, windows.

One module, imported by the `hf` and the `vllm` backends alike, so the two can
never disagree on *which* tokens are scored: an hf run and a vllm run of the
same weights ask the model about the same token ids, and their numbers differ
only by kernel arithmetic (the parity test holds them to 1e-3 nats in float32).

The context/continuation boundary follows lm-evaluation-harness: trailing
spaces of the context move to the continuation, the pair is encoded whole, and
the continuation's tokens are what follows the context's own encoding. An empty
context means "after the BOS token" (EOS when the model has no BOS).

Everything here takes a transformers tokenizer (`AutoTokenizer`) and returns
plain lists of ids; nothing imports torch or a serving engine.
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


def windows(context: list[int], continuation: list[int], max_length: int) -> list[tuple[list[int], list[int]]]:
    """Split scoring of `continuation` after `context` into (inputs, targets) rows of at most `max_length` inputs.

    Row k predicts targets S[a:b] of S = context + continuation from inputs
    S[s:b-1], s = max(0, b-1-max_length): the targets are the last b-a
    predictions of the row, each conditioned on as much text as fits.
    """
    seq = context + continuation
    rows = []
    a = len(context)
    while a < len(seq):
        b = min(len(seq), a + max_length)
        s = max(0, b - 1 - max_length)
        rows.append((seq[s : b - 1], seq[a:b]))
        a = b
    return rows


def dropped_context(n_context: int, n_continuation: int, max_length: int) -> int:
    """Context tokens missing from the inputs of `windows`' first row (0 when the pair fits the window)."""
    first_end = min(n_context + n_continuation, n_context + max_length)
    return max(0, first_end - 1 - max_length)


def window_limit(config: Any, tokenizer: Any, requested: int | None) -> int:
    """The model's window in tokens: the config's position limit, the tokenizer's, and the user's, smallest wins.

    `config` is a transformers `PretrainedConfig` (or anything with those
    attributes). Without any limit in the config, 2048 is assumed.
    """
    limits = [getattr(config, a) for a in ("max_position_embeddings", "n_positions", "n_ctx")
              if isinstance(getattr(config, a, None), int)]
    model_max = min(limits) if limits else 2048
    tok_max = getattr(tokenizer, "model_max_length", None)
    if isinstance(tok_max, int) and 0 < tok_max < 1_000_000:
        model_max = min(model_max, tok_max)
    return min(requested, model_max) if requested else model_max
