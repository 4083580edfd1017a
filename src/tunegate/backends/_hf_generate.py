"""Batched generation for the `hf` backend: a small decoding loop we own.

Why not `model.generate`: we need each row to stop on its *own* stop strings or
EOS and then stop costing compute (finished rows are dropped from the batch and
the KV cache), stop checks that decode only a row's tail rather than the whole
batch, and seeded sampling that gives a request the same text whatever batch it
lands in (one RNG per request). Prompts are length-sorted and left-padded with
explicit position ids; greedy decoding is the default.
"""

from __future__ import annotations

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


def _run_batch(backend: "HFBackend", rows: list[_RowState]) -> None:
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
    active = list(rows)
    with torch.inference_mode():
        out = backend.model(input_ids=ids, attention_mask=mask, position_ids=positions, past_key_values=cache,
                            use_cache=True, logits_to_keep=1)
        backend.forward_passes += 1
        last_pos = positions[:, -1]
        while True:
            logits = out.logits[:, -1, :].float()
            greedy = logits.argmax(-1).tolist()  # one op for every greedy row
            next_tokens = []
            for k, row in enumerate(active):
                token = greedy[k] if row.request.temperature <= 0.0 else _pick(torch, logits[k], row)
                _step_row(backend, row, token)
                next_tokens.append(token)
            keep = [k for k, row in enumerate(active) if row.finish is None]
            if not keep:
                return
            if len(keep) < len(active):
                sel = torch.tensor(keep, device=dev)
                cache.batch_select_indices(sel)
                mask, last_pos = mask[sel], last_pos[sel]
                active = [active[k] for k in keep]
                next_tokens = [next_tokens[k] for k in keep]
            step_ids = torch.tensor(next_tokens, device=dev)[:, None]
            mask = torch.cat([mask, torch.ones((len(active), 1), dtype=mask.dtype, device=dev)], dim=1)
            last_pos = last_pos + 1
            out = backend.model(input_ids=step_ids, attention_mask=mask, position_ids=last_pos[:, None],
                                past_key_values=cache, use_cache=True)
            backend.forward_passes += 1


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
    ordered = sorted(rows, key=lambda r: -len(r.prompt))
    bs = backend.spec.batch_size
    for b in range(0, len(ordered), bs):
        _run_batch(backend, ordered[b : b + bs])
    out = []
    for r in rows:
        text = tok.decode(r.generated, skip_special_tokens=True)
        finish = r.finish or "length"
        cut = _first_stop(text, r.request.stop)
        if cut is not None:
            text, finish = text[:cut], "stop"
        out.append(Response(kind="generate", text=text, n_tokens=len(r.generated), finish_reason=finish))  # type: ignore[arg-type]
    return out
