"""Training recipes: the pydantic `Recipe`, `key=value` overrides, and the `auto` rules.

A recipe is a YAML file in `fine_tune/` (data only, unknown keys rejected).
Every key can be overridden on the command line as `key=value` or
`lora.r=16`; values are parsed as YAML scalars so `epochs=2`,
`packing=true` and `lora.target_modules=[c_attn,c_proj]` mean what they say.

`epochs: auto` and `learning_rate: auto` are resolved from the number of
training examples N (after validation and after rows longer than
`max_length` are dropped), by the rule stated in docs/finetune.md:

    epochs        = clamp(ceil(1000 / N), 1, 10)
    learning_rate = base(method) * clamp(sqrt(1000 / N), 0.25, 1)
                    base(lora) = 2e-4, base(full) = 2e-5

i.e. aim for about a thousand example visits, never fewer than one pass nor
more than ten, and shrink the step size as the dataset (and so the number of
updates) grows, down to a quarter of the base rate at 16,000 examples.

`objective: dpo` (preference pairs, `dpo:` block) uses the same rule with the
alignment-handbook rates as base (5e-6 for lora, 5e-7 for full) and at most
three epochs: DPO drifts from its reference with every pass, so it is run
briefly and gently.
"""

from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from tunegate.core.config import format_validation_error, read_yaml
from tunegate.core.errors import UserError
from tunegate.core.shipped import shipped_dir

BASE_LR = {"lora": 2e-4, "full": 2e-5}
DPO_BASE_LR = {"lora": 5e-6, "full": 5e-7}
MAX_AUTO_EPOCHS = {"sft": 10, "dpo": 3}
AUTO_RULE = {
    "epochs": "clamp(ceil(1000 / N), 1, 10) where N = training examples kept",
    "learning_rate": "base * clamp(sqrt(1000 / N), 0.25, 1) with base 2e-4 for lora, 2e-5 for full",
}
DPO_AUTO_RULE = {
    "epochs": "clamp(ceil(1000 / N), 1, 3) where N = preference pairs kept",
    "learning_rate": "base * clamp(sqrt(1000 / N), 0.25, 1) with base 5e-6 for lora, 5e-7 for full",
}


class LoraSettings(BaseModel):
    """peft LoraConfig settings; `target_modules: auto` uses peft's per-architecture default."""

    model_config = ConfigDict(extra="forbid")

    r: int = Field(default=8, ge=1)
    alpha: float = Field(default=16.0, gt=0)
    dropout: float = Field(default=0.05, ge=0.0, lt=1.0)
    target_modules: list[str] | Literal["auto", "all-linear"] = "auto"
    bias: Literal["none", "all", "lora_only"] = "none"

    @field_validator("target_modules", mode="before")
    @classmethod
    def _one_name(cls, value: Any) -> Any:
        if isinstance(value, str) and value not in ("auto", "all-linear"):
            return [v.strip() for v in value.split(",") if v.strip()]
        return value


class DpoSettings(BaseModel):
    """`dpo:` block of an `objective: dpo` recipe (docs/finetune.md, "DPO").

    Only the reference the run was started from (`base`, the `--base` model) is offered: it is
    what the log-ratios are measured against, and its fingerprint is already in the manifest.
    """

    model_config = ConfigDict(extra="forbid")

    beta: float = Field(default=0.1, gt=0, description="strength of the pull towards the reference (DPO's beta)")
    loss_type: Literal["sigmoid", "hinge", "ipo"] = "sigmoid"
    reference: Literal["base"] = "base"
    disable_dropout: bool = Field(default=True, description="dropout off in the policy, so that at step 0 the policy "
                                  "scores pairs exactly as the reference does (as TRL does by default)")


class Recipe(BaseModel):
    """One fine-tuning recipe (`fine_tune/*.yaml`). Extra keys are rejected."""

    model_config = ConfigDict(extra="forbid")

    description: str = ""
    objective: Literal["sft", "dpo"] = "sft"
    method: Literal["full", "lora"] = "lora"
    data: str | None = Field(default=None, description="training JSONL, relative to the recipe file")
    eval_data: str | None = Field(default=None, description="eval JSONL, relative to the recipe file")
    epochs: int | Literal["auto"] = "auto"
    learning_rate: float | Literal["auto"] = "auto"
    batch_size: int = Field(default=8, ge=1)
    gradient_accumulation: int = Field(default=1, ge=1)
    max_length: int = Field(default=512, ge=8)
    packing: bool = False
    seed: int = 0
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    save_every_steps: int | None = Field(default=None, ge=1)
    save_every_epoch: bool = True
    max_steps: int | None = Field(default=None, ge=1)
    lr_scheduler: Literal["linear", "cosine", "constant"] = "linear"
    warmup_ratio: float = Field(default=0.0, ge=0.0, lt=1.0)
    weight_decay: float = Field(default=0.0, ge=0.0)
    max_grad_norm: float | None = Field(default=1.0, gt=0)
    gradient_checkpointing: bool = False
    chat_template: Literal["auto", "plain"] = "auto"
    lora: LoraSettings = Field(default_factory=LoraSettings)
    dpo: DpoSettings = Field(default_factory=DpoSettings)

    @field_validator("epochs")
    @classmethod
    def _positive_epochs(cls, value: Any) -> Any:
        if isinstance(value, int) and value < 1:
            raise ValueError("must be at least 1 (or 'auto')")
        return value

    @field_validator("learning_rate")
    @classmethod
    def _positive_lr(cls, value: Any) -> Any:
        if isinstance(value, float) and not value > 0:
            raise ValueError("must be positive (or 'auto')")
        return value

    @model_validator(mode="after")
    def _objective_keys(self) -> Recipe:
        """A `dpo:` block only means something to `objective: dpo`; packing would merge pairs into one sequence."""
        if self.objective == "sft" and "dpo" in self.model_fields_set:
            raise ValueError("the 'dpo' block is only read with objective: dpo (add objective: dpo, or remove it)")
        if self.objective == "dpo" and self.packing:
            raise ValueError("packing is not available with objective: dpo (each pair is scored as whole sequences)")
        return self


def auto_epochs(n_examples: int, objective: str = "sft") -> int:
    """About a thousand example visits: clamp(ceil(1000 / N), 1, 10), or at most 3 for DPO."""
    return int(min(MAX_AUTO_EPOCHS[objective], max(1, math.ceil(1000 / max(1, n_examples)))))


def auto_learning_rate(method: str, n_examples: int, objective: str = "sft") -> float:
    """base(objective, method) * clamp(sqrt(1000 / N), 0.25, 1): smaller steps when there are many more of them."""
    scale = min(1.0, max(0.25, math.sqrt(1000 / max(1, n_examples))))
    base = (DPO_BASE_LR if objective == "dpo" else BASE_LR)[method]
    return float(f"{base * scale:.3g}")


def _set_path(tree: dict[str, Any], dotted: str, value: Any, source: str) -> None:
    """Set `a.b.c` in a nested dict, refusing keys the Recipe model does not know."""
    parts = dotted.split(".")
    model: type[BaseModel] = Recipe
    node = tree
    for i, part in enumerate(parts):
        fields = model.model_fields
        if part not in fields:
            where = ".".join(parts[:i]) or "recipe"
            known = ", ".join(sorted(fields))
            raise UserError(f"{source}: override '{dotted}': unknown key '{part}' in {where} (known keys: {known})")
        if i == len(parts) - 1:
            node[part] = value
            return
        annotation = fields[part].annotation
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            raise UserError(f"{source}: override '{dotted}': '{part}' is not a section with sub-keys")
        model = annotation
        child = node.get(part)
        if not isinstance(child, dict):
            child = {}
            node[part] = child
        node = child


def parse_overrides(pairs: list[str] | tuple[str, ...], source: str = "command line") -> dict[str, Any]:
    """`key=value` strings to {dotted key: YAML-parsed value}, in order."""
    import yaml

    out: dict[str, Any] = {}
    for item in pairs:
        if "=" not in item or item.startswith("="):
            raise UserError(f"{source}: expected a recipe override key=value (e.g. epochs=2 lora.r=16), got {item!r}")
        key, raw = item.split("=", 1)
        try:
            out[key.strip()] = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError:
            raise UserError(f"{source}: override {item!r}: the value is not a valid YAML scalar or list") from None
    return out


def resolve_recipe(ref: str | Path, base_dir: Path | None = None) -> Path:
    """A recipe path (relative to `base_dir`, then to the working folder) or a shipped name (`sft-lora`, `dpo-full`...)."""
    shipped = shipped_dir("fine_tune")
    ref = str(ref)
    cands = [base_dir / ref] if base_dir is not None else []
    for cand in (*cands, Path(ref), shipped / ref, shipped / f"{ref}.yaml"):
        if cand.is_file():
            return cand
    names = ", ".join(sorted(p.stem for p in shipped.glob("*.yaml")))
    raise UserError(f"recipe {ref!r} not found (give a recipe YAML path, or a shipped recipe name: {names})")


def load_recipe(path: Path | None, overrides: dict[str, Any] | None = None) -> Recipe:
    """Read a recipe file (or start from defaults), apply overrides, validate the result."""
    raw: dict[str, Any] = {}
    source = "recipe defaults"
    if path is not None:
        source = str(path)
        data = read_yaml(Path(path))
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise UserError(f"{path}: expected a mapping of recipe keys at the top level, got {type(data).__name__}")
        raw = copy.deepcopy(data)
    for key, value in (overrides or {}).items():
        _set_path(raw, key, value, source)
    if overrides:
        source += " + overrides " + " ".join(f"{k}={v}" for k, v in overrides.items())
    try:
        recipe = Recipe.model_validate(raw)
    except ValidationError as err:
        raise UserError(format_validation_error(source, err)) from None
    return recipe


def resolve_auto(recipe: Recipe, n_examples: int) -> tuple[Recipe, dict[str, Any]]:
    """Replace `auto` epochs / learning rate by the documented rule; return what was chosen and why."""
    chosen: dict[str, Any] = {}
    update: dict[str, Any] = {}
    rule = DPO_AUTO_RULE if recipe.objective == "dpo" else AUTO_RULE
    if recipe.epochs == "auto":
        update["epochs"] = auto_epochs(n_examples, recipe.objective)
        chosen["epochs"] = {"value": update["epochs"], "rule": rule["epochs"], "n_examples": n_examples}
    if recipe.learning_rate == "auto":
        update["learning_rate"] = auto_learning_rate(recipe.method, n_examples, recipe.objective)
        chosen["learning_rate"] = {"value": update["learning_rate"], "rule": rule["learning_rate"],
                                   "n_examples": n_examples}
    return recipe.model_copy(update=update), chosen


def resolve_precision(precision: str, on_gpu: bool, bf16_supported: bool) -> str:
    """`auto`: bf16 on a GPU that supports it, fp16 mixed precision on an older GPU, fp32 on CPU."""
    if precision != "auto":
        return precision
    if not on_gpu:
        return "fp32"
    return "bf16" if bf16_supported else "fp16"


def resolved_dict(recipe: Recipe) -> dict[str, Any]:
    """The recipe as stored in the manifest; the LoRA block is dropped for full fine-tuning.

    An SFT recipe is stored without `objective` and `dpo`, exactly as before they existed, so its
    hash (which `--resume` and the checkpoint records compare) does not change.
    """
    out = recipe.model_dump(mode="json")
    if recipe.method == "full":
        out["lora"] = None
    if recipe.objective == "sft":
        out.pop("objective", None)
        out.pop("dpo", None)
    return out
