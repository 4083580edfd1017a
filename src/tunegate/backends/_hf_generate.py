"""Batched generation for the `hf` backend: a small decoding loop we own.

Why not `model.generate`: each row must stop on its *own* stop strings or EOS
and then stop costing compute; its slot is refilled with a waiting prompt
(prefilled on its own, then spliced into the running KV cache with left
padding), so the batch stays full instead of decoding until its slowest row
finishes. Stop checks decode only a row's tail, not the whole batch. Seeded
sampling gives a request the same text whatever batch it lands in (one RNG per
request). Prompts are length-sorted and left-padded with explicit position ids;
greedy decoding is the default. Caches whose layers are not plain full-attention
layers (sliding windows, linear attention) are never spliced: those models
decode batch by batch, dropping finished rows.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from tunegate.backends._hf_tokens import encode_prompt
from tunegate.request import GenerateRequest, Response

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


def _step_row(backend: "HFBackend", row: _RowState, token: int) -> None:
    """Append `token` and decide whether the row is finished (EOS, stop string, length)."""
    tok = backend.tokenizer
    if token == tok.eos_token_id:
        row.finish = "eos"
        return
    row.generated.append(token)
    if row.request.stop:
        tail = tok.decode(row.generated[-row.tail:], skip_special_tokens=True)
        if _first_stop(tail, row.request.stop) is not None:
            row.finish = "stop"
            return
    if len(row.generated) >= row.request.max_new_tokens:
        row.finish = "length"


def _prefill(backend: "HFBackend", rows: list[_RowState]) -> tuple[Any, Any, Any, Any]:
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
    out = backend.model(input_ids=ids, attention_mask=mask, position_ids=positions, past_key_values=cache,
                        use_cache=True, logits_to_keep=1)
    backend.forward_passes += 1
    return cache, mask, positions[:, -1], out.logits[:, -1, :].float()


def _mergeable(cache: Any) -> bool:
    """Refilling splices caches along the batch axis; only plain full-attention layers are known to allow it."""
    from transformers.cache_utils import DynamicLayer

    layers = getattr(cache, "layers", None)
    return bool(layers) and all(type(layer) is DynamicLayer and getattr(layer, "keys", None) is not None for layer in layers)


def _merge(torch: Any, cache: Any, mask: Any, new_cache: Any, new_mask: Any) -> Any:
    """Append `new_cache`'s rows to `cache`, left-padding the shorter one (masked out) to a common length."""
    width = max(mask.shape[1], new_mask.shape[1])

    def pad(t: Any, n: int) -> Any:
        if n == 0:
            return t
        shape = list(t.shape)
        shape[-2 if t.dim() == 4 else -1] = n
        return torch.cat([t.new_zeros(shape), t], dim=-2 if t.dim() == 4 else -1)

    for old, new in zip(cache.layers, new_cache.layers):
        old.keys = torch.cat([pad(old.keys, width - mask.shape[1]), pad(new.keys, width - new_mask.shape[1])], dim=0)
        old.values = torch.cat([pad(old.values, width - mask.shape[1]), pad(new.values, width - new_mask.shape[1])], dim=0)
    return torch.cat([pad(mask, width - mask.shape[1]), pad(new_mask, width - new_mask.shape[1])], dim=0)


def _first_tokens(backend: "HFBackend", rows: list[_RowState], logits: Any) -> list[int]:
    torch = backend.torch
    greedy = logits.argmax(-1).tolist()  # one op for every greedy row
    tokens = []
    for k, row in enumerate(rows):
        token = greedy[k] if row.request.temperature <= 0.0 else _pick(torch, logits[k], row)
        _step_row(backend, row, token)
        tokens.append(token)
    return tokens


def _run(backend: "HFBackend", ordered: list[_RowState]) -> None:
    """Decode every row; a finished row leaves the batch and, when the cache allows, a waiting prompt takes its slot."""
    torch = backend.torch
    dev = backend.device
    bs = backend.spec.batch_size
    queue = deque(ordered)
    active: list[_RowState] = []
    tokens: list[int] = []
    cache = mask = last_pos = None
    refill_at = max(1, bs // 4)  # refill once a quarter of the slots are free: a prefill costs a forward pass
    with torch.inference_mode():
        while True:
            keep = [k for k, row in enumerate(active) if row.finish is None]
            free = bs - len(keep)
            joining: list[_RowState] = []
            if queue and (not keep or (free >= refill_at and _mergeable(cache))):
                joining = [queue.popleft() for _ in range(min(free, len(queue)))]
            if not keep and not joining:
                return
            if len(keep) < len(active) and keep:
                sel = torch.tensor(keep, device=dev)
                cache.batch_select_indices(sel)
                mask, last_pos = mask[sel], last_pos[sel]
            active = [active[k] for k in keep]
            tokens = [tokens[k] for k in keep]
            if joining:
                n_cache, n_mask, n_pos, n_logits = _prefill(backend, joining)
                n_tokens = _first_tokens(backend, joining, n_logits)
                alive = [k for k, row in enumerate(joining) if row.finish is None]
                if alive:
                    if len(alive) < len(joining):
                        sel = torch.tensor(alive, device=dev)
                        n_cache.batch_select_indices(sel)
                        n_mask, n_pos = n_mask[sel], n_pos[sel]
                    if active:
                        mask = _merge(torch, cache, mask, n_cache, n_mask)
                        last_pos = torch.cat([last_pos, n_pos])
                    else:
                        cache, mask, last_pos = n_cache, n_mask, n_pos
                    active += [joining[k] for k in alive]
                    tokens += [n_tokens[k] for k in alive]
                if not active:
                    continue
            step_ids = torch.tensor(tokens, device=dev)[:, None]
            mask = torch.cat([mask, torch.ones((len(active), 1), dtype=mask.dtype, device=dev)], dim=1)
            last_pos = last_pos + 1
            out = backend.model(input_ids=step_ids, attention_mask=mask, position_ids=last_pos[:, None],
                                past_key_values=cache, use_cache=True)
            backend.forward_passes += 1
            tokens = _first_tokens(backend, active, out.logits[:, -1, :].float())


def generate(backend: "HFBackend", requests: list[GenerateRequest]) -> list[Response]:
    torch = backend.torch
    tok = backend.tokenizer
    rows = []
    for i, req in enumerate(requests):
        ids = encode_prompt(tok, req.prompt, backend.spec.chat_template)
        room = max(1, backend.max_length - req.max_new_tokens)
        ids = ids[-room:]
        rng = torch.Generator().manual_seed(req.seed) if req.temperature > 0 else None
        tail = max((len(s) for s in req.stop), default=0) + 2
        rows.append(_RowState(i, req, ids, rng=rng, tail=tail))
    # a request whose budget exceeds the window still gets a bounded answer
    for r in rows:
        over = len(r.prompt) + r.request.max_new_tokens - backend.max_length
        if over > 0:
            r.request = r.request.model_copy(update={"max_new_tokens": max(1, r.request.max_new_tokens - over)})
    _run(backend, sorted(rows, key=lambda r: -len(r.prompt)))
    out = []
    for r in rows:
        text = tok.decode(r.generated, skip_special_tokens=True)
        finish = r.finish or "length"
        cut = _first_stop(text, r.request.stop)
        if cut is not None:
            text, finish = text[:cut], "stop"
        out.append(Response(kind="generate", text=text, n_tokens=len(r.generated), finish_reason=finish))  # type: ignore[arg-type]
    return out
