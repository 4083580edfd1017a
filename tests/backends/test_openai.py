"""The `openai` backend against real HTTP on loopback: a fault-injecting fake server and `transformers serve`.

The fake server (tests/backends/fake_openai_server.py) scripts 429, 500,
malformed JSON, hangs and vLLM-style prompt log-probabilities; `transformers
serve` is a real OpenAI-compatible server over the tiny local model, whose greedy
answers must equal the `hf` backend's. Nothing leaves 127.0.0.1.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.backends.fake_openai_server import FakeOpenAIServer, hf_scorer
from tests.kinds import register, write_suite
from tunegate.backends._http import (
    PARTIAL_SECRET,
    HttpCaller,
    RetryPolicy,
    Scrubber,
    parse_retry_after,
    run_concurrently,
)
from tunegate.backends.openai import OpenAIBackend, parse_options, public_url
from tunegate.cli import main
from tunegate.core.errors import IncompleteError, MissingDependencyError, UserError
from tunegate.core.model_spec import ModelSpec
from tunegate.core.request import GenerateRequest, LoglikelihoodRequest
from tunegate.run.evaluate import evaluate

httpx = pytest.importorskip("httpx", reason="the openai backend needs httpx: pip install 'tunegate[api]'")

CANARY = "sk-tunegate-canary-7f3a9c1e5b2d4f60"
FAST = {"max_retries": 2, "backoff": 0.0, "timeout": 0.5}


@pytest.fixture(autouse=True)
def _kind(monkeypatch: pytest.MonkeyPatch) -> None:
    register()
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    for var in ("NO_PROXY", "no_proxy"):  # a CI proxy must never see loopback traffic
        monkeypatch.setenv(var, "127.0.0.1,localhost")


@pytest.fixture
def server() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer() as srv:
        yield srv


def spec_for(url: str, model: str = "fake-model", **options: object) -> ModelSpec:
    return ModelSpec(model=model, backend="openai", options={"base_url": url, **FAST, **options})


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run_cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    with pytest.raises(SystemExit) as exc:
        main(args)
    return int(exc.value.code or 0), capsys.readouterr().err


# ---- configuration: secrets never enter it -------------------------------------------------
def test_options_refuse_keys_and_credentials_without_echoing_them() -> None:
    cases = [
        ({"api_key": CANARY}, "never put an API key in configuration"),
        ({"api_key_env": CANARY}, "give the NAME of an environment variable"),
        ({"base_url": f"https://user:{CANARY}@api.example.com/v1"}, "contains credentials"),
        ({"base_url": f"https://api.example.com/v1?api_key={CANARY}"}, "query string carries a credential"),
        ({"endpoint": "embeddings"}, "options: endpoint"),
        ({"concurrency": 0}, "options: concurrency"),
    ]
    for options, message in cases:
        with pytest.raises(UserError) as exc:
            OpenAIBackend.check(ModelSpec(model="m", backend="openai", options=options))
        assert message in str(exc.value)
        assert CANARY not in str(exc.value)
    assert public_url("https://api.example.com:8443/v1/?api-version=2024#x") == "https://api.example.com:8443/v1"
    assert parse_options(ModelSpec(model="m", backend="openai")).base_url == "https://api.openai.com/v1"
    # `--option loglikelihood=off` reaches us as False: YAML 1.1 reads `off` as a boolean
    assert parse_options(ModelSpec(model="m", backend="openai", options={"loglikelihood": False})).loglikelihood == "off"


def test_named_key_variable_must_be_set_and_adapters_do_not_apply(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TG_TEST_KEY", raising=False)
    with pytest.raises(UserError, match="TG_TEST_KEY .* is not set"):
        OpenAIBackend.check(ModelSpec(model="m", backend="openai", options={"api_key_env": "TG_TEST_KEY"}))
    with pytest.raises(UserError, match="--adapter does not apply"):
        OpenAIBackend.check(ModelSpec(model="m", backend="openai", adapter="some/adapter"))


def test_retry_after_is_honoured_over_the_backoff(server: FakeOpenAIServer) -> None:
    waits: list[float] = []
    with httpx.Client(base_url=server.url + "/") as client:
        caller = HttpCaller(client, RetryPolicy(max_retries=3, backoff=5.0), sleep=waits.append)
        got = caller.call("POST", "completions", lambda d: d, body={"model": "fake-model", "prompt": "x [429]"})
    assert got.category == "429" and got.attempts == 4  # type: ignore[union-attr]
    assert waits == [0.0, 0.0, 0.0]  # Retry-After: 0, not 5, 10, 20 s
    assert server.hits["[429]"] == 4
    assert parse_retry_after("2.5") == 2.5 and parse_retry_after("soon") is None
    assert RetryPolicy(backoff=1.0, jitter=0.0).delay(3, None) == 8.0
    assert RetryPolicy(backoff=1.0, max_backoff=5.0, jitter=0.0).delay(6, None) == 5.0


def test_an_interrupt_cancels_waiting_and_pending_calls(server: FakeOpenAIServer) -> None:
    cancel = threading.Event()

    def work(i: int) -> int:
        if i == 0:
            raise KeyboardInterrupt
        time.sleep(0.05)
        return i

    with pytest.raises(KeyboardInterrupt):
        run_concurrently(work, list(range(20)), 2, cancel=cancel)
    assert cancel.is_set()
    with httpx.Client(base_url=server.url + "/") as client:
        caller = HttpCaller(client, RetryPolicy(max_retries=5, backoff=30.0))
        caller.cancel.set()
        t0 = time.perf_counter()
        got = caller.call("POST", "completions", lambda d: d, body={"model": "fake-model", "prompt": "x [500]"})
    assert got.category == "cancelled" and time.perf_counter() - t0 < 1.0  # type: ignore[union-attr]
    assert server.hits["[500]"] == 0


def test_missing_httpx_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "httpx", None)
    with pytest.raises(MissingDependencyError, match=r"tunegate\[api\]"):
        OpenAIBackend(ModelSpec(model="m", backend="openai", options={"base_url": "http://127.0.0.1:9/v1"}))


# ---- answers, identity, concurrency -----------------------------------------------------------
def test_generation_loglikelihood_and_identity_against_a_scripted_server(server: FakeOpenAIServer) -> None:
    backend = OpenAIBackend(spec_for(server.url))
    assert backend.supports == {"generate", "loglikelihood"}
    gens = backend.generate([GenerateRequest(prompt="c b a", max_new_tokens=4),
                             GenerateRequest(prompt="z y x", max_new_tokens=6, stop=(" z",)),
                             GenerateRequest(prompt="q p", max_new_tokens=4, stop=("1", "2", "3", "4", " p"))])
    assert [(g.text, g.finish_reason, g.n_tokens) for g in gens] == [
        (" a b c a", "length", 4), (" x y", "stop", 6), ("", "stop", 4)]  # 5th stop applied client-side
    assert next(b for _, b in server.bodies if b.get("prompt") == "q p")["stop"] == ["1", "2", "3", "4"]
    lls = backend.loglikelihood([
        LoglikelihoodRequest(context="Question: capital? Answer:", continuation=" Paris."),
        LoglikelihoodRequest(context="Question: capital? Answer:", continuation=" Rome it is"),
        LoglikelihoodRequest(context="Question: capital? Answer:", continuation=" is it"),
        LoglikelihoodRequest(context="Hello ", continuation="to you"),  # trailing space moves to the continuation
    ])
    assert [(r.loglikelihood, r.is_greedy, r.n_tokens) for r in lls] == [
        (-3.0, False, 1), (-4.0, False, 3), (-2.0, True, 2), (-2.5, False, 2)]
    ident = backend.identity()
    assert ident["weights_verifiable"] is False
    assert ident["server_model"] == "fake-model" and ident["system_fingerprints"] == ["fp_fake_1"]
    assert ident["base_url"] == server.url and ident["api_key_sent"] is False
    assert backend.forward_passes == 7
    assert sum(1 for _, b in server.bodies if b.get("prompt") == "Question: capital? Answer:") == 1  # context counted once
    assert OpenAIBackend(spec_for(server.url, concurrency=1)).fingerprint() == backend.fingerprint()
    moved = OpenAIBackend(spec_for(server.url.replace("127.0.0.1", "localhost")))
    assert moved.fingerprint() != backend.fingerprint()


def test_requests_run_concurrently_up_to_the_limit(server: FakeOpenAIServer) -> None:
    backend = OpenAIBackend(spec_for(server.url, concurrency=3))
    server.max_in_flight = 0
    t0 = time.perf_counter()
    out = backend.generate([GenerateRequest(prompt=f"[slow] {i}", max_new_tokens=1) for i in range(9)])
    elapsed = time.perf_counter() - t0
    assert [r.text for r in out] == [f" {i}" for i in range(9)]
    assert server.max_in_flight == 3
    assert elapsed < 9 * 0.2 * 0.75  # three waves of 0.2 s, not nine


def test_chat_endpoint_sends_messages_and_system_prompt(server: FakeOpenAIServer) -> None:
    backend = OpenAIBackend(spec_for(server.url, endpoint="chat", system_prompt="Be brief.",
                                     max_tokens_param="max_completion_tokens"))
    out = backend.generate([GenerateRequest(prompt="two one", max_new_tokens=3, seed=7)])
    assert out[0].text == " one two one"
    path, body = server.bodies[-1]
    assert path == "/v1/chat/completions"
    assert body["messages"] == [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "two one"}]
    assert body["max_completion_tokens"] == 3 and body["seed"] == 7 and body["temperature"] == 0.0


# ---- faults: retries as configured, only the affected requests error ------------------------
def test_faults_retry_as_configured_and_error_only_the_affected_requests(server: FakeOpenAIServer) -> None:
    backend = OpenAIBackend(spec_for(server.url, concurrency=4))
    prompts = ["c b a", "x [429]", "x [500]", "x [malformed]", "x [hang]", "x [flaky:2]", "x [bad]", "f e d"]
    out = backend.generate([GenerateRequest(prompt=p, max_new_tokens=2) for p in prompts])
    by_prompt = dict(zip(prompts, out, strict=True))
    assert by_prompt["c b a"].text == " a b" and by_prompt["f e d"].text == " d e"
    assert by_prompt["x [flaky:2]"].text == " [flaky:2] x"  # two 503s, then an answer on the third attempt
    for marker in ("[429]", "[500]", "[malformed]", "[hang]"):
        assert server.hits[marker] == 3, marker  # 1 attempt + max_retries=2
        assert "after 3 attempt(s)" in (by_prompt[f"x {marker}"].error or "")
    assert server.hits["[bad]"] == 1  # a plain 400 is an answer, not a blip: no retry
    assert "prompt is too long" in (by_prompt["x [bad]"].error or "")
    assert "timed out" in (by_prompt["x [hang]"].error or "")
    assert sum(r.error is not None for r in out) == 5
    assert backend.identity()["http"]["retried"] == {"429": 2, "5xx": 4, "malformed": 2, "timeout": 2}

    no_malformed_retry = OpenAIBackend(spec_for(server.url, retry_malformed=False))
    before = server.hits["[malformed]"]
    assert no_malformed_retry.generate([GenerateRequest(prompt="y [malformed]")])[0].error
    assert server.hits["[malformed]"] - before == 1


def test_failed_samples_error_while_the_rest_of_the_run_scores(server: FakeOpenAIServer, tmp_path: Path) -> None:
    rows = [{"id": "ok1", "prompt": "two one", "target": "one two one two one two one two"},
            {"id": "ok2", "prompt": "b a", "target": "wrong"},
            {"id": "bad", "prompt": "x [500]", "target": "t"}]
    suite = write_suite(tmp_path / "suite", rows)
    spec = spec_for(server.url)
    result = evaluate(spec, [str(suite)], cache_path=tmp_path / "cache.sqlite")
    s = result.suites[0]
    assert s.counts == {"scored": 2, "errored": 1, "skipped": 0} and not result.complete
    assert s.metric("accuracy").value == pytest.approx(0.5)  # type: ignore[union-attr]
    assert s.metric("mean_ll").value == pytest.approx((-12.0 + -2.5) / 2)  # type: ignore[union-attr]
    assert result.model_identity["weights_verifiable"] is False
    # a second run is served from the cache for everything that succeeded; the failure is retried
    again = OpenAIBackend(spec)
    result2 = evaluate(spec, [str(suite)], cache_path=tmp_path / "cache.sqlite", backend=again)
    assert again.forward_passes == 0 and result2.cache == {"hits": 4, "computed": 2}


# ---- log-likelihood support ------------------------------------------------------------------
def test_server_without_prompt_logprobs_skips_loglikelihood_samples_with_a_reason(tmp_path: Path) -> None:
    with FakeOpenAIServer(logprobs=False) as srv:
        backend = OpenAIBackend(spec_for(srv.url))
        assert backend.supports == {"generate"}
        assert "ignores echo/logprobs" in backend.identity()["loglikelihood"]
        suite = write_suite(tmp_path, [{"id": "a", "prompt": "b a", "target": "a b"}])
        result = evaluate(backend.spec, [str(suite)], cache_path=None, backend=backend)
    sample = result.suites[0].samples[0]
    assert sample.status == "skipped" and "cannot answer loglikelihood" in (sample.reason or "")
    assert "ignores echo/logprobs" in (sample.reason or "")  # the probe's finding, in every skipped sample
    assert result.complete


def test_probe_falls_back_to_one_generated_token_and_detects_a_server_bos() -> None:
    with FakeOpenAIServer(echo_zero_ok=False, bos="<s>") as srv:
        backend = OpenAIBackend(spec_for(srv.url))
        assert backend.supports == {"generate", "loglikelihood"} and backend._echo_max_tokens == 1
        got = backend.loglikelihood([LoglikelihoodRequest(context="", continuation="a bcd"),
                                     LoglikelihoodRequest(context="ctx", continuation=" a bcd")])
    assert [(r.loglikelihood, r.n_tokens) for r in got] == [(-0.5 - 1.5, 2), (-0.5 - 1.5, 2)]


def test_empty_context_without_a_bos_errors_unless_bos_text_is_given(server: FakeOpenAIServer) -> None:
    got = OpenAIBackend(spec_for(server.url)).loglikelihood([LoglikelihoodRequest(context="", continuation="a bcd")])
    assert "bos_text" in (got[0].error or "")
    got = OpenAIBackend(spec_for(server.url, bos_text="<bos>")).loglikelihood(
        [LoglikelihoodRequest(context="", continuation=" a bcd")])
    assert (got[0].loglikelihood, got[0].n_tokens) == (-2.0, 2)


@pytest.mark.slow
def test_loglikelihoods_through_echo_equal_the_hf_backend(tiny_model_dir: Path) -> None:
    """A vLLM-format echo server over the tiny model: same boundary rule, same numbers as `hf`."""
    from tunegate.backends.hf import HFBackend

    pairs = [("Question: What is the capital of France? Answer:", " Paris."), ("", "The quick brown fox jumps."),
             ("Hello ", "world"), ("Please restart the router,", " wait thirty seconds."), ("a", " b c d e f g")]
    reqs = [LoglikelihoodRequest(context=c, continuation=x) for c, x in pairs]
    want = HFBackend(ModelSpec(model=str(tiny_model_dir))).loglikelihood(reqs)
    with FakeOpenAIServer(model="tiny", scorer=hf_scorer(tiny_model_dir)) as srv:
        got = OpenAIBackend(spec_for(srv.url, "tiny", bos_text="<|endoftext|>")).loglikelihood(reqs)
    for w, g in zip(want, got, strict=True):
        assert g.error is None
        assert g.loglikelihood == pytest.approx(w.loglikelihood, abs=1e-4)
        assert (g.n_tokens, g.is_greedy) == (w.n_tokens, w.is_greedy)


# ---- errors: exit codes ----------------------------------------------------------------------
def test_auth_failure_is_exit_2_naming_the_variable_without_the_key(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    suite = write_suite(tmp_path, [{"id": "a", "prompt": "b a", "target": "a b"}])
    monkeypatch.setenv("TG_WRONG_KEY", CANARY)
    with FakeOpenAIServer(api_key="the-right-key") as srv:
        base = ["run", "--model", "fake-model", "--backend", "openai", "--suites", str(suite), "--out", str(tmp_path / "o"),
                "--no-cache", "--option", f"base_url={srv.url}", "--option", "max_retries=0"]
        code, err = run_cli(base + ["--option", "api_key_env=TG_WRONG_KEY"], capsys)
        assert code == 2 and "authentication failed" in err and "TG_WRONG_KEY was rejected" in err
        assert CANARY not in err  # the server echoed the key it got; we scrub it
        code, err = run_cli(base, capsys)
        assert code == 2 and "no API key was sent" in err and "OPENAI_API_KEY" in err
    assert not (tmp_path / "o").exists()


def test_unreachable_server_is_exit_3(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    suite = write_suite(tmp_path, [{"id": "a", "prompt": "b a", "target": "a b"}])
    url = f"http://127.0.0.1:{closed_port()}/v1"
    code, err = run_cli(["run", "--model", "m", "--backend", "openai", "--suites", str(suite), "--out", str(tmp_path / "o"),
                         "--option", f"base_url={url}", "--option", "max_retries=1", "--option", "backoff=0"], capsys)
    assert code == 3 and "cannot reach the API server" in err
    with pytest.raises(IncompleteError):
        OpenAIBackend(spec_for(url))


def test_unknown_model_is_exit_2(server: FakeOpenAIServer) -> None:
    with pytest.raises(UserError, match="does not exist"):
        OpenAIBackend(spec_for(server.url, "no-such-model"))


# ---- the canary: the key never reaches a file the run writes ------------------------------------
def test_canary_key_appears_in_no_file_the_run_writes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TG_CANARY_KEY", CANARY)
    monkeypatch.setenv("TUNEGATE_CACHE", str(tmp_path / "cache"))
    log_file = tmp_path / "run.log"
    handler = logging.FileHandler(log_file)
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)  # httpx/httpcore log every request at DEBUG
    rows = [{"id": "ok", "prompt": "two one", "target": "one two one two one two one two"},
            {"id": "leak", "prompt": "x [leak]", "target": "t"},  # the server echoes the Authorization header
            {"id": "flaky", "prompt": "x [flaky:1]", "target": "t"}]
    suite = write_suite(tmp_path / "suite", rows)
    try:
        with FakeOpenAIServer(api_key=CANARY) as srv:
            paths = []
            for label in ("base", "tuned"):
                spec = ModelSpec(model="fake-model", backend="openai", label=label,
                                 options={"base_url": srv.url, "api_key_env": "TG_CANARY_KEY", **FAST})
                result = evaluate(spec, [str(suite)])  # default cache under TUNEGATE_CACHE
                assert result.suites[0].counts == {"scored": 2, "errored": 1, "skipped": 0}
                leak = next(s for s in result.suites[0].samples if s.id == "leak")
                assert "***" in (leak.reason or "")  # the echoed key was scrubbed, not dropped silently
                paths.append(tmp_path / label / "results.json")
                result.save(paths[-1])
            assert srv.hits["[leak]"] >= 2
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)
        handler.close()
    if importlib.util.find_spec("tunegate.report") is not None:
        from tunegate.pipeline.commands import compare_and_write

        compare_and_write(paths[0], [paths[1]], tmp_path / "report")
        assert (tmp_path / "report" / "report.html").is_file()
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert any(p.suffix == ".sqlite" for p in written) and log_file.stat().st_size > 0
    hits = [str(p) for p in written if CANARY.encode() in p.read_bytes()]
    assert hits == []


def _key_pieces(key: str, width: int = PARTIAL_SECRET) -> list[bytes]:
    """Every `width`-character piece of `key`: a file holding one of them holds part of the key."""
    return [key[i : i + width].encode() for i in range(len(key) - width + 1)]


def test_hostile_server_echoing_the_key_in_model_ids_and_text_leaks_it_to_no_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A server that echoes the key (whole and in part) in its model id, fingerprint, listing and completions."""
    monkeypatch.setenv("TG_CANARY_KEY", CANARY)
    monkeypatch.setenv("TUNEGATE_CACHE", str(tmp_path / "cache"))
    log_file = tmp_path / "run.log"
    handler = logging.FileHandler(log_file)
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    rows = [{"id": "a", "prompt": "two one", "target": "one two"},
            {"id": "b", "prompt": "x [flaky:1]", "target": "t"},  # a retry, logged
            {"id": "c", "prompt": "y [leak]", "target": "t"}]  # the Authorization header in an error
    suite = write_suite(tmp_path / "suite", rows)
    try:
        with FakeOpenAIServer(api_key=CANARY, echo_key=True) as srv:
            spec = ModelSpec(model="fake-model", backend="openai",
                             options={"base_url": srv.url, "api_key_env": "TG_CANARY_KEY", **FAST})
            backend = OpenAIBackend(spec)
            # the server really did send the key back, in every field
            raw = httpx.post(srv.url + "/completions", headers={"Authorization": f"Bearer {CANARY}"},
                             json={"model": "fake-model", "prompt": "p", "max_tokens": 1}).json()
            assert CANARY in raw["model"] and CANARY in raw["system_fingerprint"] and CANARY in raw["choices"][0]["text"]
            result = evaluate(spec, [str(suite)], backend=backend)
            result.save(tmp_path / "out" / "results.json")
            backend.close()
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)
        handler.close()
    samples = {s.id: s for s in result.suites[0].samples}
    assert samples["a"].status == "scored"
    text = samples["a"].responses[0].text or ""
    assert text.startswith(" *** / ***") and text.endswith("one two one two one two")  # masked, not dropped
    ident = result.model_identity
    assert ident["server_model"] == "fake-model:*** / ***" and ident["system_fingerprints"] == ["fp_fake_1:*** / ***"]
    assert "***" in (samples["c"].reason or "")
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert any(p.suffix == ".sqlite" for p in written) and (tmp_path / "out" / "results.json") in written
    assert log_file.stat().st_size > 0
    pieces = _key_pieces(CANARY)
    hits = [str(p) for p in written if any(piece in p.read_bytes() for piece in pieces)]
    assert hits == []


def test_scrubber_masks_whole_split_partial_and_nested_copies_of_the_key() -> None:
    scrub = Scrubber([CANARY, ""])
    assert scrub(f"a {CANARY} b {CANARY}") == "a *** b ***"
    assert scrub(f"model-{CANARY[:20]}|{CANARY[20:]}") == "model-***|***"  # split in two: each run of 12+ characters
    assert scrub(CANARY[:11]) == CANARY[:11]  # shorter pieces are left alone (they would mask ordinary text)
    assert scrub("nothing secret here") == "nothing secret here"
    data = {"model": f"m-{CANARY}", "choices": [{"text": CANARY[5:30]}], CANARY: 1, "n": 3}
    assert scrub.value(data) == {"model": "m-***", "choices": [{"text": "***"}], "***": 1, "n": 3}
    assert Scrubber([]).value(data) is data


def test_an_error_body_cut_short_does_not_leak_half_the_key(server: FakeOpenAIServer) -> None:
    """The key sits across the 300-character cut of the error message: scrubbed before the cut, not after."""
    with httpx.Client(base_url=server.url + "/", headers={"Authorization": f"Bearer {CANARY}"}) as client:
        caller = HttpCaller(client, RetryPolicy(max_retries=0), secrets=[CANARY])
        got = caller.call("POST", "completions", lambda d: d, body={"model": "fake-model", "prompt": "x" * 238 + " [leak]"})
    assert got.category == "http"  # type: ignore[union-attr]
    assert not any(piece.decode() in got.message for piece in _key_pieces(CANARY, 6))  # type: ignore[union-attr]


# ---- a real OpenAI-compatible server: `transformers serve` ----------------------------------------
CHAT_TEMPLATE = ("{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
                 "{% if add_generation_prompt %}assistant:{% endif %}")


@pytest.fixture(scope="module")
def served(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """`transformers serve` pinned to a copy of the tiny model (plus a chat template) on a free loopback port.

    Yields (base URL, model folder); the `hf` backend loads the same folder for the comparisons.
    """
    import json
    import shutil

    missing = [m for m in ("fastapi", "uvicorn", "openai") if importlib.util.find_spec(m) is None]
    exe = Path(sys.executable).parent / "transformers"
    if missing or not exe.exists():
        pytest.skip(f"transformers serve needs transformers[serving] (missing: {', '.join(missing) or exe})")
    work = tmp_path_factory.mktemp("serve")
    model_dir = Path(shutil.copytree(tiny_model_dir, work / "tiny-chat"))
    tok_config = model_dir / "tokenizer_config.json"
    tok_config.write_text(json.dumps({**json.loads(tok_config.read_text()), "chat_template": CHAT_TEMPLATE}))
    port = closed_port()
    log = work / "serve.log"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "NO_PROXY": "127.0.0.1"}
    with open(log, "wb") as out:
        cmd = [str(exe), "serve", str(model_dir), "--host", "127.0.0.1", "--port", str(port), "--device", "cpu",
               "--log-level", "warning"]
        watchdog = shutil.which("timeout")  # coreutils: the server ends by itself even if pytest is killed
        proc = subprocess.Popen(([watchdog, "900"] if watchdog else []) + cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
    try:
        deadline = time.monotonic() + 120
        while True:
            if proc.poll() is not None:
                pytest.fail(f"transformers serve exited with {proc.returncode}:\n{log.read_text()[-2000:]}")
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1, trust_env=False).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"transformers serve did not answer /health in 120 s:\n{log.read_text()[-2000:]}")
            time.sleep(0.25)
        yield f"http://127.0.0.1:{port}/v1", model_dir
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


@pytest.mark.slow
@pytest.mark.parametrize("chat", [False, True], ids=["completions", "chat"])
def test_transformers_serve_greedy_outputs_equal_the_hf_backend(served: tuple[str, Path], chat: bool,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """What matters against a real server: the same greedy text and finish reasons, no key kept, no weight claim.

    The model id the server reports (its format changes between transformers
    releases) is recorded as reported, not asserted.
    """
    from tunegate.backends.hf import HFBackend

    url, model_dir = served
    monkeypatch.setenv("TG_SERVE_KEY", CANARY)  # transformers serve accepts (and ignores) a bearer key

    reqs = [GenerateRequest(prompt=p, max_new_tokens=12, stop=stop) for p, stop in [
        ("The customer asked how to", ()), ("Please restart the router,", ()), ("Question: What is the capital of", ()),
        ("Your refund was", ()), ("I cannot help with", ("th",))]]
    want = HFBackend(ModelSpec(model=str(model_dir), chat_template=chat)).generate(reqs)
    backend = OpenAIBackend(ModelSpec(model=str(model_dir), backend="openai", chat_template=chat,
                                      options={"base_url": url, "concurrency": 2, "timeout": 60,
                                               "api_key_env": "TG_SERVE_KEY"}))
    assert backend.endpoint == ("chat" if chat else "completions")
    got = backend.generate(reqs)
    assert [g.error for g in got] == [None] * len(reqs)
    assert [g.text for g in got] == [w.text for w in want]
    assert [g.finish_reason for g in got] == [w.finish_reason for w in want]  # stop strings cut client-side too
    ident = backend.identity()
    assert ident["weights_verifiable"] is False and ident["api_key_sent"] is True
    assert isinstance(ident["server_model"], str) and ident["server_model"]  # recorded as the server reports it
    persisted = json.dumps([ident, backend.settings(), [g.model_dump() for g in got]], default=str)
    assert CANARY not in persisted
    # transformers serve ignores echo/logprobs: log-likelihood suites are skipped for it, with the reason
    assert backend.supports == {"generate"}
    assert "does not return prompt log-probabilities" in ident["loglikelihood"]


@pytest.mark.slow
def test_cli_run_through_transformers_serve_matches_hf_and_resumes_from_cache(
        served: tuple[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The whole pipeline (CLI, cache, scoring, metrics) gives the API model the same results as `hf`."""
    from tunegate.core.results import RunResult

    url, model_dir = served
    rows = [{"id": f"r{i}", "question": q, "answer": a} for i, (q, a) in enumerate([
        ("How do I reset my password?", "Open settings, choose account, then select reset."),
        ("Where is my refund?", "Your refund was processed and should arrive within five business days."),
        ("My router is down.", "Please restart the router, wait thirty seconds, and try again."),
        ("What is the capital of France?", "Paris."),
    ])]
    (tmp_path / "mini.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    suite = tmp_path / "mini.yaml"
    suite.write_text("name: mini_gen\nkind: generation\ndata: mini.jsonl\nfields: {prompt: question, reference: answer}\n"
                     "options: {prompt_template: \"Customer: {prompt}\\nAgent:\", stop: [\"\\n\"], max_new_tokens: 16}\n")
    want = evaluate(ModelSpec(model=str(model_dir)), [str(suite)], cache_path=None)
    args = ["run", "--backend", "openai", "--model", str(model_dir), "--suites", str(suite),
            "--cache", str(tmp_path / "cache.sqlite"), "--option", f"base_url={url}"]
    for attempt, out in enumerate(("first", "again")):
        try:
            main(args + ["--out", str(tmp_path / out)])  # returns normally on success
        except SystemExit as exc:
            pytest.fail(f"tunegate run exited with {exc.code}: {capsys.readouterr().err}")
        assert f"{0 if attempt == 0 else 4} from cache, {4 if attempt == 0 else 0} computed" in capsys.readouterr().out
        got = RunResult.load(tmp_path / out / "results.json")
        assert [s.responses[0].text for s in got.suites[0].samples] == [s.responses[0].text for s in want.suites[0].samples]
        assert {m.name: m.value for m in got.suites[0].metrics} == {m.name: m.value for m in want.suites[0].metrics}
        assert got.model_identity["weights_verifiable"] is False and got.complete
