"""Token-budget, length-sorted batching for classifier scorers.

Classifier cost is dominated by padding: a batch pads every text to its longest
member. Sorting by length and filling each batch up to a token budget
(`longest * count <= max_tokens`) keeps padding small and memory bounded, so a
batch of tweets is large and a batch of essays is small. Results are returned
in the caller's order, so batching never changes which score goes with which
text.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

T = TypeVar("T")
R = TypeVar("R")


def token_budget_batches(lengths: Sequence[int], max_tokens: int = 8192, max_batch: int = 64) -> list[list[int]]:
    """Index batches, longest first; each batch's `max length * size` stays within `max_tokens`.

    A single text longer than the budget still gets a batch of its own (the
    tokenizer truncates it to the model's window).
    """
    if max_tokens < 1 or max_batch < 1:
        raise ValueError("max_tokens and max_batch must be >= 1")
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    batches: list[list[int]] = []
    current: list[int] = []
    longest = 0
    for i in order:
        n = max(1, int(lengths[i]))
        width = max(longest, n)
        if current and (width * (len(current) + 1) > max_tokens or len(current) >= max_batch):
            batches.append(current)
            current, width = [], n
        current.append(i)
        longest = width
    if current:
        batches.append(current)
    return batches


def run_batched(
    items: Sequence[T],
    lengths: Sequence[int],
    fn: Callable[[list[T]], Sequence[R]],
    max_tokens: int = 8192,
    max_batch: int = 64,
) -> list[R]:
    """Apply `fn` to length-sorted token-budget batches of `items`; results in the original order."""
    out: list[Any] = [None] * len(items)
    for batch in token_budget_batches(lengths, max_tokens, max_batch):
        results = fn([items[i] for i in batch])
        if len(results) != len(batch):
            raise RuntimeError(f"classifier returned {len(results)} results for a batch of {len(batch)}")
        for i, r in zip(batch, results, strict=True):
            out[i] = r
    return out
