"""Base model resolution, model/LoRA construction, and writing a checkpoint folder the harness can load.

A full checkpoint is a normal Hugging Face folder (config, safetensors weights,
tokenizer); a LoRA checkpoint is a peft adapter folder whose
`adapter_config.json` names the base, used as
`ModelSpec(model=<base>, adapter=<checkpoint>)`.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tunegate.core.errors import UserError
from tunegate.finetune.recipe import Recipe

HUB_PATTERNS = ["*.safetensors", "*.json", "*.txt", "*.model", "*.jinja", "*.py"]


@dataclass(frozen=True)
class BaseModelRef:
    """The base as the user named it (`ref`) and the local folder its files are in."""

    ref: str
    folder: Path


def resolve_base(base: str) -> BaseModelRef:
    """A local folder is used as is (absolute path); anything else is a Hub id the user asked for."""
    path = Path(base).expanduser()
    if path.is_dir():
        if (path / "adapter_config.json").is_file() and not (path / "config.json").is_file():
            # e.g. an sft-lora checkpoint given as the base of a DPO run: the adapter alone is not a model
            raise UserError(f"--base {base}: this is a LoRA adapter folder, not a model; train on top of a full model "
                            "folder: an sft-full checkpoint, or the adapter merged into its base (peft: "
                            "PeftModel.from_pretrained(base, adapter).merge_and_unload().save_pretrained(folder))")
        if not any(path.glob("*.safetensors")):
            raise UserError(f"{base}: no *.safetensors weights in this folder; tunegate only loads safetensors "
                            "(convert the checkpoint with transformers' save_pretrained(safe_serialization=True))")
        return BaseModelRef(ref=str(path.resolve()), folder=path.resolve())
    if path.exists() or base.startswith((".", "/", "~")):
        raise UserError(f"--base {base}: not a model folder")
    try:
        from huggingface_hub import snapshot_download

        folder = Path(snapshot_download(base, allow_patterns=HUB_PATTERNS))
    except Exception as exc:  # offline, unknown id, gated repo: all user-fixable
        raise UserError(f"--base {base}: not a local folder and could not be fetched from the Hub ({exc.__class__.__name__}: "
                        f"{str(exc).splitlines()[0] if str(exc) else ''})") from None
    return BaseModelRef(ref=base, folder=folder)


def load_tokenizer(ref: BaseModelRef) -> Any:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(ref.folder))
    return tok


def model_positions(ref: BaseModelRef) -> int | None:
    """The longest sequence the model's position embeddings allow, read from config.json (None if unknown)."""
    import json

    try:
        cfg = json.loads((ref.folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    cfg = cfg.get("text_config", cfg) if isinstance(cfg, dict) else {}
    for key in ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length"):
        if isinstance(cfg.get(key), int) and cfg[key] > 0:
            return int(cfg[key])
    return None


def lora_target_modules(model: Any, requested: list[str] | str) -> list[str] | str:
    """peft's default targets for this architecture, or every linear layer when peft has none."""
    if requested != "auto":
        return requested
    try:
        from peft.utils import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING as mapping
    except ImportError:  # older/newer peft layouts
        mapping = {}
    targets = mapping.get(getattr(model.config, "model_type", ""))
    return list(targets) if targets else "all-linear"


def load_model(ref: BaseModelRef, recipe: Recipe, precision: str, fp32_weights: bool = False) -> Any:
    """The base in the dtype training wants, wrapped with LoRA when the recipe says so.

    `fp32_weights` (used under FSDP) keeps every parameter in fp32: FSDP flattens frozen and
    trainable parameters together and needs one dtype; its own mixed precision does the rest.
    """
    import torch
    from transformers import AutoModelForCausalLM

    # Full fine-tuning keeps fp32 master weights (autocast does the bf16/fp16 maths); LoRA freezes the
    # base, so it is loaded in the compute dtype and only the adapter stays in fp32.
    dtype = torch.float32
    if recipe.method == "lora" and precision in ("bf16", "fp16") and not fp32_weights:
        dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    try:
        model = AutoModelForCausalLM.from_pretrained(str(ref.folder), dtype=dtype, use_safetensors=True)
    except (OSError, ValueError) as exc:
        raise UserError(f"--base {ref.ref}: could not load a causal language model: {str(exc).splitlines()[0]}") from None
    if recipe.gradient_checkpointing:
        model.gradient_checkpointing_enable()
        if recipe.method == "lora":
            model.enable_input_require_grads()
    if recipe.method == "full":
        return model
    from peft import LoraConfig, get_peft_model

    targets = lora_target_modules(model, recipe.lora.target_modules)
    _refuse_tied_output_target(model, targets)
    # peft annotates lora_alpha as int, but only divides by it (scaling = alpha / r); recipes allow a fractional alpha
    config = LoraConfig(r=recipe.lora.r, lora_alpha=recipe.lora.alpha, lora_dropout=recipe.lora.dropout,  # type: ignore[arg-type]
                        target_modules=targets, bias=recipe.lora.bias, task_type="CAUSAL_LM")
    try:
        peft_model = get_peft_model(model, config)
    except ValueError as exc:
        raise UserError(f"recipe lora.target_modules={targets}: {str(exc).splitlines()[0]} "
                        "(name modules that exist in this architecture, or use auto / all-linear)") from None
    peft_model.peft_config["default"].base_model_name_or_path = ref.ref
    return peft_model


def _refuse_tied_output_target(model: Any, targets: list[str] | str) -> None:
    """LoRA on an output layer tied to the input embeddings cannot be merged faithfully.

    Merging the adapter (as the harness does before scoring) writes the delta into the shared
    matrix, so the input embeddings change too and the served model is not the trained one.
    """
    out, inp = model.get_output_embeddings(), model.get_input_embeddings()
    if isinstance(targets, str) or out is None or inp is None or out.weight is not inp.weight:
        return
    name = next((n for n, m in model.named_modules() if m is out), "")
    hit = [t for t in targets if name == t or name.endswith("." + t)]
    if hit:
        raise UserError(f"recipe lora.target_modules includes {hit[0]!r}, the output layer this model ties to its input "
                        "embeddings; a merged adapter would change the embeddings too; drop it from target_modules")


def parameter_counts(model: Any) -> dict[str, int]:
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return {"total": int(total), "trainable": int(trainable)}


def resolved_lora_targets(model: Any) -> list[str] | None:
    """The target modules peft actually used (for the manifest), or None for full fine-tuning."""
    cfg = getattr(model, "peft_config", {}).get("default") if hasattr(model, "peft_config") else None
    if cfg is None:
        return None
    targets = cfg.target_modules
    return sorted(targets) if isinstance(targets, (set, list, tuple)) else [str(targets)]


def save_model_folder(unwrapped: Any, state_dict: dict[str, Any], tokenizer: Any, method: str, folder: Path,
                      record: dict[str, Any]) -> None:
    """Write weights (safetensors) and the checkpoint record into a temp folder, then rename it into place."""
    from tunegate.finetune.manifest import write_checkpoint_record

    tmp = folder.with_name(f".{folder.name}.tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    unwrapped.save_pretrained(str(tmp), state_dict=state_dict, safe_serialization=True)
    if method == "full":  # a LoRA folder is an adapter: the tokenizer is the base's
        tokenizer.save_pretrained(str(tmp))
    write_checkpoint_record(tmp, record)
    if folder.exists():
        shutil.rmtree(folder)
    tmp.rename(folder)
