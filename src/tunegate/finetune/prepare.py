"""Everything a user can get wrong, checked before the process group starts or a model loads: `prepare()`.

Recipe keys, data rows, the output folder and the base are validated here, the data is tokenised,
and `auto` values and the precision are resolved, in every process alike, so that a mistake ends the
run with one clear message instead of inside a launched process group or after minutes of model
loading. The trainers (`train.Trainer`, `dpo.DpoTrainer`) start from the `Prepared` job it returns.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tunegate.core.errors import UserError
from tunegate.finetune import data as fdata
from tunegate.finetune import preference_data as pdata
from tunegate.finetune.modeling import BaseModelRef, load_tokenizer, model_positions, resolve_base
from tunegate.finetune.recipe import Recipe, load_recipe, parse_overrides, resolve_auto, resolve_precision
from tunegate.finetune.resume import check_out


@dataclass
class Prepared:
    """Everything validated before any model loads or any process group starts."""

    recipe: Recipe
    recipe_source: str | None
    overrides: dict[str, Any]
    auto: dict[str, Any]
    base: BaseModelRef
    base_fingerprint: str
    tokenizer: Any
    train: fdata.DataFile[Any]  # TrainRow (sft) or PreferenceRow (dpo)
    train_tok: fdata.Tokenised[Any]  # Example (sft) or PairExample (dpo)
    eval: fdata.DataFile[Any] | None
    eval_tok: fdata.Tokenised[Any] | None
    out: Path
    resume: bool
    precision: str
    use_cpu: bool


def _relative_to(recipe_path: Path | None, value: str | None) -> Path | None:
    if value is None:
        return None
    p = Path(value).expanduser()
    return p if p.is_absolute() or recipe_path is None else (Path(recipe_path).parent / p)


def prepare(recipe_path: Path | None, *, base: str, data: Path | None, eval_data: Path | None, out: Path,
            overrides: list[str] | tuple[str, ...] | dict[str, Any] = (), resume: bool = False) -> Prepared:
    """Validate recipe, data, output folder and base; tokenise; resolve `auto` and precision."""
    import torch

    over = dict(overrides) if isinstance(overrides, dict) else parse_overrides(list(overrides))
    recipe = load_recipe(Path(recipe_path) if recipe_path else None, over)
    train_path = Path(data) if data else _relative_to(recipe_path, recipe.data)
    if train_path is None:
        raise UserError("no training data: pass --data TRAIN.jsonl (or set 'data' in the recipe)")
    eval_path = Path(eval_data) if eval_data else _relative_to(recipe_path, recipe.eval_data)
    pref = recipe.objective == "dpo"
    load: Callable[..., Any] = pdata.load_preferences if pref else fdata.load_jsonl
    build: Callable[..., Any] = pdata.build_pairs if pref else fdata.build_examples
    train = load(train_path, "training data")
    evalf = load(eval_path, "eval data") if eval_path else None
    out = Path(out).resolve()
    resume = check_out(out, resume)
    ref = resolve_base(base)
    from tunegate.core.fingerprint import fingerprint_folder

    fp = fingerprint_folder(ref.folder)
    tok = load_tokenizer(ref)
    limit = model_positions(ref)
    clamped: dict[str, Any] = {}
    if limit is not None and recipe.max_length > limit:
        clamped = {"max_length": {"value": limit, "requested": recipe.max_length,
                                  "rule": "clamped to the model's maximum positions"}}
        recipe = recipe.model_copy(update={"max_length": limit})
    train_tok = build(train, tok, recipe.max_length, recipe.chat_template, recipe.packing)
    eval_tok = build(evalf, tok, recipe.max_length, recipe.chat_template, packing=False) if evalf else None
    n_kept = train_tok.rows - len(train_tok.dropped_for_length)
    recipe, auto = resolve_auto(recipe, n_kept)
    auto.update(clamped)
    use_cpu = os.environ.get("ACCELERATE_USE_CPU", "").lower() in ("1", "true", "yes") or not torch.cuda.is_available()
    bf16_ok = (not use_cpu) and torch.cuda.is_bf16_supported()
    precision = resolve_precision(recipe.precision, on_gpu=not use_cpu, bf16_supported=bf16_ok)
    recipe = recipe.model_copy(update={"precision": precision, "data": str(train.path),
                                       "eval_data": str(evalf.path) if evalf else None})
    return Prepared(recipe=recipe, recipe_source=str(Path(recipe_path).resolve()) if recipe_path else None,
                    overrides=over, auto=auto, base=ref, base_fingerprint=fp, tokenizer=tok, train=train,
                    train_tok=train_tok, eval=evalf, eval_tok=eval_tok, out=out, resume=resume,
                    precision=precision, use_cpu=use_cpu)
