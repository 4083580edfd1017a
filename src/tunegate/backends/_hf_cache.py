"""A KV-cache layer with spare capacity, for the `hf` backend's decoding loop.

Why: transformers' `DynamicLayer` appends a decoded token with `torch.cat`,
which copies the layer's whole cache at every step. On a small model that copy
is the largest cost of a decode step (measured: 35% of a batch-32 step of a
17.7M-parameter model with ~90 cached tokens, more than the LM head). Here the
keys and values live in a buffer with room to grow; a step writes one slot in
place and the layer exposes a view of the filled part, so attention sees
exactly the tensors it would have seen (same values, same shapes). When the
buffer is full it is reallocated with a quarter more room (at least
`MIN_HEADROOM` tokens), so copies are amortised and at most that much memory
per row is spare.

Only plain full-attention layers (`DynamicLayer` itself) are converted:
sliding-window and linear-attention layers keep their own update rules.
"""

from __future__ import annotations

import inspect
from typing import Any

import torch
from transformers.cache_utils import DynamicLayer

MIN_HEADROOM = 64


def cache_argument(model: Any) -> str:
    """The name under which `model.forward` takes its KV cache.

    transformers 5.24 renamed `past_key_values` to `cache` (the old name warns
    and goes away in 5.40); earlier releases only know `past_key_values`.
    Asking the signature once keeps the fast paths working on both.
    """
    try:
        params = inspect.signature(model.forward).parameters
    except (TypeError, ValueError):
        return "past_key_values"
    return "cache" if "cache" in params else "past_key_values"


class GrowingLayer(DynamicLayer):
    """`DynamicLayer` whose `update` writes into preallocated room instead of concatenating."""

    keys: torch.Tensor  # always set: a view of the filled part of the buffer
    values: torch.Tensor

    def __init__(self, keys: torch.Tensor, values: torch.Tensor, headroom: int = MIN_HEADROOM) -> None:
        super().__init__()
        self.dtype, self.device = keys.dtype, keys.device
        self.is_initialized = True
        self._store(keys, values, headroom)

    @classmethod
    def allocate(cls, keys: torch.Tensor, values: torch.Tensor, rows: int, room: int) -> GrowingLayer:
        """An empty layer with buffers of `rows` x `room` positions shaped like `keys`/`values` (views unset)."""
        layer = cls.__new__(cls)
        DynamicLayer.__init__(layer)
        layer.dtype, layer.device, layer.is_initialized = keys.dtype, keys.device, True
        layer._kbuf = keys.new_empty((rows, *keys.shape[1:-2], room, keys.shape[-1]))
        layer._vbuf = values.new_empty((rows, *values.shape[1:-2], room, values.shape[-1]))
        return layer

    @classmethod
    def spliced(cls, parts: list[tuple[torch.Tensor, torch.Tensor]], width: int, headroom: int) -> GrowingLayer:
        """One layer holding `parts`' rows stacked along the batch axis, each right-aligned in `width` slots.

        The left padding is zeroed (masked positions still enter attention's
        value product, so they must not hold garbage such as NaN).
        """
        rows = sum(k.shape[0] for k, _ in parts)
        layer = cls.allocate(*parts[0], rows, width + max(headroom, MIN_HEADROOM))
        at = 0
        for keys, values in parts:
            b, n = keys.shape[0], keys.shape[-2]
            layer._kbuf[at : at + b, ..., : width - n, :] = 0
            layer._vbuf[at : at + b, ..., : width - n, :] = 0
            layer._kbuf[at : at + b, ..., width - n : width, :] = keys
            layer._vbuf[at : at + b, ..., width - n : width, :] = values
            at += b
        layer._views(width)
        return layer

    def keep(self, indices: torch.Tensor, start: int = 0) -> None:
        """Keep rows `indices` and forget positions before `start` (padding no kept row uses), keeping the headroom."""
        n = self.keys.shape[-2]
        self._store(self.keys[indices, ..., start:, :], self.values[indices, ..., start:, :], self.capacity - n)

    def _store(self, keys: torch.Tensor, values: torch.Tensor, headroom: int) -> None:
        n = keys.shape[-2]
        shape = (*keys.shape[:-2], n + max(headroom, MIN_HEADROOM), keys.shape[-1])
        self._kbuf = keys.new_empty(shape)
        self._vbuf = values.new_empty((*values.shape[:-2], shape[-2], values.shape[-1]))
        self._kbuf[..., :n, :] = keys
        self._vbuf[..., :n, :] = values
        self._views(n)

    def _views(self, n: int) -> None:
        self.keys = self._kbuf[..., :n, :]
        self.values = self._vbuf[..., :n, :]

    @property
    def capacity(self) -> int:
        """Tokens the buffer holds before the next reallocation."""
        return int(self._kbuf.shape[-2])

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any, **kwargs: Any) -> tuple[torch.Tensor, torch.Tensor]:
        n, k = self.keys.shape[-2], key_states.shape[-2]
        if n + k > self.capacity:
            self._store(self.keys, self.values, k + (n + k) // 4)
        self._kbuf[..., n : n + k, :] = key_states
        self._vbuf[..., n : n + k, :] = value_states
        self._views(n + k)
        return self.keys, self.values

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        n = self.keys.shape[-2]
        self._kbuf, self._vbuf = self._kbuf[indices, ...], self._vbuf[indices, ...]
        self._views(n)

    def batch_repeat_interleave(self, repeats: int) -> None:
        n = self.keys.shape[-2]
        self._kbuf = self._kbuf.repeat_interleave(repeats, dim=0)
        self._vbuf = self._vbuf.repeat_interleave(repeats, dim=0)
        self._views(n)

    def reorder_cache(self, beam_idx: torch.LongTensor) -> None:
        self.batch_select_indices(beam_idx.to(self._kbuf.device))

    def crop(self, tokens_to_remove: int) -> None:
        if tokens_to_remove > 0:
            raise ValueError("crop takes a negative number of tokens to remove")
        self._views(self.keys.shape[-2] + tokens_to_remove)


def with_headroom(cache: Any, headroom: int) -> Any:
    """Convert `cache`'s plain full-attention layers (filled) to `GrowingLayer`s with `headroom` spare slots; in place."""
    layers = getattr(cache, "layers", None) or []
    for i, layer in enumerate(layers):
        keys, values = getattr(layer, "keys", None), getattr(layer, "values", None)
        if type(layer) is DynamicLayer and keys is not None and values is not None and keys.numel():
            layers[i] = GrowingLayer(keys, values, headroom)
    return cache


def _filled_plain(layer: Any) -> bool:
    keys = getattr(layer, "keys", None)
    return type(layer) is DynamicLayer and keys is not None and bool(keys.numel())


def expand_rows(cache: Any, counts: list[int], headroom: int) -> bool:
    """Repeat row i of every layer `counts[i]` times into a `GrowingLayer` with `headroom` free slots; in place.

    This is how a context's KV cache serves each of its continuations: one
    broadcast copy per layer into a buffer the continuation pass then writes
    into (`batch_select_indices` would copy, and the pass's `torch.cat` copy
    again). Returns False, changing nothing, unless every layer is a filled
    plain full-attention layer; the caller then falls back to
    `batch_select_indices`.
    """
    layers = getattr(cache, "layers", None)
    if not layers or not all(_filled_plain(layer) for layer in layers):
        return False
    total = sum(counts)
    for i, layer in enumerate(layers):
        keys, values = layer.keys, layer.values
        n = keys.shape[-2]
        grown = GrowingLayer.allocate(keys, values, total, n + max(headroom, 1))
        if len(set(counts)) == 1:  # every context has as many continuations: one broadcast copy
            k = counts[0]
            grown._kbuf[..., :n, :].unflatten(0, (len(counts), k)).copy_(keys.unsqueeze(1))
            grown._vbuf[..., :n, :].unflatten(0, (len(counts), k)).copy_(values.unsqueeze(1))
        else:
            at = 0
            for row, k in enumerate(counts):
                grown._kbuf[at : at + k, ..., :n, :] = keys[row : row + 1]
                grown._vbuf[at : at + k, ..., :n, :] = values[row : row + 1]
                at += k
        grown._views(n)
        layers[i] = grown
    return True


def plain_full_attention(cache: Any) -> bool:
    """True when every layer is a full-attention layer whose rows can be spliced along the batch axis."""
    layers = getattr(cache, "layers", None) or []
    return bool(layers) and all(
        type(layer) in (DynamicLayer, GrowingLayer) and getattr(layer, "keys", None) is not None for layer in layers
    )
