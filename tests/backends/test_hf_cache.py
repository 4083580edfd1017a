"""The growing KV-cache layer: same tensors as transformers' DynamicLayer, without re-copying per step."""

from __future__ import annotations

import pytest
import torch
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer

from tunegate.backends._hf_cache import (
    MIN_HEADROOM,
    GrowingLayer,
    expand_rows,
    plain_full_attention,
    with_headroom,
)


def kv(rows: int, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(rows, 2, n, 4, generator=g), torch.randn(rows, 2, n, 4, generator=g)


def test_updates_equal_dynamic_layer_across_reallocations() -> None:
    keys, values = kv(3, 5, 0)
    plain = DynamicLayer()
    plain.update(keys, values)
    grown = GrowingLayer(keys, values, headroom=1)
    assert grown.capacity == 5 + MIN_HEADROOM
    for step in range(MIN_HEADROOM + 40):  # runs past the first buffer: reallocation keeps the contents
        k, v = kv(3, 1 if step % 7 else 3, step + 1)
        want = plain.update(k, v)
        got = grown.update(k, v)
        assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])
    assert grown.get_seq_length() == plain.get_seq_length()
    assert grown.capacity > 5 + MIN_HEADROOM


def test_update_writes_in_place_while_there_is_room() -> None:
    keys, values = kv(2, 4, 0)
    grown = GrowingLayer(keys, values, headroom=MIN_HEADROOM)
    buffer = grown._kbuf.data_ptr()
    for step in range(10):
        grown.update(*kv(2, 1, step))
    assert grown._kbuf.data_ptr() == buffer  # no reallocation, no copy of the cache
    assert grown.keys.shape == (2, 2, 14, 4)


def test_keep_selects_rows_and_drops_leading_positions() -> None:
    keys, values = kv(4, 6, 0)
    grown = GrowingLayer(keys, values)
    grown.keep(torch.tensor([3, 1]), start=2)
    assert torch.equal(grown.keys, keys[[3, 1], :, 2:, :])
    assert torch.equal(grown.values, values[[3, 1], :, 2:, :])
    grown.update(*kv(2, 1, 9))
    assert grown.keys.shape == (2, 2, 5, 4)


def test_spliced_right_aligns_rows_and_zeroes_the_padding() -> None:
    a, b = kv(2, 3, 0), kv(1, 5, 1)
    layer = GrowingLayer.spliced([a, b], width=5, headroom=4)
    assert layer.keys.shape == (3, 2, 5, 4)
    assert torch.equal(layer.keys[:2, :, 2:], a[0]) and torch.equal(layer.values[2:], b[1])
    assert torch.count_nonzero(layer.keys[:2, :, :2]) == 0  # never uninitialised memory (NaN would leak through attention)


def _filled_cache(rows: int, n: int, layers: int = 2) -> DynamicCache:
    cache = DynamicCache()
    for i in range(layers):
        cache.update(*kv(rows, n, i), layer_idx=i)
    return cache


@pytest.mark.parametrize("counts", [[3, 3, 3], [1, 4, 2]])
def test_expand_rows_equals_repeat_interleave(counts: list[int]) -> None:
    cache = _filled_cache(3, 5)
    want = [(layer.keys.repeat_interleave(torch.tensor(counts), dim=0),
             layer.values.repeat_interleave(torch.tensor(counts), dim=0)) for layer in cache.layers]
    assert expand_rows(cache, counts, headroom=2)
    for layer, (k, v) in zip(cache.layers, want, strict=True):
        assert isinstance(layer, GrowingLayer)
        assert torch.equal(layer.keys, k) and torch.equal(layer.values, v)
        layer.update(*kv(sum(counts), 2, 7))  # the continuation pass fits in the headroom
        assert layer.keys.shape[-2] == 7


def test_only_plain_full_attention_layers_are_converted() -> None:
    class Other(DynamicLayer):
        pass

    cache = _filled_cache(2, 3)
    cache.layers[1] = Other()
    cache.layers[1].update(*kv(2, 3, 5))
    assert not expand_rows(cache, [2, 2], headroom=1)  # unchanged: the caller falls back
    assert type(cache.layers[0]) is DynamicLayer
    with_headroom(cache, 4)
    assert isinstance(cache.layers[0], GrowingLayer) and type(cache.layers[1]) is Other
    assert not plain_full_attention(cache)


def test_crop_repeat_and_reorder_keep_the_buffer_consistent() -> None:
    keys, values = kv(2, 6, 0)
    layer = GrowingLayer(keys, values)
    layer.crop(-2)
    assert torch.equal(layer.keys, keys[..., :4, :])
    layer.batch_repeat_interleave(2)
    assert torch.equal(layer.values, values[..., :4, :].repeat_interleave(2, dim=0))
    layer.reorder_cache(torch.tensor([3, 0]))
    assert torch.equal(layer.keys, keys[[1, 0], :, :4, :])
    new = kv(2, 1, 4)
    layer.update(*new)  # writes after the cropped end, not after the old one
    assert torch.equal(layer.keys[..., 4:, :], new[0]) and layer.keys.shape[-2] == 5
