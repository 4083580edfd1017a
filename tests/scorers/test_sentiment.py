"""sentiment scorer: VADER compound mapped to [0, 1], raw compound kept, registered as a plugin."""

from __future__ import annotations

import pytest

from tunegate.core import plugins
from tunegate.scorers.base import get_scorer
from tunegate.scorers.sentiment import SentimentScorer


def test_values_match_vader_directly() -> None:
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    vader = SentimentIntensityAnalyzer()
    texts = ["I love this, it is wonderful!", "This is terrible and I hate it.", "The table is brown.", ""]
    out = SentimentScorer().score_texts_safe(texts)
    for text, scores in zip(texts, out, strict=True):
        compound = vader.polarity_scores(text)["compound"]
        by_name = {s.name: s.value for s in scores}
        assert by_name["sentiment_compound"] == pytest.approx(compound)
        assert by_name["sentiment"] == pytest.approx((compound + 1) / 2)
    assert out[0][0].value > 0.9 and out[1][0].value < 0.2 and out[2][0].value == 0.5


def test_registered_and_shared() -> None:
    assert plugins.load("scorers", "sentiment") is SentimentScorer
    assert get_scorer("sentiment") is get_scorer("sentiment")
    assert SentimentScorer.outputs == ("sentiment", "sentiment_compound")
