"""Fault injection (issue 14, verdict integrity): a diverged model and a too-small window.

- A model whose weights are all NaN must end every sample errored with the
  reason (never an invented CrowS-Pairs / TruthfulQA / generation score), the
  run must exit 3, and nothing may be cached: a rerun on the same cache is
  still exit 3.
- A small `--max-length` must never cut inputs or the generation budget
  silently: truncation is recorded per sample and counted per suite,
  `truncation: error` errors those samples, and generation keeps the full
  requested budget (or errors when it cannot fit at all).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from tests.cli import run_cli
from tunegate.backends.mock import MockBackend
from tunegate.core.cache import ResponseCache, cache_key
from tunegate.core.model_spec import ModelSpec
from tunegate.core.request import GenerateRequest, LoglikelihoodRequest, Response, checked
from tunegate.core.results import RunResult
from tunegate.run.evaluate import evaluate
from tunegate.run.suite_loader import load_suites

NON_FINITE = "non-finite"


def _suite_file(folder: Path, name: str, kind: str, rows: list[dict], **options: object) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    doc = {"name": name, "kind": kind, "data": f"{name}.jsonl", "options": options}
    (folder / f"{name}.yaml").write_text(json.dumps(doc), encoding="utf-8")
    return folder / f"{name}.yaml"


GEN_ROWS = [{"id": f"g{i}", "prompt": f"Customer: where is my order number {i}?", "reference": "It ships today."}
            for i in range(4)]


# ---- fast: the runner and the suites never turn a missing value into a number ---------------------
def test_checked_turns_nan_and_missing_values_into_errors() -> None:
    nan = checked(Response(kind="loglikelihood", loglikelihood=float("nan")))
    assert not nan.ok and "non-finite log-likelihood (nan)" in (nan.error or "") and nan.loglikelihood is None
    assert not checked(Response(kind="loglikelihood", loglikelihood=float("-inf"))).ok
    assert "no log-likelihood" in (checked(Response(kind="loglikelihood")).error or "")
    assert "no generated text" in (checked(Response(kind="generate")).error or "")
    good = Response(kind="loglikelihood", loglikelihood=-1.5)
    assert checked(good) is good


def test_a_nan_backend_errors_every_loglikelihood_sample_and_caches_nothing(tmp_path: Path) -> None:
    """The mock answers NaN for every log-likelihood: no CrowS-Pairs or TruthfulQA value may appear."""
    suites = ["crows_pairs_mini", "truthfulqa_mini"]
    cache = tmp_path / "cache.sqlite"
    nan = float("nan")

    class NaNBackend(MockBackend):
        def loglikelihood(self, requests: list[LoglikelihoodRequest]) -> list[Response]:
            return [Response(kind="loglikelihood", loglikelihood=nan, n_tokens=1) for _ in requests]

    spec = ModelSpec(model="diverged", backend="mock")
    for attempt in range(2):
        result = evaluate(spec, suites, cache_path=cache, backend=NaNBackend(spec))
        assert not result.complete
        assert result.cache["hits"] == 0, f"attempt {attempt}: an invalid answer was cached"
        for suite in result.suites:
            assert suite.counts["scored"] == 0 and suite.counts["errored"] == len(suite.samples) > 0
            assert all(NON_FINITE in (s.reason or "") for s in suite.samples)
            assert all(m.value is None and m.errored > 0 and not m.per_sample for m in suite.metrics)
            assert suite.metrics[0].errored == len(suite.samples)


def test_an_old_cache_entry_holding_null_is_recomputed_not_read_as_zero(tmp_path: Path) -> None:
    """Old caches stored NaN as null; the runner must treat such an entry as a miss."""
    (suite,) = load_suites(["crows_pairs_mini"])
    backend = MockBackend.scripted()
    path = tmp_path / "cache.sqlite"
    rc = ResponseCache(path)
    sample = suite.samples()[0]
    keys = [cache_key(backend.fingerprint(), backend.cache_settings(), r) for r in suite.requests(sample)]
    # what the old code stored: a response with no error whose value serialised to null
    rc.put_many([(k, Response(kind="loglikelihood", loglikelihood=float("nan"), n_tokens=3)) for k in keys])
    stored = rc.get_many(keys)
    rc.close()
    assert len(stored) == 2 and all(r.loglikelihood is None for r in stored.values())
    result = evaluate(backend.spec, ["crows_pairs_mini"], cache_path=path, backend=backend)
    got = result.suite("crows_pairs_mini")
    assert got is not None and got.counts["errored"] == 0
    assert result.cache["hits"] == 0
    first = next(s for s in got.samples if s.id == sample.id)
    assert first.responses[0].loglikelihood is not None and math.isfinite(first.responses[0].loglikelihood)


def test_suites_give_score_errors_for_missing_loglikelihoods_when_called_directly() -> None:
    """No `float(ll or 0.0)`: a suite scoring a response without a value errors that sample."""
    names = ["crows_pairs_mini", "truthfulqa_mini", "bbq_mini", "halueval_mini"]
    for suite in load_suites(names):
        sample = suite.samples()[0]
        resps = [Response(kind="loglikelihood", loglikelihood=None) for _ in suite.requests(sample)]
        scores = suite.score(sample, resps)
        assert scores and all(not s.ok and s.error for s in scores), suite.config.name
        resps = [Response(kind="loglikelihood", loglikelihood=float("nan")) for _ in suite.requests(sample)]
        assert all(not s.ok for s in suite.score(sample, resps)), suite.config.name


def test_truncation_option_is_validated(tmp_path: Path) -> None:
    from tunegate.core.errors import UserError

    path = _suite_file(tmp_path, "gen", "generation", GEN_ROWS, truncation="sometimes")
    with pytest.raises(UserError, match="truncation: is 'sometimes'; use 'truncate' or 'error'"):
        load_suites([str(path)])
    (suite,) = load_suites([str(_suite_file(tmp_path, "gen2", "generation", GEN_ROWS, truncation="error"))])
    assert suite.truncation == "error"


def test_runner_counts_truncated_samples_and_errors_them_on_request(tmp_path: Path) -> None:
    class Cutting(MockBackend):
        def generate(self, requests: list[GenerateRequest]) -> list[Response]:
            return [r.model_copy(update={"truncated_tokens": 5 if "number 1" in q.prompt else 0})
                    for q, r in zip(requests, super().generate(requests), strict=True)]

    spec = ModelSpec(model="m", backend="mock")
    for policy in ("truncate", "error"):
        path = _suite_file(tmp_path / policy, "gen", "generation", GEN_ROWS, truncation=policy)
        result = evaluate(spec, [str(path)], cache_path=None, backend=Cutting(spec, None))
        (suite,) = result.suites
        assert suite.truncated == 1
        flagged = [s for s in suite.samples if s.truncated]
        assert [s.id for s in flagged] == ["g1"] and flagged[0].truncated_tokens == 5
        if policy == "truncate":
            assert flagged[0].status == "scored" and result.complete
        else:
            assert flagged[0].status == "errored" and "truncation: error" in (flagged[0].reason or "")
            assert suite.counts["errored"] == 1 and not result.complete


# ---- slow: real tiny models ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def nan_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny GPT-2 whose every weight is NaN (saved as safetensors, loaded through the normal path)."""
    from safetensors.torch import load_file, save_file

    from tunegate.finetune.tiny import build_tiny_model

    folder = build_tiny_model(tmp_path_factory.mktemp("nan-gpt2"), "gpt2")
    weights = folder / "model.safetensors"
    tensors = load_file(str(weights))
    save_file({k: v.float().fill_(float("nan")) if v.is_floating_point() else v for k, v in tensors.items()},
              str(weights), metadata={"format": "pt"})
    return folder


@pytest.mark.slow
def test_a_nan_model_ends_incomplete_with_reasons_and_nothing_cached(
    nan_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    gen = _suite_file(tmp_path / "suites", "support_gen", "generation", GEN_ROWS, max_new_tokens=8)
    sampled = _suite_file(tmp_path / "suites", "sampled_gen", "generation", GEN_ROWS[:2], max_new_tokens=8,
                          temperature=1.0)
    cache = tmp_path / "cache.sqlite"
    args = ["run", "--model", str(nan_model), "--device", "cpu", "--suites",
            f"crows_pairs_mini,truthfulqa_mini,{gen},{sampled}", "--cache", str(cache)]
    for attempt in range(2):
        out = tmp_path / f"out{attempt}"
        code, stdout, err = run_cli([*args, "--out", str(out)], capsys)
        assert code == 3, (stdout, err)
        assert "run incomplete" in err
        result = RunResult.load(out / "results.json")
        assert not result.complete
        assert result.cache["hits"] == 0, f"attempt {attempt}: something was cached"
        for suite in result.suites:
            n = len(suite.samples)
            assert n > 0 and suite.counts == {"scored": 0, "errored": n, "skipped": 0}, suite.name
            for s in suite.samples:
                assert s.status == "errored" and NON_FINITE in (s.reason or ""), (suite.name, s.reason)
                assert all(not r.ok for r in s.responses)
                assert all(r.loglikelihood is None and r.text is None for r in s.responses)
            for m in suite.metrics:
                assert m.value is None and not m.per_sample, (suite.name, m.name, m.value)
    gen_reason = RunResult.load(tmp_path / "out0" / "results.json").suite("support_gen").samples[0].reason  # type: ignore[union-attr]
    assert "non-finite logits" in (gen_reason or "")


@pytest.mark.slow
def test_small_max_length_records_truncation_and_keeps_the_generation_budget(tiny_model_dir: Path) -> None:
    from tunegate.backends.hf import HFBackend

    backend = HFBackend(ModelSpec(model=str(tiny_model_dir), device="cpu", max_length=48, batch_size=4))
    tok = backend.tokenizer
    long_prompt = " ".join(["Please restart the router, wait thirty seconds, and try again."] * 8)
    n_prompt = len(tok(long_prompt, add_special_tokens=False)["input_ids"])
    assert n_prompt > 48
    short, long, too_big = backend.generate([
        GenerateRequest(prompt="Thank you for", max_new_tokens=32),
        GenerateRequest(prompt=long_prompt, max_new_tokens=32),
        GenerateRequest(prompt="Thank you for", max_new_tokens=48),
    ])
    assert short.ok and short.truncated_tokens == 0
    assert long.ok and long.truncated_tokens == n_prompt - (48 - 32)
    # greedy decoding of this tiny model never emits EOS here, so the full budget is used
    assert long.finish_reason == "length" and long.n_tokens == 32
    assert not too_big.ok and "leaves no room for the prompt" in (too_big.error or "")

    ll_short, ll_long = backend.loglikelihood([
        LoglikelihoodRequest(context="Question: What is the capital of France? Answer:", continuation=" Paris."),
        LoglikelihoodRequest(context=long_prompt, continuation=" Paris."),
    ])
    n_cont = len(tok(long_prompt + " Paris.", add_special_tokens=False)["input_ids"]) - n_prompt
    assert ll_short.truncated_tokens == 0
    assert ll_long.truncated_tokens == n_prompt + n_cont - 1 - 48 > 0
    assert ll_long.loglikelihood is not None and math.isfinite(ll_long.loglikelihood)


@pytest.mark.slow
def test_truncation_is_counted_per_suite_and_error_policy_errors_samples(
    tiny_model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    long = " ".join(["The invoice lists the items, the totals and the tax for the month."] * 6)
    rows = [{"id": "short", "prompt": "Thank you for", "reference": "contacting support."},
            {"id": "long", "prompt": long, "reference": "It is correct."}]
    mc_rows = [{"id": "q1", "question": long + " Is it correct?", "choices": ["yes", "no"], "answer": 0},
               {"id": "q2", "question": "Is it?", "choices": ["yes", "no"], "answer": 1}]
    for policy in ("truncate", "error"):
        folder = tmp_path / policy
        gen = _suite_file(folder, "gen", "generation", rows, max_new_tokens=16, truncation=policy)
        mc = _suite_file(folder, "mc", "multiple_choice", mc_rows, truncation=policy)
        out = folder / "out"
        code, stdout, err = run_cli(["run", "--model", str(tiny_model_dir), "--device", "cpu", "--max-length", "32",
                                     "--suites", f"{gen},{mc}", "--out", str(out), "--no-cache"], capsys)
        result = RunResult.load(out / "results.json")
        for name, cut in (("gen", "long"), ("mc", "q1")):
            suite = result.suite(name)
            assert suite is not None and suite.truncated == 1, (name, policy)
            flagged = {s.id: s for s in suite.samples if s.truncated}
            assert list(flagged) == [cut] and flagged[cut].truncated_tokens > 0
            if policy == "truncate":
                assert flagged[cut].status == "scored"
            else:
                assert flagged[cut].status == "errored" and "truncation: error" in (flagged[cut].reason or "")
        gen_long = next(s for s in result.suite("gen").samples if s.id == "long")  # type: ignore[union-attr]
        if policy == "truncate":
            assert code == 0, err
            assert gen_long.requests[0].max_new_tokens == 16  # type: ignore[union-attr]
            assert gen_long.responses[0].n_tokens == 16 or gen_long.responses[0].finish_reason in ("eos", "stop")
        else:
            assert code == 3, (stdout, err)
