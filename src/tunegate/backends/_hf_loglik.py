"""Log-likelihood scoring for the `hf` backend.

Two paths, both exact (equal to the textbook computation within 1e-4 nats,
independent of batch size and padding):

* Shared prefix. Requests that share a context (the K choices of a multiple
  choice question) run the context once; its KV cache is expanded across the
  K continuations, which then run only their own tokens. The first
  continuation token is scored from the prefix's last position, so the LM head
  and log-softmax run only where a continuation token is predicted.
* Rows. Everything else (a lone continuation, or one too long for the window)
  becomes one or more rows (rolling windows when the continuation is longer
  than the model's window; each window keeps as much preceding text as fits).
  Rows are left-padded with explicit position ids so every row's targets sit at
  the end, and `logits_to_keep` limits the LM head to those last positions.

Both paths batch by a token budget (`ModelSpec.batch_tokens`) as well as a row
cap (`ModelSpec.batch_size`), length-sorted so padding stays small.

Truncation is recorded, never silent: when the first rolling window cannot
hold the whole context, the context tokens the first continuation token could
not condition on go into the response's `truncated_tokens`. A total that is
not finite (a diverged model) becomes an error response, never a number.

Which tokens are scored (the context/continuation boundary, the rolling
windows) is decided in `_tokens`, shared with the `vllm` backend; this module
only decides how to compute them with transformers.
"""

from __future__ import annotations

import inspect
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from tunegate.backends._tokens import dropped_context, encode_pair, windows
from tunegate.core.request import LoglikelihoodRequest, Response, checked

if TYPE_CHECKING:
    from tunegate.backends.hf import HFBackend

T = TypeVar("T")

__all__ = ["budget_batches", "dropped_context", "loglikelihood", "windows"]  # windows: the shared rule, re-exported


@dataclass
class _Row:
    request: int
    inputs: list[int]
    targets: list[int]


@dataclass
class _Group:
    context: list[int]
    members: list[tuple[int, list[int]]]  # (request index, continuation ids)

    @property
    def cont_width(self) -> int:
        return max(len(c) for _, c in self.members) - 1


def budget_batches(items: Sequence[T], cost: Callable[[list[T]], int], max_rows: int, max_tokens: int) -> list[list[T]]:
    """Greedy batches of length-sorted `items`: a batch grows while its padded cost and row count fit."""
    batches: list[list[T]] = []
    current: list[T] = []
    for item in items:
        trial = current + [item]
        if current and (len(trial) > max_rows or cost(trial) > max_tokens):
            batches.append(current)
            trial = [item]
        current = trial
    if current:
        batches.append(current)
    return batches


def _accepts_logits_to_keep(model: object) -> bool:
    try:
        return "logits_to_keep" in inspect.signature(model.forward).parameters  # type: ignore[attr-defined]
    except (TypeError, ValueError):
        return False


def _left_pad(torch: Any, seqs: list[list[int]], pad: int) -> tuple[Any, Any]:
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for j, s in enumerate(seqs):
        if s:
            ids[j, width - len(s):] = torch.tensor(s)
            mask[j, width - len(s):] = 1
    return ids, mask


class _Scorer:
    """Accumulates per-request totals over the rows and groups that score it."""

    def __init__(self, backend: HFBackend, n: int) -> None:
        self.backend = backend
        self.torch = backend.torch
        self.totals = [0.0] * n
        self.greedy = [True] * n
        self.keep_arg = _accepts_logits_to_keep(backend.model)
        self.pad = backend.tokenizer.pad_token_id
        self.dev = backend.device

    def _add(self, request: int, logprobs: Any, targets: list[int]) -> None:
        tgt = self.torch.tensor(targets, device=logprobs.device)
        self.totals[request] += float(logprobs.gather(-1, tgt[:, None]).sum())
        self.greedy[request] &= bool((logprobs.argmax(-1) == tgt).all())

    def rows(self, rows: list[_Row]) -> None:
        torch, spec = self.torch, self.backend.spec
        rows = sorted(rows, key=lambda r: -len(r.inputs))
        cost = lambda b: len(b) * len(b[0].inputs)  # noqa: E731 - sorted: the first row is the widest
        for batch in budget_batches(rows, cost, spec.batch_size, spec.batch_tokens):
            keep = max(len(r.targets) for r in batch)
            ids, mask = _left_pad(torch, [r.inputs for r in batch], self.pad)
            positions = (mask.cumsum(-1) - 1).clamp(min=0)
            kwargs = {"logits_to_keep": keep} if self.keep_arg else {}
            out = self.backend.model(input_ids=ids.to(self.dev), attention_mask=mask.to(self.dev),
                                     position_ids=positions.to(self.dev), use_cache=False, **kwargs)
            self.backend.forward_passes += 1
            logprobs = torch.log_softmax(out.logits[:, -keep:, :].float(), dim=-1)
            for j, r in enumerate(batch):
                self._add(r.request, logprobs[j, keep - len(r.targets):, :], r.targets)

    def groups(self, groups: list[_Group]) -> None:
        from transformers import DynamicCache

        from tunegate.backends._hf_cache import expand_rows

        torch, spec = self.torch, self.backend.spec
        groups = sorted(groups, key=lambda g: -(len(g.context) + g.cont_width))

        def cost(batch: list[_Group]) -> int:
            n_rows = sum(len(g.members) for g in batch)
            prefix = len(batch) * max(len(g.context) for g in batch)
            return max(prefix, n_rows * (max(len(g.context) for g in batch) + max(g.cont_width for g in batch)))

        max_rows = max(spec.batch_size, max(len(g.members) for g in groups))
        for batch in budget_batches(groups, cost, max_rows, spec.batch_tokens):
            ids, mask = _left_pad(torch, [g.context for g in batch], self.pad)
            positions = (mask.cumsum(-1) - 1).clamp(min=0)
            cache = DynamicCache()
            kwargs = {"logits_to_keep": 1} if self.keep_arg else {}
            out = self.backend.model(input_ids=ids.to(self.dev), attention_mask=mask.to(self.dev),
                                     position_ids=positions.to(self.dev), use_cache=True,
                                     **{self.backend.cache_arg: cache}, **kwargs)
            self.backend.forward_passes += 1
            first = torch.log_softmax(out.logits[:, -1, :].float(), dim=-1)  # predicts each continuation's first token
            owner = [p for p, g in enumerate(batch) for _ in g.members]
            members = [m for g in batch for m in g.members]
            width = max(len(c) for _, c in members) - 1
            rest = None
            if width > 0:
                if not expand_rows(cache, [len(g.members) for g in batch], width):
                    cache.batch_select_indices(torch.tensor(owner, device=self.dev))
                cont = torch.full((len(members), width), self.pad, dtype=torch.long)
                cmask = torch.zeros((len(members), width), dtype=torch.long)
                for j, (_, c) in enumerate(members):
                    if len(c) > 1:
                        cont[j, : len(c) - 1] = torch.tensor(c[:-1])
                        cmask[j, : len(c) - 1] = 1
                prefix_len = mask.sum(-1)[owner]
                pos = prefix_len[:, None] + torch.arange(width)[None, :]
                full_mask = torch.cat([mask[owner], cmask], dim=1)
                out = self.backend.model(input_ids=cont.to(self.dev), attention_mask=full_mask.to(self.dev),
                                         position_ids=pos.to(self.dev), use_cache=True,
                                         **{self.backend.cache_arg: cache})
                self.backend.forward_passes += 1
                rest = torch.log_softmax(out.logits.float(), dim=-1)
            for j, ((req, c), p) in enumerate(zip(members, owner, strict=True)):
                lp = first[p : p + 1]
                if len(c) > 1 and rest is not None:
                    lp = torch.cat([lp, rest[j, : len(c) - 1]], dim=0)
                self._add(req, lp, c)


def loglikelihood(backend: HFBackend, requests: list[LoglikelihoodRequest]) -> list[Response]:
    tok = backend.tokenizer
    scorer = _Scorer(backend, len(requests))
    n_tokens = [0] * len(requests)
    dropped = [0] * len(requests)
    by_context: dict[tuple[int, ...], list[tuple[int, list[int]]]] = defaultdict(list)
    rows: list[_Row] = []
    memo: dict[str, list[int]] = {}
    for i, req in enumerate(requests):
        ctx, cont = encode_pair(tok, req.context, req.continuation, memo)
        n_tokens[i] = len(cont)
        if not cont:
            continue
        if len(ctx) + len(cont) - 1 <= backend.max_length:
            by_context[tuple(ctx)].append((i, cont))
        else:
            rows += [_Row(i, inp, tgt) for inp, tgt in windows(ctx, cont, backend.max_length)]
            dropped[i] = dropped_context(len(ctx), len(cont), backend.max_length)
    groups = []
    for ctx_key, members in by_context.items():
        if len(members) > 1:
            # a group's continuation pass has one row per member: split so each fits the token budget
            # (many requests share the empty context: perplexity, CrowS-Pairs)
            longest_first = sorted(members, key=lambda m: -len(m[1]))
            n_ctx = len(ctx_key)

            def cost(b: list[Any], n: int = n_ctx) -> int:  # default binds this group's context length
                return len(b) * (n + len(b[0][1]) - 1)  # b[0] is the widest

            groups += [_Group(list(ctx_key), part)
                       for part in budget_batches(longest_first, cost, len(members), backend.spec.batch_tokens)]
        else:
            i, cont = members[0]
            rows += [_Row(i, inp, tgt) for inp, tgt in windows(list(ctx_key), cont, backend.max_length)]
    with backend.torch.inference_mode():
        if rows:
            scorer.rows(rows)
        if groups:
            scorer.groups(groups)
    return [
        checked(Response(kind="loglikelihood", loglikelihood=scorer.totals[i], is_greedy=scorer.greedy[i],
                         n_tokens=n_tokens[i], truncated_tokens=dropped[i]))
        for i in range(len(requests))
    ]
