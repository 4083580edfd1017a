"""The runner and its cache: one batched call per type, caching, resume, fail-closed states."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.kinds import register, write_suite
from tunegate.backends.mock import MockBackend
from tunegate.core.results import RunResult
from tunegate.run.evaluate import evaluate
from tunegate.run.runner import RunOptions

ROWS = [{"id": f"q{i}", "prompt": f"Question {i}?", "target": f"answer {i}"} for i in range(12)]


@pytest.fixture(autouse=True)
def _kind() -> None:
    register()


def scripted(**extra: object) -> MockBackend:
    gens = {f"Question {i}?": (f"answer {i}" if i % 3 else "wrong") for i in range(12)}
    return MockBackend.scripted(generations=gens, **extra)


def metrics(result: RunResult) -> dict[str, float | None]:
    return {f"{s.name}/{m.name}": m.value for s in result.suites for m in s.metrics}


def test_metric_values_from_scripted_outputs(tmp_path: Path) -> None:
    suite = write_suite(tmp_path, ROWS)
    result = evaluate(scripted().spec, [str(suite)], backend=scripted(), cache_path=None)
    assert metrics(result)["echo/accuracy"] == pytest.approx(8 / 12)
    assert result.suites[0].counts == {"scored": 12, "errored": 0, "skipped": 0}
    assert result.complete


def test_second_identical_run_performs_no_forward_pass(tmp_path: Path) -> None:
    suite = write_suite(tmp_path, ROWS)
    cache = tmp_path / "cache.sqlite"
    first_backend = scripted()
    first = evaluate(first_backend.spec, [str(suite)], backend=first_backend, cache_path=cache)
    assert first_backend.forward_passes == 24 and first.cache == {"hits": 0, "computed": 24}
    again = scripted()
    second = evaluate(again.spec, [str(suite)], backend=again, cache_path=cache)
    assert again.forward_passes == 0
    assert second.cache == {"hits": 24, "computed": 0}
    assert metrics(second) == metrics(first)


def test_duplicate_requests_are_computed_once(tmp_path: Path) -> None:
    rows = ROWS + [{"id": "dup", "prompt": "Question 1?", "target": "answer 1"}]
    backend = scripted()
    evaluate(backend.spec, [str(write_suite(tmp_path, rows))], backend=backend, cache_path=None)
    assert backend.forward_passes == 24  # the duplicate row asks nothing new


def test_interrupted_run_resumes_to_identical_results(tmp_path: Path) -> None:
    suite = write_suite(tmp_path, ROWS)
    reference = evaluate(scripted().spec, [str(suite)], backend=scripted(), cache_path=tmp_path / "ref.sqlite")
    cache = tmp_path / "cache.sqlite"
    crashing = scripted(interrupt_after=10)
    with pytest.raises(KeyboardInterrupt):
        evaluate(crashing.spec, [str(suite)], backend=crashing, cache_path=cache, options=RunOptions(chunk_size=4))
    resumed_backend = scripted(interrupt_after=10)  # same fingerprint as the crashed one
    resumed_backend.script.interrupt_after = None
    resumed = evaluate(resumed_backend.spec, [str(suite)], backend=resumed_backend, cache_path=cache)
    assert resumed.cache["hits"] == 8  # two committed chunks of 4 before the crash
    assert resumed_backend.forward_passes == 24 - 8
    assert metrics(resumed) == metrics(reference)
    strip = lambda r: [(s.id, s.status, [x.model_dump() for x in s.scores]) for s in r.suites[0].samples]  # noqa: E731
    assert strip(resumed) == strip(reference)


def test_backend_failure_errors_only_affected_samples_and_is_not_cached(tmp_path: Path) -> None:
    suite = write_suite(tmp_path, ROWS)
    cache = tmp_path / "c.sqlite"
    failing = scripted(fail_on=["Question 5?"])
    result = evaluate(failing.spec, [str(suite)], backend=failing, cache_path=cache, options=RunOptions(chunk_size=1))
    by_id = {s.id: s for s in result.suites[0].samples}
    assert by_id["q5"].status == "errored" and "scripted failure" in (by_id["q5"].reason or "")
    assert sum(s.status == "scored" for s in by_id.values()) == 11
    acc = result.suites[0].metric("accuracy")
    assert acc is not None and acc.n == 11 and acc.errored == 1
    assert not result.complete
    fixed = scripted()
    fixed.script = failing.script.model_copy(update={"fail_on": []})
    retry = evaluate(fixed.spec, [str(suite)], backend=fixed, cache_path=cache)
    assert fixed.forward_passes == 2 and retry.complete  # only the errored sample's two requests were recomputed


def test_skips_and_scorer_errors_end_with_reasons(tmp_path: Path) -> None:
    rows = ROWS[:4] + [{"id": "s", "prompt": "x?", "target": "y", "skip": True},
                       {"id": "c", "prompt": "z?", "target": "y", "crash": True}]
    result = evaluate(scripted().spec, [str(write_suite(tmp_path, rows))], backend=scripted(), cache_path=None)
    by_id = {s.id: s for s in result.suites[0].samples}
    assert by_id["s"].status == "skipped" and by_id["s"].reason == "marked skip in the data"
    assert by_id["c"].status == "errored" and "could not score" in (by_id["c"].reason or "")
    assert result.suites[0].counts == {"scored": 4, "errored": 1, "skipped": 1}
    assert result.suites[0].metric("accuracy").n == 4  # type: ignore[union-attr]


def test_scorer_crash_fails_closed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.kinds import EchoKind

    def boom(self: EchoKind, samples: list, responses: list) -> list:
        raise RuntimeError("classifier exploded")

    monkeypatch.setattr(EchoKind, "score_batch", boom)
    result = evaluate(scripted().spec, [str(write_suite(tmp_path, ROWS[:3]))], backend=scripted(), cache_path=None)
    assert [s.status for s in result.suites[0].samples] == ["errored"] * 3
    assert result.suites[0].metric("accuracy").value is None  # type: ignore[union-attr]


def test_run_result_round_trips(tmp_path: Path) -> None:
    result = evaluate(scripted().spec, [str(write_suite(tmp_path, ROWS))], backend=scripted(), cache_path=None)
    result.save(tmp_path / "out" / "results.json")
    loaded = RunResult.load(tmp_path / "out")
    assert loaded == result
    assert loaded.provenance.config_hash and loaded.suites[0].data_hash
    assert loaded.metric_names() == ["echo/accuracy", "echo/mean_ll"]


def test_real_model_interrupted_run_resumes_identically(tmp_path: Path, tiny_model_dir: Path) -> None:
    from tunegate.backends.hf import HFBackend
    from tunegate.core.model_spec import ModelSpec

    suite = write_suite(tmp_path, ROWS[:6])
    spec = ModelSpec(model=str(tiny_model_dir), batch_size=2)
    reference = evaluate(spec, [str(suite)], cache_path=None)

    class Interrupting(HFBackend):
        def generate(self, requests):  # type: ignore[no-untyped-def]
            if self.forward_passes > 0:
                raise KeyboardInterrupt
            return super().generate(requests)

    cache = tmp_path / "c.sqlite"
    with pytest.raises(KeyboardInterrupt):
        evaluate(spec, [str(suite)], backend=Interrupting(spec), cache_path=cache, options=RunOptions(chunk_size=2))
    resumed = evaluate(spec, [str(suite)], cache_path=cache)
    assert 0 < resumed.cache["hits"] < 12
    assert metrics(resumed) == metrics(reference)
    assert [s.responses for s in resumed.suites[0].samples] == [
        [r.model_copy(update={"cached": x.cached}) for r, x in zip(s.responses, t.responses, strict=True)]
        for s, t in zip(reference.suites[0].samples, resumed.suites[0].samples, strict=True)
    ]


def test_real_model_second_identical_run_performs_no_forward_pass(tmp_path: Path, tiny_model_dir: Path) -> None:
    from tunegate.core.model_spec import ModelSpec
    from tunegate.run.evaluate import load_backend

    suite = write_suite(tmp_path, ROWS[:5])
    spec = ModelSpec(model=str(tiny_model_dir), batch_size=4)
    cache = tmp_path / "c.sqlite"
    first_backend = load_backend(spec)
    first = evaluate(spec, [str(suite)], backend=first_backend, cache_path=cache)
    assert first_backend.forward_passes > 0 and first.cache["computed"] == 10
    second_backend = load_backend(spec)
    second = evaluate(spec, [str(suite)], backend=second_backend, cache_path=cache)
    assert second_backend.forward_passes == 0
    assert second.cache == {"hits": 10, "computed": 0}
    assert metrics(second) == metrics(first)


def test_chunks_keep_requests_sharing_a_context_together() -> None:
    """A question's choices must reach the backend in one call, or it loses the shared prefix for some of them."""
    from tunegate.core.request import GenerateRequest, LoglikelihoodRequest
    from tunegate.run.runner import _chunks, _order

    reqs = [LoglikelihoodRequest(context=f"Question {q}:" + " pad" * (q % 3), continuation=f" choice {c}" * (1 + c))
            for q in range(5) for c in range(4)]
    items = sorted(((str(i), r) for i, r in enumerate(reversed(reqs))), key=lambda kr: _order(kr[1]))
    chunks = _chunks(items, 3)
    seen: dict[str, int] = {}
    for n, chunk in enumerate(chunks):
        for _, r in chunk:
            assert seen.setdefault(r.context, n) == n, r.context  # never split across chunks
    assert [len(c) for c in chunks] == [4] * 5  # a chunk grows past its size only to finish a context
    assert sum(len(c) for c in chunks) == len(reqs)
    assert len(_order(reqs[0])) == 2 and _order(reqs[5])[0] < _order(reqs[0])[0]  # longest contexts first
    same = [(str(i), LoglikelihoodRequest(context="", continuation=f"doc {i}")) for i in range(8)]
    assert [len(c) for c in _chunks(same, 3)] == [6, 2]  # a long run sharing one context is still bounded
    gens = [("g", GenerateRequest(prompt="x" * n)) for n in range(7)]
    assert [len(c) for c in _chunks(gens, 3)] == [3, 3, 1]
