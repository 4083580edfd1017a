"""Recipe validation, key=value overrides, and the documented `auto` rule."""

from __future__ import annotations

from pathlib import Path

import pytest

from tunegate.core.errors import UserError
from tunegate.finetune.recipe import (
    auto_epochs,
    auto_learning_rate,
    load_recipe,
    parse_overrides,
    resolve_auto,
    resolve_precision,
    resolved_dict,
)

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("name", ["sft-lora.yaml", "sft-full.yaml"])
def test_shipped_recipes_validate(name: str) -> None:
    recipe = load_recipe(ROOT / "fine_tune" / name)
    assert recipe.method == name.split("-")[1].split(".")[0]
    assert recipe.epochs == "auto" and recipe.learning_rate == "auto"


def test_unknown_key_in_file_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "r.yaml"
    path.write_text("method: lora\nepoch: 3\nlora:\n  rank: 4\n")
    with pytest.raises(UserError) as err:
        load_recipe(path)
    msg = str(err.value)
    assert f"{path}: epoch: unknown key" in msg
    assert f"{path}: lora.rank: unknown key" in msg


def test_overrides_parse_as_yaml_and_nest(tmp_path: Path) -> None:
    over = parse_overrides(["lora.r=16", "epochs=2", "packing=true", "learning_rate=3e-4",
                            "lora.target_modules=[c_attn,c_proj]", "save_every_steps=null"])
    recipe = load_recipe(ROOT / "fine_tune" / "sft-lora.yaml", over)
    assert recipe.lora.r == 16 and recipe.lora.alpha == 16  # sibling keys of the file kept
    assert recipe.epochs == 2 and recipe.packing is True and recipe.learning_rate == 3e-4
    assert recipe.lora.target_modules == ["c_attn", "c_proj"]
    assert recipe.save_every_steps is None


@pytest.mark.parametrize("bad, needle", [
    (["lora.rank=4"], "unknown key 'rank' in lora"),
    (["epoch=4"], "unknown key 'epoch' in recipe"),
    (["epochs"], "expected a recipe override key=value"),
    (["epochs.x=1"], "'epochs' is not a section"),
    (["epochs=0"], "epochs"),
    (["method=qlora"], "method"),
])
def test_bad_overrides_are_user_errors(bad: list[str], needle: str) -> None:
    with pytest.raises(UserError) as err:
        load_recipe(ROOT / "fine_tune" / "sft-lora.yaml", parse_overrides(bad))
    assert needle in str(err.value)
    assert err.value.exit_code == 2


@pytest.mark.parametrize("n, epochs, lora_lr, full_lr", [
    (1, 10, 2e-4, 2e-5),
    (8, 10, 2e-4, 2e-5),
    (100, 10, 2e-4, 2e-5),
    (250, 4, 2e-4, 2e-5),
    (1000, 1, 2e-4, 2e-5),
    (4000, 1, 1e-4, 1e-5),       # sqrt(1000/4000) = 0.5
    (100000, 1, 5e-5, 5e-6),     # floor at 0.25
])
def test_auto_rule(n: int, epochs: int, lora_lr: float, full_lr: float) -> None:
    assert auto_epochs(n) == epochs
    assert auto_learning_rate("lora", n) == pytest.approx(lora_lr)
    assert auto_learning_rate("full", n) == pytest.approx(full_lr)


def test_resolve_auto_records_rule_and_keeps_explicit_values() -> None:
    recipe = load_recipe(None, {"method": "full", "epochs": 3})
    resolved, chosen = resolve_auto(recipe, 4000)
    assert resolved.epochs == 3 and resolved.learning_rate == pytest.approx(1e-5)
    assert set(chosen) == {"learning_rate"} and chosen["learning_rate"]["n_examples"] == 4000
    assert resolved_dict(resolved)["lora"] is None  # full fine-tuning has no LoRA block


def test_precision_auto() -> None:
    assert resolve_precision("auto", on_gpu=False, bf16_supported=False) == "fp32"
    assert resolve_precision("auto", on_gpu=True, bf16_supported=True) == "bf16"
    assert resolve_precision("auto", on_gpu=True, bf16_supported=False) == "fp16"
    assert resolve_precision("fp32", on_gpu=True, bf16_supported=True) == "fp32"
