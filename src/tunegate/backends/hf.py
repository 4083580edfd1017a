"""`hf` backend: transformers causal LMs by hub id or local folder, optional PEFT adapter.

Loading is conservative by default: safetensors only (pickle weights need
`allow_pickle` for that model), `trust_remote_code` off unless asked for per
model, and a hub id resolves through the local Hugging Face cache first
(`HF_HUB_OFFLINE=1` never touches the network). The scoring maths lives in
`_hf_loglik` and the decoding loop in `_hf_generate`, so this module is only
about getting the right weights onto the right device(s).

A model larger than one device is placed by accelerate's big-model loading:
the options `device_map` (`auto`, `balanced`, `balanced_low_0`, `sequential`,
or an explicit module -> device mapping) and `max_memory` (device -> budget)
go to `from_pretrained`, the model is never moved afterwards, and inputs go to
the device of its first parameter (the embedding). The dtype is `--dtype` (or
the option `torch_dtype`): `auto` is bfloat16 on a CUDA GPU that supports it
(float16 on older GPUs), float32 on CPU. The *resolved* dtype is in
`settings()`, hence in the cache key, so a bfloat16 and a float32 run of the
same weights never share cached answers; the identity records it for the
report.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from tunegate.backends.base import Backend
from tunegate.core.config import format_validation_error
from tunegate.core.errors import MissingDependencyError, UserError
from tunegate.core.fingerprint import PICKLE_PATTERNS, fingerprint_files, model_files
from tunegate.core.model_spec import Dtype, ModelSpec
from tunegate.core.request import GenerateRequest, LoglikelihoodRequest, Response
from tunegate.finetune.manifest import CHECKPOINT_RECORD, read_checkpoint_record

_DTYPES = {"float32": "float32", "bfloat16": "bfloat16", "float16": "float16"}
def finetune_record(spec: ModelSpec) -> dict[str, Any] | None:
    """The tunegate checkpoint record of the adapter folder, else of the model folder (the first that has one):
    which fine-tuning run, step and data produced these weights. Shared by every backend that serves local weights."""
    for folder in (spec.adapter, spec.model):
        if folder and (Path(os.path.expanduser(folder)) / CHECKPOINT_RECORD).is_file():
            return read_checkpoint_record(Path(os.path.expanduser(folder)))
    return None


class HFOptions(BaseModel):
    """`ModelSpec.options` of the hf backend (`--option key=value`, or `options:` in audit.yaml)."""

    model_config = ConfigDict(extra="forbid")

    device_map: Literal["auto", "balanced", "balanced_low_0", "sequential"] | dict[str, int | str] | None = Field(
        None, description="place the model across devices (accelerate big-model loading); never moved afterwards")
    max_memory: dict[int | str, int | str] | None = Field(
        None, description="device -> memory budget (e.g. {0: 20GiB, cpu: 64GiB}); needs device_map")
    offload_folder: str | None = Field(None, description="where modules that device_map sends to `disk` are kept")
    torch_dtype: Dtype | None = Field(None, description="same as --dtype; give one or the other")


def parse_options(spec: ModelSpec) -> HFOptions:
    """Validate the hf options of `spec` before anything loads; conflicting settings are bad input (exit 2)."""
    where = f"model {spec.display_name}: options"
    try:
        opts = HFOptions.model_validate(spec.options)
    except ValidationError as err:
        raise UserError(format_validation_error(where, err)) from None
    if opts.torch_dtype is not None and spec.dtype != "auto" and opts.torch_dtype != spec.dtype:
        raise UserError(f"{where}.torch_dtype: {opts.torch_dtype} contradicts dtype {spec.dtype}; give one of them")
    if opts.max_memory is not None and opts.device_map is None:
        raise UserError(f"{where}.max_memory: only applies with device_map (e.g. device_map=auto)")
    if opts.device_map is not None and spec.device is not None:
        raise UserError(f"{where}.device_map: the model is placed by device_map, so --device/device "
                        f"({spec.device}) cannot also apply; give one of them")
    if opts.offload_folder is not None and opts.device_map is None:
        raise UserError(f"{where}.offload_folder: only applies with device_map (modules mapped to disk)")
    if isinstance(opts.device_map, dict) and not opts.device_map:
        raise UserError(f"{where}.device_map: an empty mapping places nothing; use auto or map modules to devices")
    world = int(os.environ.get("WORLD_SIZE", "1") or 1)
    if isinstance(opts.device_map, str) and world > 1:
        raise UserError(f"{where}.device_map: {opts.device_map} would spread every one of the {world} data-parallel "
                        "ranks over all GPUs; run one process with device_map, or map each rank explicitly")
    return opts


def _has_weights(folder: Path, allow_pickle: bool) -> bool:
    pats = ("*.safetensors",) + (PICKLE_PATTERNS if allow_pickle else ())
    return any(any(folder.glob(p)) for p in pats)


def _input_device(model: Any, torch: Any) -> Any:
    """Where inputs go for a model placed by device_map: its first parameter that holds data (the embedding).

    Offloaded modules sit on `meta` until accelerate's hooks bring them in, so they are skipped.
    """
    for param in model.parameters():
        if param.device.type != "meta":
            return param.device
    return torch.device("cpu")


class HFBackend(Backend):
    name = "hf"

    # ---- validation before loading -----------------------------------------
    @classmethod
    def check(cls, spec: ModelSpec) -> None:
        parse_options(spec)
        ref = os.path.expanduser(spec.model)
        if Path(ref).exists() or ref.startswith((".", "/", "~")):
            folder = Path(ref)
            if not folder.is_dir():
                raise UserError(f"{spec.model}: model folder not found (give a local folder with config.json, or a hub id)")
            cls._check_folder(folder, spec.allow_pickle, what="model")
        if spec.adapter is not None:
            adapter = Path(os.path.expanduser(spec.adapter))
            if not adapter.is_dir() or not (adapter / "adapter_config.json").is_file():
                raise UserError(f"{spec.adapter}: adapter folder not found or has no adapter_config.json")

    @staticmethod
    def _check_folder(folder: Path, allow_pickle: bool, what: str) -> None:
        if not (folder / "config.json").is_file():
            raise UserError(f"{folder}: no config.json; this is not a transformers {what} folder")
        if not _has_weights(folder, allow_pickle):
            pickles = [p.name for pat in PICKLE_PATTERNS for p in folder.glob(pat)]
            if pickles:
                raise UserError(
                    f"{folder}: only pickle weights ({', '.join(pickles[:3])}); tunegate loads safetensors only by default. "
                    "Convert the weights to safetensors, or pass --allow-pickle for this model if you trust it"
                )
            raise UserError(f"{folder}: no weight files (*.safetensors) found")

    # ---- loading ------------------------------------------------------------
    def __init__(self, spec: ModelSpec) -> None:
        super().__init__(spec)
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer
        from transformers.utils import logging as hf_logging

        from tunegate.backends._hf_cache import cache_argument

        hf_logging.disable_progress_bar()  # our own progress bar is the one users read
        self.torch = torch
        self.options = parse_options(spec)
        self.folder = self._resolve_folder(spec)
        self._check_folder(self.folder, spec.allow_pickle, what="model")
        self.device = torch.device(spec.device or self._default_device())
        self.dtype = self._resolve_dtype(self.options.torch_dtype or spec.dtype)
        placement: dict[str, Any] = {}
        if self.options.device_map is not None:
            placement["device_map"] = self.options.device_map
            if self.options.max_memory is not None:
                placement["max_memory"] = self.options.max_memory
            if self.options.offload_folder is not None:
                placement["offload_folder"] = os.path.expanduser(self.options.offload_folder)
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(self.folder, trust_remote_code=spec.trust_remote_code)
            model = AutoModelForCausalLM.from_pretrained(
                self.folder, dtype=self.dtype, use_safetensors=not spec.allow_pickle,
                trust_remote_code=spec.trust_remote_code, **placement,
            )
        except (OSError, ValueError, KeyError) as exc:  # KeyError: a device_map naming a module the model lacks
            raise UserError(f"{spec.model}: could not load the model: {str(exc).splitlines()[0][:300]}") from None
        if spec.adapter is not None:
            model = self._apply_adapter(model, Path(os.path.expanduser(spec.adapter)))
        if placement:
            # placed by device_map: moving it would undo the placement (and fail for offloaded modules)
            self.model = model.eval()
            self.device = _input_device(self.model, torch)
        else:
            # transformers decorates `to` with functools.wraps, whose stub drops the bound `self` (fine at runtime)
            self.model = model.to(self.device).eval()  # type: ignore[arg-type]
        self.cache_arg = cache_argument(self.model)  # `cache` or, before transformers 5.24, `past_key_values`
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token or self.tokenizer.unk_token
        self.max_length = self._resolve_max_length(spec)
        self._fingerprint: str | None = None

    def _resolve_folder(self, spec: ModelSpec) -> Path:
        ref = os.path.expanduser(spec.model)
        if Path(ref).is_dir():
            return Path(ref)
        from huggingface_hub import snapshot_download
        from huggingface_hub.errors import HFValidationError

        patterns = ["*.json", "*.safetensors", "*.model", "*.txt", "*.jinja", "*.tiktoken"]
        if spec.allow_pickle:
            patterns += list(PICKLE_PATTERNS)
        try:
            return Path(snapshot_download(spec.model, revision=spec.revision, allow_patterns=patterns))
        except HFValidationError:
            raise UserError(f"{spec.model}: not a local folder and not a valid hub id") from None
        except Exception as exc:  # noqa: BLE001 - network/cache failures are user-facing
            offline = os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0")
            hint = " (HF_HUB_OFFLINE is set and it is not in the local cache)" if offline else ""
            raise UserError(f"{spec.model}: could not fetch from the hub{hint}: {type(exc).__name__}; "
                            "download it first or pass a local folder") from None

    def _apply_adapter(self, model: Any, adapter: Path) -> Any:
        try:
            from peft import PeftModel
        except ImportError:
            raise MissingDependencyError("peft", purpose="PEFT adapters") from None
        if not (adapter / "adapter_model.safetensors").is_file() and not self.spec.allow_pickle:
            raise UserError(f"{adapter}: no adapter_model.safetensors (pickle adapters need --allow-pickle)")
        with warnings.catch_warnings():  # peft/transformers deprecation chatter is not the user's concern
            warnings.simplefilter("ignore", FutureWarning)
            peft_model = PeftModel.from_pretrained(model, str(adapter))
            return peft_model.merge_and_unload()  # one dense model: same maths, faster scoring

    def _default_device(self) -> str:
        """CUDA when present: the GPU of this data-parallel rank (LOCAL_RANK, set by the launcher), else the first."""
        if not self.torch.cuda.is_available():
            return "cpu"
        return f"cuda:{int(os.environ.get('LOCAL_RANK', '0') or 0) % self.torch.cuda.device_count()}"

    def _resolve_dtype(self, name: str) -> Any:
        torch = self.torch
        if name == "auto":
            if self.options.device_map is not None:
                on_gpu = torch.cuda.is_available() and self._map_uses_gpu()
            else:
                on_gpu = self.device.type == "cuda"
            if on_gpu:
                return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
            return torch.float32
        return getattr(torch, _DTYPES[name])

    def _map_uses_gpu(self) -> bool:
        """Whether the device_map may put modules on a GPU (`auto` and friends do when one is present)."""
        dm = self.options.device_map
        if isinstance(dm, str):
            return True
        return any(not (isinstance(d, str) and d in ("cpu", "disk", "meta")) for d in (dm or {}).values())

    def placement(self) -> dict[str, Any] | None:
        """Where device_map put the weights (device -> parameter count; `offloaded`: disk or CPU hooks); None without one."""
        if self.options.device_map is None:
            return None
        counts: dict[str, int] = {}
        for param in self.model.parameters():
            name = "offloaded" if param.device.type == "meta" else str(param.device)
            counts[name] = counts.get(name, 0) + param.numel()
        dmap = getattr(self.model, "hf_device_map", None)  # set by accelerate only when it dispatched with hooks
        return {"device_map": self.options.device_map, "parameters_per_device": dict(sorted(counts.items())),
                "dispatched": isinstance(dmap, dict)}

    def _resolve_max_length(self, spec: ModelSpec) -> int:
        cfg = self.model.config
        limits = [getattr(cfg, a) for a in ("max_position_embeddings", "n_positions", "n_ctx") if isinstance(getattr(cfg, a, None), int)]
        model_max = min(limits) if limits else 2048
        tok_max = getattr(self.tokenizer, "model_max_length", None)
        if isinstance(tok_max, int) and 0 < tok_max < 1_000_000:
            model_max = min(model_max, tok_max)
        return min(spec.max_length, model_max) if spec.max_length else model_max

    # ---- identity -----------------------------------------------------------
    def fingerprint(self) -> str:
        if self._fingerprint is None:
            files = model_files(self.folder, self.spec.allow_pickle)
            if self.spec.adapter is not None:
                files += model_files(Path(os.path.expanduser(self.spec.adapter)), self.spec.allow_pickle)
            self._fingerprint = fingerprint_files(files)
        return self._fingerprint

    def settings(self) -> dict[str, Any]:
        return {
            "backend": self.name,
            "dtype": str(self.dtype).replace("torch.", ""),
            "device": self.device.type,
            "max_length": self.max_length,
            "chat_template": self.spec.chat_template,
            # too-long inputs are cut from the left and recorded; generation keeps its full budget. Part of the
            # cache key, so answers cached before that rule (budget silently shrunk, no record) are not reused.
            "truncation": "left-recorded",
        }

    def identity(self) -> dict[str, Any]:
        ident: dict[str, Any] = {
            "backend": self.name, "model": self.spec.model, "revision": self.spec.revision,
            "adapter": self.spec.adapter, "fingerprint": self.fingerprint(),
            "architecture": type(self.model).__name__,
            "parameters": int(sum(p.numel() for p in self.model.parameters())),
            "dtype": str(self.dtype).replace("torch.", ""), "device": str(self.device),
            "weights_verifiable": True,
        }
        placed = self.placement()
        if placed is not None:
            ident["placement"] = placed
        record = finetune_record(self.spec)
        if record is not None:
            ident["finetune"] = record
        return ident

    # ---- requests -----------------------------------------------------------
    def loglikelihood(self, requests: list[LoglikelihoodRequest]) -> list[Response]:
        from tunegate.backends._hf_loglik import loglikelihood

        return loglikelihood(self, requests)

    def generate(self, requests: list[GenerateRequest]) -> list[Response]:
        from tunegate.backends._hf_generate import generate

        return generate(self, requests)

    def close(self) -> None:
        del self.model
        if self.torch.cuda.is_available():
            self.torch.cuda.empty_cache()
