"""Chance-corrected agreement between raters: Cohen's kappa (two raters) and Fleiss' kappa (any number).

Why by hand: statsmodels (which has both) is not a tunegate dependency, and
both are a few lines of arithmetic on a contingency table. Definitions:
Cohen (1960), kappa = (p_o - p_e) / (1 - p_e) with p_e from the two raters'
own marginals; Fleiss (1971), with p_e from the pooled category shares and
p_o the mean pairwise agreement per item (every item rated by the same number
of raters). kappa is None when it is undefined (no items, or p_e = 1: every
rating in one category, so chance explains everything).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def cohen_kappa(a: Sequence[str], b: Sequence[str], categories: Sequence[str]) -> float | None:
    """Cohen's kappa of two raters' labels on the same items (in the same order)."""
    if len(a) != len(b):
        raise ValueError("both raters must label the same items")
    n = len(a)
    if n == 0:
        return None
    idx = {c: i for i, c in enumerate(categories)}
    table = np.zeros((len(categories), len(categories)))
    for x, y in zip(a, b, strict=True):
        table[idx[x], idx[y]] += 1
    table /= n
    p_o = float(np.trace(table))
    p_e = float(table.sum(axis=1) @ table.sum(axis=0))
    return None if p_e >= 1.0 - 1e-12 else (p_o - p_e) / (1.0 - p_e)


def fleiss_kappa(ratings: Sequence[Sequence[str]], categories: Sequence[str]) -> float | None:
    """Fleiss' kappa; `ratings[i]` holds every rater's label for item i (the same number of raters per item, >= 2)."""
    if not ratings:
        return None
    m = len(ratings[0])
    if m < 2 or any(len(r) != m for r in ratings):
        raise ValueError("Fleiss' kappa needs the same number (at least 2) of ratings on every item")
    idx = {c: i for i, c in enumerate(categories)}
    counts = np.zeros((len(ratings), len(categories)))
    for i, row in enumerate(ratings):
        for label in row:
            counts[i, idx[label]] += 1
    p_j = counts.sum(axis=0) / (len(ratings) * m)
    p_i = ((counts * (counts - 1)).sum(axis=1)) / (m * (m - 1))
    p_o, p_e = float(p_i.mean()), float((p_j ** 2).sum())
    return None if p_e >= 1.0 - 1e-12 else (p_o - p_e) / (1.0 - p_e)
