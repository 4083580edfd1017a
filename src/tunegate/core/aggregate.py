"""Named aggregations that turn a per-sample vector into a metric value.

A `Metric` stores its per-sample values and the *name* of its aggregation, not a
number alone, so `compare` can resample samples (paired bootstrap) and recompute
the metric exactly as the suite did. Every function here accepts `values` and
`weights` shaped `(..., n)` and reduces the last axis, so a whole bootstrap
matrix is aggregated in one vectorised call.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from numpy.typing import ArrayLike

Aggregation = Callable[[np.ndarray, np.ndarray], np.ndarray]


def _mean(values: np.ndarray, weights: np.ndarray) -> np.ndarray:
    return values.mean(axis=-1)


def _ratio(values: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Ratio of sums, e.g. BLEU-free weighted means or 'biased answers / non-unknown answers'."""
    den = weights.sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, values.sum(axis=-1) / np.where(den > 0, den, 1.0), np.nan)


def _exp_ratio(values: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Perplexity: exp(total negative log-likelihood / total tokens)."""
    return np.exp(_ratio(values, weights))


def _bias_score(values: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """BBQ-style bias score 2 * (biased / counted) - 1, in [-1, 1]."""
    return 2.0 * _ratio(values, weights) - 1.0


def _max(values: np.ndarray, weights: np.ndarray) -> np.ndarray:
    return values.max(axis=-1)


def _abs_from_half(values: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """|mean - 0.5|: how far a 0/1 preference rate sits from an unbiased 50% (CrowS-Pairs)."""
    return np.abs(values.mean(axis=-1) - 0.5)


def _corpus(values: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Corpus-level scores (corpus BLEU/chrF) pool statistics over all samples and
    cannot be recomputed from one value per sample: resampling gives NaN (no interval)."""
    return np.full(values.shape[:-1], np.nan)


AGGREGATIONS: dict[str, Aggregation] = {
    "mean": _mean,
    "ratio": _ratio,
    "exp_ratio": _exp_ratio,
    "bias_score": _bias_score,
    "max": _max,
    "corpus": _corpus,
    "abs_from_half": _abs_from_half,
}


def aggregate(name: str, values: ArrayLike, weights: ArrayLike | None = None) -> np.ndarray:
    """Apply aggregation `name` over the last axis; an empty vector gives NaN."""
    fn = AGGREGATIONS.get(name)
    if fn is None:
        raise KeyError(f"unknown aggregation {name!r}; known: {sorted(AGGREGATIONS)}")
    values = np.asarray(values, dtype=float)
    w = np.ones_like(values) if weights is None else np.asarray(weights, dtype=float)
    if values.shape[-1] == 0:
        return np.full(values.shape[:-1], np.nan)
    return fn(values, w)
