"""Log-likelihood scoring for the `hf` backend.

Each request becomes one or more rows (rolling windows when the continuation is
longer than the model's window; each window keeps as much preceding text as
fits). Rows are length-sorted and left-padded with explicit position ids, so
every row's targets sit at the end: the LM head and log-softmax run only on the
last K positions (`logits_to_keep`), not the whole sequence. Results do not
depend on batch size or padding (checked by tests to 1e-4 nats).
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import TYPE_CHECKING

from tunegate.backends._hf_tokens import encode_pair
from tunegate.request import LoglikelihoodRequest, Response

if TYPE_CHECKING:
    from tunegate.backends.hf import HFBackend


@dataclass
class _Row:
    request: int
    inputs: list[int]
    targets: list[int]


def windows(context: list[int], continuation: list[int], max_length: int) -> list[tuple[list[int], list[int]]]:
    """Split scoring of `continuation` after `context` into (inputs, targets) rows of at most `max_length` inputs.

    Row k predicts targets S[a:b] of S = context + continuation from inputs
    S[s:b-1], s = max(0, b-1-max_length): the targets are the last b-a
    predictions of the row, each conditioned on as much text as fits.
    """
    seq = context + continuation
    start = len(context)
    rows = []
    a = start
    while a < len(seq):
        b = min(len(seq), a + max_length)
        s = max(0, b - 1 - max_length)
        rows.append((seq[s : b - 1], seq[a:b]))
        a = b
    return rows


def _accepts_logits_to_keep(model: object) -> bool:
    try:
        return "logits_to_keep" in inspect.signature(model.forward).parameters  # type: ignore[attr-defined]
    except (TypeError, ValueError):
        return False


def loglikelihood(backend: "HFBackend", requests: list[LoglikelihoodRequest]) -> list[Response]:
    torch = backend.torch
    tok = backend.tokenizer
    rows: list[_Row] = []
    n_tokens = [0] * len(requests)
    for i, req in enumerate(requests):
        ctx, cont = encode_pair(tok, req.context, req.continuation)
        n_tokens[i] = len(cont)
        for inputs, targets in windows(ctx, cont, backend.max_length):
            rows.append(_Row(i, inputs, targets))
    totals = [0.0] * len(requests)
    greedy = [True] * len(requests)
    rows.sort(key=lambda r: -len(r.inputs))
    keep_arg = _accepts_logits_to_keep(backend.model)
    pad = tok.pad_token_id
    bs = backend.spec.batch_size
    with torch.inference_mode():
        for b in range(0, len(rows), bs):
            batch = rows[b : b + bs]
            width = max(len(r.inputs) for r in batch)
            keep = max(len(r.targets) for r in batch)
            ids = torch.full((len(batch), width), pad, dtype=torch.long)
            mask = torch.zeros((len(batch), width), dtype=torch.long)
            for j, r in enumerate(batch):
                ids[j, width - len(r.inputs):] = torch.tensor(r.inputs)
                mask[j, width - len(r.inputs):] = 1
            positions = (mask.cumsum(-1) - 1).clamp(min=0)
            kwargs = {"logits_to_keep": keep} if keep_arg else {}
            out = backend.model(input_ids=ids.to(backend.device), attention_mask=mask.to(backend.device),
                                position_ids=positions.to(backend.device), use_cache=False, **kwargs)
            backend.forward_passes += 1
            logits = out.logits[:, -keep:, :].float()
            logprobs = torch.log_softmax(logits, dim=-1)
            for j, r in enumerate(batch):
                n = len(r.targets)
                lp = logprobs[j, keep - n:, :]
                tgt = torch.tensor(r.targets, device=lp.device)
                totals[r.request] += float(lp.gather(-1, tgt[:, None]).sum())
                greedy[r.request] &= bool((lp.argmax(-1) == tgt).all())
    return [
        Response(kind="loglikelihood", loglikelihood=totals[i], is_greedy=greedy[i], n_tokens=n_tokens[i])
        for i in range(len(requests))
    ]
