"""One contract, checked over every registered plugin (the peft pattern).

Every suite kind registered under `tunegate.suites` and every scorer under
`tunegate.scorers` gets the same checks, so a new plugin is covered the moment
its entry point exists:

- each built-in suite (a `suites/*.yaml` whose kind is registered) loads its
  data, produces requests, is scored from the scripted mock backend's default
  answers with every sample accounted for, and its results survive a
  `RunResult.save` / `load` round trip;
- each suite kind rejects an unknown option key with a UserError;
- each scorer scores two texts, and fails closed (error scores under its
  declared output names) when scoring crashes.

A plugin whose module cannot be imported fails its contract, naming the plugin and the missing package.
Backends have their own contract: tests/test_backend_contract.py.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

from tunegate.backends.mock import MockBackend
from tunegate.core import plugins
from tunegate.core.config import SuiteConfig, read_yaml
from tunegate.core.errors import MissingDependencyError, TunegateError, UserError
from tunegate.core.model_spec import ModelSpec
from tunegate.core.request import GenerateRequest, LoglikelihoodRequest
from tunegate.core.results import RunResult
from tunegate.core.score import Score
from tunegate.run.evaluate import evaluate
from tunegate.run.suite_loader import builtin_suites, load_suite
from tunegate.scorers.base import Scorer
from tunegate.suites.base import SkipSample, SuiteKind


def _load_or_skip(group: str, name: str) -> Any:
    """The plugin's class; a plugin that cannot be imported FAILS, naming itself and the missing package."""
    try:
        return plugins.load(group, name)
    except ImportError as exc:
        pytest.fail(f"{group[:-1]} plugin {name!r} cannot be imported: {type(exc).__name__}: {exc} "
                    f"(missing package: {getattr(exc, 'name', None) or 'see the message'})")


def _builtin_cases() -> list[Any]:
    """(suite name, kind) for every built-in suite whose kind is a registered plugin."""
    kinds = set(plugins.names("suites"))
    cases = []
    for name, path in sorted(builtin_suites().items()):
        try:
            doc = read_yaml(path)
        except TunegateError:
            doc = None
        kind = doc.get("kind") if isinstance(doc, dict) else None
        if kind in kinds:
            cases.append(pytest.param(name, kind, id=f"{kind}:{name}"))
    return cases


# ---- suite kinds ---------------------------------------------------------
@pytest.mark.parametrize(("name", "kind"), _builtin_cases())
def test_builtin_suite_contract(name: str, kind: str, tmp_path: Path) -> None:
    cls = _load_or_skip("suites", kind)
    assert issubclass(cls, SuiteKind)

    # loads and validates its built-in data; a kind whose optional package is missing skips, naming the pip install
    try:
        suite = load_suite(name)
    except MissingDependencyError as exc:
        pytest.skip(f"{name}: {exc}")
    except UserError as exc:  # an lm-eval task over a Hub dataset, offline without it in the datasets cache
        config = load_suite(name, read_data=False).config
        if config.kind == "lm_eval" and "offline mode is on" in str(exc):
            pytest.skip(f"{name}: its Hub dataset is not in the local cache; the group's run on cached copies is "
                        "tests/suites/test_general_capabilities.py")
        raise
    samples = suite.samples()
    assert samples, f"{name}: no samples"
    assert len({s.id for s in samples}) == len(samples)

    # produces well-formed requests (or a reasoned skip)
    asked = 0
    for sample in samples:
        try:
            reqs = suite.requests(sample)
        except SkipSample as why:
            assert str(why), f"{name}/{sample.id}: SkipSample needs a reason"
            continue
        assert all(isinstance(r, (LoglikelihoodRequest, GenerateRequest)) for r in reqs)
        asked += bool(reqs)
    assert asked > 0, f"{name}: no sample produced any request"

    # scores the scripted mock backend's default answers; every sample is accounted for
    result = evaluate(ModelSpec(model="contract-mock", backend="mock"), [suite], cache_path=None,
                      backend=MockBackend.scripted())
    (sr,) = result.suites
    assert sum(sr.counts.values()) == len(samples) == len(sr.samples)
    for r in sr.samples:
        if r.status == "scored":
            assert r.scores and all(s.ok for s in r.scores), f"{name}/{r.id}: scored but has a failed score"
        else:
            assert r.reason, f"{name}/{r.id}: {r.status} without a reason"
    assert sr.metrics, f"{name}: no metrics"
    assert len({m.name for m in sr.metrics}) == len(sr.metrics), f"{name}: duplicate metric names"
    for m in sr.metrics:
        assert m.value is None or math.isfinite(m.value), f"{name}/{m.name}: {m.value}"
        assert all(math.isfinite(v) for v in m.per_sample.values())
        if m.value is not None and m.aggregation != "corpus":  # corpus-level scores cannot be split per sample
            assert m.per_sample, f"{name}/{m.name}: a value without the per-sample vector paired statistics need"

    # metrics serialise to JSON and read back unchanged
    out = tmp_path / "results.json"
    result.save(out)
    assert RunResult.load(out).model_dump(mode="json") == result.model_dump(mode="json")

    # an unknown option key is an input error
    config = suite.config.model_copy(update={"options": {**suite.config.options, "no_such_option_xyz": 1}})
    with pytest.raises(UserError, match="no_such_option_xyz"):
        cls(config, suite.base_dir)


@pytest.mark.parametrize("kind", plugins.names("suites"))
def test_every_suite_kind_declares_itself_and_rejects_unknown_options(kind: str, tmp_path: Path) -> None:
    """Also covers kinds that ship no built-in suite."""
    cls = _load_or_skip("suites", kind)
    assert issubclass(cls, SuiteKind)
    assert cls.name == kind, f"class {cls.__name__}.name is {cls.name!r} but it is registered as {kind!r}"
    assert cls.description, f"{kind}: the report's methods section needs a description"
    config = SuiteConfig(name="contract", kind=kind, data={"path": "absent.jsonl"}, options={"no_such_option_xyz": 1})
    with pytest.raises(UserError, match="no_such_option_xyz"):
        cls(config, tmp_path)


# ---- scorers --------------------------------------------------------------
def _instantiate(cls: type[Scorer]) -> Scorer:
    """Defaults for every option; a required string option (e.g. a model id) gets a path that does not exist,
    so such a scorer must fail closed on load rather than crash."""
    required = {k: f for k, f in cls.Options.model_fields.items() if f.is_required()}
    given: dict[str, Any] = {k: v for k, v in KNOWN_REQUIRED.items() if k in required}
    rest = {k: f for k, f in required.items() if k not in given}
    if any(f.annotation is not str for f in rest.values()):
        pytest.fail(f"{cls.__name__} has required non-string options {sorted(rest)}: give the contract a value for "
                    "them in KNOWN_REQUIRED")
    return cls(**given, **{k: "/nonexistent/tunegate-contract-model" for k in rest})


#: values for required options that are not a model path: the judge scorer's judge is a scripted mock model
KNOWN_REQUIRED: dict[str, Any] = {"judge": {"model": "contract-judge", "backend": "mock"}}


TEXTS = ["Thank you, your refund has been processed and should arrive within five days.",
         "This is useless and so are you."]


@pytest.mark.parametrize("name", plugins.names("scorers"))
def test_scorer_contract(name: str) -> None:
    cls = _load_or_skip("scorers", name)
    assert issubclass(cls, Scorer)
    scorer = _instantiate(cls)
    out = scorer.score_texts_safe(TEXTS)
    assert isinstance(out, list) and len(out) == 2
    for scores in out:
        assert isinstance(scores, list) and scores
        assert all(isinstance(s, Score) for s in scores)
        assert all(s.ok or s.error for s in scores), "a score is neither a value nor an error"
        if cls.outputs:
            assert {s.name for s in scores} <= set(cls.outputs), f"{name}: scores outside its declared outputs"


@pytest.mark.parametrize("name", plugins.names("scorers"))
def test_scorer_fails_closed(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A crash while scoring yields error scores for every text, never a value."""
    cls = _load_or_skip("scorers", name)
    scorer = _instantiate(cls)

    def boom(texts: list[str], prompts: list[str | None] | None = None) -> list[list[Score]]:
        raise RuntimeError("scorer crashed")

    monkeypatch.setattr(scorer, "score_texts", boom)
    out = scorer.score_texts_safe(TEXTS)
    assert len(out) == 2
    for scores in out:
        assert scores and all(not s.ok and s.error for s in scores)
