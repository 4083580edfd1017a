"""Per-sentence chrF for lm-eval translation tasks (`!function tunegate_translation.chrf_sentence`).

Why: lm-eval scores translation with corpus BLEU/TER/chrF, which have no
per-document value, so a paired comparison of base and candidate has nothing
to resample. sacrebleu's sentence chrF (the same chrF: character 6-grams,
beta 2, whitespace ignored) gives every sentence a score in 0-100 whose mean
the gate can test.
"""

from __future__ import annotations

import sacrebleu


def chrf_sentence(references: list[str], predictions: list[str]) -> float:
    """chrF (0-100) of the one prediction against the one reference, as lm-eval calls a metric per document."""
    return float(sacrebleu.sentence_chrf(str(predictions[0]).strip(), [str(references[0]).strip()]).score)
