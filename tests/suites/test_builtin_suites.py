"""The built-in task suites: enough data, unique ids, valid rows, and a tiny real model runs each kind end to end."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from tunegate.core import plugins
from tunegate.core.config import SuiteConfig, load_yaml_model
from tunegate.core.model_spec import ModelSpec
from tunegate.run.evaluate import evaluate
from tunegate.run.suite_loader import builtin_suites, load_suite
from tunegate.suites.base import SuiteKind

OURS = {
    "support_mc": "multiple_choice",
    "support_answers": "generation",
    "summaries": "generation",
    "support_text": "perplexity",
}


@pytest.mark.parametrize("name", sorted(OURS))
def test_builtin_has_at_least_50_valid_samples_with_unique_ids(name: str) -> None:
    path = builtin_suites()[name]
    config = load_yaml_model(path, SuiteConfig)
    assert config.kind == OURS[name] and config.name == name
    assert len(config.description) > 80, "the description must say what the suite measures"
    suite = load_suite(name)  # validates every row
    samples = suite.samples()
    assert len(samples) >= 50
    ids = [s.id for s in samples]
    assert len(ids) == len(set(ids))
    data = path.parent / (config.data.path or "")
    raw_ids = [json.loads(line)["id"] for line in data.read_text(encoding="utf-8").splitlines() if line.strip()]
    assert len(raw_ids) == len(samples) and len(set(raw_ids)) == len(raw_ids)  # ids are written in the file, not row numbers


def test_support_mc_answers_are_spread_over_positions() -> None:
    """Shuffled choices: a model that always picks one position cannot score well."""
    samples = load_suite("support_mc").samples()
    counts = [sum(1 for s in samples if s.answer == i) for i in range(3)]
    assert max(counts) < 0.5 * len(samples)
    assert all(3 <= len(s.choices or []) <= 4 for s in samples)


def test_generation_builtins_map_their_columns() -> None:
    answers = load_suite("support_answers")
    first = answers.samples()[0]
    assert answers.requests(first)[0].prompt == f"Customer: {first.input}\nAgent:"  # type: ignore[union-attr]
    summaries = load_suite("summaries")
    assert "exact_match" not in summaries.options.metrics
    assert all(isinstance(s.target, str) and s.target.endswith(".") for s in summaries.samples())


def _limited(name: str, limit: int) -> SuiteKind:
    """A built-in suite cut to its first `limit` rows (keeps the tiny-model tests fast)."""
    path = builtin_suites()[name]
    config = load_yaml_model(path, SuiteConfig)
    config = config.model_copy(update={"data": config.data.model_copy(update={"limit": limit})})
    suite: SuiteKind = plugins.load("suites", config.kind)(config, path.parent)
    suite.samples()
    return suite


@pytest.mark.slow
@pytest.mark.parametrize("name", ["support_mc", "support_answers", "support_text"])
def test_tiny_model_end_to_end(name: str, tiny_model_dir: Path) -> None:
    """One built-in per kind on a random tiny GPT-2: every sample scored, every metric finite."""
    pytest.importorskip("tunegate.backends.hf")
    suite = _limited(name, 5)
    result = evaluate(ModelSpec(model=str(tiny_model_dir)), [suite], cache_path=None)
    (sr,) = result.suites
    assert sr.counts == {"scored": 5, "errored": 0, "skipped": 0}, [s.reason for s in sr.samples]
    assert result.complete
    for metric in sr.metrics:
        assert metric.value is not None and math.isfinite(metric.value), metric.name
        if metric.aggregation != "corpus":
            assert metric.n == 5 and len(metric.per_sample) == 5
    if name == "support_text":
        ppl = sr.metric("perplexity")
        # a random model over a 512-token vocabulary is near-uniform: perplexity within a few-fold of 512
        assert ppl is not None and ppl.value is not None and 50 < ppl.value < 5000
        assert all((s.responses[0].n_tokens or 0) > 0 for s in sr.samples)
    if name == "support_answers":
        assert all(s.responses[0].text is not None for s in sr.samples)
