"""Batched generation for the `hf` backend: a small decoding loop we own.

Why not `model.generate`: each row must stop on its *own* stop strings or EOS
and then stop costing compute; its slot is refilled with a waiting prompt
(prefilled with the other joiners, then spliced into the running KV cache with
left padding), so the batch stays full instead of decoding until its slowest
row finishes. The cache grows in place (`_hf_cache.GrowingLayer`) instead of
being re-copied at every step. Stop checks decode only a row's tail. Seeded
sampling gives a request the same text whatever batch it lands in (one RNG per
request). Prompts are length-sorted and left-padded with explicit position ids;
greedy decoding is the default. The cache is built without a model config, so
a sliding-window model keeps full layers and its attention mask applies the
window (tested on a tiny Mistral). Caches holding any other layer type (e.g. a
recurrent state) are never spliced: those models decode batch by batch.

The requested budget is never reduced: a prompt too long for prompt +
`max_new_tokens` to fit `max_length` is cut from the left (the count goes into
the response's `truncated_tokens`), and a budget that leaves no room for any
prompt token is an error response. A row whose logits stop being finite (a
diverged model: NaN, +inf, or nothing finite at all) ends at once as an error
response ("non-finite logits") instead of decoding garbage tokens.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from tunegate.backends._hf_tokens import encode_prompt, left_truncate
from tunegate.core.request import GenerateRequest, Response

if TYPE_CHECKING:
    from tunegate.backends.hf import HFBackend


@dataclass
class _RowState:
    index: int
    request: GenerateRequest
    prompt: list[int]
    generated: list[int] = field(default_factory=list)
    finish: str | None = None
    rng: Any = None
    tail: int = 0
    truncated: int = 0
    error: str | None = None


def _first_stop(text: str, stops: tuple[str, ...]) -> int | None:
    hits = [text.find(s) for s in stops if s and s in text]
    return min(hits) if hits else None


def _pick(torch: Any, logits: Any, row: _RowState) -> int:
    req = row.request
    if req.temperature <= 0.0:
        return int(logits.argmax())
    probs = torch.softmax(logits / req.temperature, dim=-1)
    if req.top_p < 1.0:
        sorted_p, order = probs.sort(descending=True)
        cum = sorted_p.cumsum(-1)
        cut = cum - sorted_p > req.top_p
        sorted_p[cut] = 0.0
        probs = torch.zeros_like(probs).scatter(-1, order, sorted_p)
    return int(torch.multinomial(probs.cpu(), 1, generator=row.rng))


def _step_row(backend: HFBackend, row: _RowState, token: int) -> None:
    """Append `token` and decide whether the row is finished (EOS, stop string, length)."""
    tok = backend.tokenizer
    if token == tok.eos_token_id:
        row.finish = "eos"
        return
    row.generated.append(token)
    if row.request.stop:
        tail = str(tok.decode(row.generated[-row.tail:], skip_special_tokens=True))
        if _first_stop(tail, row.request.stop) is not None:
            row.finish = "stop"
            return
    if len(row.generated) >= row.request.max_new_tokens:
        row.finish = "length"


def _prefill(backend: HFBackend, rows: list[_RowState]) -> tuple[Any, Any, Any, Any]:
    """Run the prompts of `rows` (left-padded, explicit positions): (cache, mask, last positions, last logits)."""
    torch = backend.torch
    from transformers import DynamicCache

    dev = backend.device
    width = max(len(r.prompt) for r in rows)
    ids = torch.full((len(rows), width), backend.tokenizer.pad_token_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for j, r in enumerate(rows):
        ids[j, width - len(r.prompt):] = torch.tensor(r.prompt)
        mask[j, width - len(r.prompt):] = 1
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    ids, mask, positions = ids.to(dev), mask.to(dev), positions.to(dev)
    cache = DynamicCache()
    out = backend.model(input_ids=ids, attention_mask=mask, position_ids=positions,
                        use_cache=True, logits_to_keep=1, **{backend.cache_arg: cache})
    backend.forward_passes += 1
    return cache, mask, positions[:, -1], out.logits[:, -1, :].float()


@dataclass
class _Batch:
    """The rows decoding together. Finished rows stay (their slots cost little) until the next compaction."""

    rows: list[_RowState]
    tokens: list[int]  # each row's next input token
    cache: Any
    mask: Any  # (rows, width) 1 where a cache position is real, 0 for left padding
    last_pos: Any  # (rows,) position id of each row's last token

    def alive(self) -> list[int]:
        return [k for k, r in enumerate(self.rows) if r.finish is None]


def _headroom(rows: list[_RowState]) -> int:
    return max(r.request.max_new_tokens - len(r.generated) for r in rows) + 1


def _next_tokens(backend: HFBackend, rows: list[_RowState], logits: Any) -> list[int]:
    """Pick and record each unfinished row's next token (finished rows get the pad token, never recorded).

    A row whose logits are not finite ends as an error: argmax or sampling over
    NaN would only produce garbage tokens.
    """
    torch = backend.torch
    top = logits.max(-1)  # one op for every greedy row (first maximum, as argmax)
    greedy = top.indices.tolist()
    # max propagates NaN and +inf, and is -inf only when nothing is finite (a -inf entry alone is a legitimate mask)
    bad = (~torch.isfinite(top.values)).tolist()
    pad = backend.tokenizer.pad_token_id
    tokens = []
    for k, row in enumerate(rows):
        if row.finish is not None:
            tokens.append(pad)
            continue
        if bad[k]:
            row.finish = "error"
            row.error = (f"non-finite logits at generated token {len(row.generated) + 1}: "
                         "the model's outputs are not finite")
            tokens.append(pad)
            continue
        token = greedy[k] if row.request.temperature <= 0.0 else _pick(torch, logits[k], row)
        _step_row(backend, row, token)
        tokens.append(token)
    return tokens


def _start(backend: HFBackend, joining: list[_RowState]) -> _Batch | None:
    """Prefill `joining`, pick their first tokens, and keep those not finished already (None when none is left)."""
    cache, mask, last_pos, logits = _prefill(backend, joining)
    batch = _Batch(joining, _next_tokens(backend, joining, logits), cache, mask, last_pos)
    alive = batch.alive()
    if not alive:
        return None
    return _select(backend, batch, alive) if len(alive) < len(joining) else batch


def _used_from(mask: Any) -> int:
    """First cache position some row still uses (everything before it is padding for all rows)."""
    used = mask.any(0).nonzero()
    return int(used[0]) if len(used) else 0


def _select(backend: HFBackend, batch: _Batch, keep: list[int]) -> _Batch:
    """Keep only rows `keep`; spliceable caches also drop leading positions that are padding for every kept row."""
    from tunegate.backends._hf_cache import GrowingLayer

    torch = backend.torch
    sel = torch.tensor(keep, device=backend.device)
    mask = batch.mask[sel]
    layers = getattr(batch.cache, "layers", [])
    if layers and all(isinstance(layer, GrowingLayer) for layer in layers):
        start = _used_from(mask)
        for layer in layers:
            layer.keep(sel, start)
        mask = mask[:, start:]
    else:
        batch.cache.batch_select_indices(sel)
    return _Batch([batch.rows[k] for k in keep], [batch.tokens[k] for k in keep], batch.cache, mask,
                  batch.last_pos[sel])


def _splice(backend: HFBackend, batch: _Batch, keep: list[int], new: _Batch) -> _Batch:
    """One batch of `batch`'s rows `keep` then `new`'s rows, right-aligned in one buffer (one copy per layer)."""
    from tunegate.backends._hf_cache import GrowingLayer

    torch = backend.torch
    sel = torch.tensor(keep, device=backend.device)
    old_mask = batch.mask[sel]
    start = _used_from(old_mask)
    old_mask = old_mask[:, start:]
    width = max(old_mask.shape[1], new.mask.shape[1])
    rows = [batch.rows[k] for k in keep] + new.rows
    headroom = _headroom(rows)
    for i, (old, fresh) in enumerate(zip(batch.cache.layers, new.cache.layers, strict=True)):
        batch.cache.layers[i] = GrowingLayer.spliced(
            [(old.keys[sel, ..., start:, :], old.values[sel, ..., start:, :]), (fresh.keys, fresh.values)],
            width, headroom)
    mask = old_mask.new_zeros((len(rows), width))
    mask[: len(keep), width - old_mask.shape[1]:] = old_mask
    mask[len(keep):, width - new.mask.shape[1]:] = new.mask
    return _Batch(rows, [batch.tokens[k] for k in keep] + new.tokens, batch.cache, mask,
                  torch.cat([batch.last_pos[sel], new.last_pos]))


def _decode_step(backend: HFBackend, batch: _Batch) -> None:
    torch = backend.torch
    dev = backend.device
    step_ids = torch.tensor(batch.tokens, device=dev)[:, None]
    batch.mask = torch.cat([batch.mask, batch.mask.new_ones((len(batch.rows), 1))], dim=1)
    batch.last_pos = batch.last_pos + 1
    out = backend.model(input_ids=step_ids, attention_mask=batch.mask, position_ids=batch.last_pos[:, None],
                        use_cache=True, **{backend.cache_arg: batch.cache})
    backend.forward_passes += 1
    batch.tokens = _next_tokens(backend, batch.rows, out.logits[:, -1, :].float())


def _run(backend: HFBackend, ordered: list[_RowState]) -> None:
    """Decode every row; a waiting prompt takes the slots of finished rows when the cache allows splicing.

    A decode step of a small model is bound by reading the weights (the LM
    head above all), so a finished row riding along costs little; rows are
    therefore compacted out only when slots are refilled or half the batch is
    done, and refills wait for a quarter of the slots (a prefill is a pass).
    """
    from tunegate.backends._hf_cache import plain_full_attention, with_headroom

    bs = backend.spec.batch_size
    queue = deque(ordered)
    batch: _Batch | None = None
    refill_at = max(1, bs // 4)
    with backend.torch.inference_mode():
        while True:
            alive = batch.alive() if batch else []
            if not alive and not queue:
                return
            spliceable = bool(alive) and batch is not None and plain_full_attention(batch.cache)
            refill = bool(queue) and (not alive or (spliceable and bs - len(alive) >= refill_at))
            if refill:
                joining = [queue.popleft() for _ in range(min(bs - len(alive), len(queue)))]
                new = _start(backend, joining)
                if new is None:
                    batch = _select(backend, batch, alive) if batch is not None and alive else None
                elif spliceable and batch is not None:
                    batch = _splice(backend, batch, alive, new)
                else:
                    batch = new
                    with_headroom(batch.cache, _headroom(batch.rows))
            elif batch is not None and 2 * (len(batch.rows) - len(alive)) >= len(batch.rows):
                batch = _select(backend, batch, alive)
            if batch is not None:
                _decode_step(backend, batch)


def generate(backend: HFBackend, requests: list[GenerateRequest]) -> list[Response]:
    torch = backend.torch
    tok = backend.tokenizer
    rows = []
    out: list[Response | None] = [None] * len(requests)
    for i, req in enumerate(requests):
        room = backend.max_length - req.max_new_tokens
        if room < 1:
            # never shrink the budget silently: the answer would not be the one asked for
            out[i] = Response(kind="generate", finish_reason="error", error=(
                f"max_new_tokens={req.max_new_tokens} leaves no room for the prompt in the model's window of "
                f"{backend.max_length} tokens; lower max_new_tokens or raise --max-length"))
            continue
        ids, dropped = left_truncate(tok, encode_prompt(tok, req.prompt, backend.spec.chat_template), room)
        rng = torch.Generator().manual_seed(req.seed) if req.temperature > 0 else None
        tail = max((len(s) for s in req.stop), default=0) + 2
        rows.append(_RowState(i, req, ids, rng=rng, tail=tail, truncated=dropped))
    _run(backend, sorted(rows, key=lambda r: -len(r.prompt)))
    for r in rows:
        if r.error is not None:
            out[r.index] = Response(kind="generate", finish_reason="error", error=r.error, truncated_tokens=r.truncated)
            continue
        text = str(tok.decode(r.generated, skip_special_tokens=True))
        finish = r.finish or "length"
        cut = _first_stop(text, r.request.stop)
        if cut is not None:
            text, finish = text[:cut], "stop"
        out[r.index] = Response(kind="generate", text=text, n_tokens=len(r.generated), finish_reason=finish,  # type: ignore[arg-type]
                                truncated_tokens=r.truncated)
    return [r for r in out if r is not None]
