"""Fine-tuning behind `tunegate finetune`: a base model + JSONL data + a recipe -> auditable checkpoints
(SFT on prompt/completion or chat rows, DPO on {prompt, chosen, rejected} pairs).

Public API:

- `finetune(recipe, base=..., data=..., out=..., overrides=[...], resume=False)` -> `FinetuneResult`
- `Recipe` (the recipe file's pydantic model, `objective: sft | dpo`), `load_recipe`
- `CHECKPOINT_RECORD` (`tunegate_checkpoint.json`) and `read_checkpoint_record(folder)`, which the
  harness uses to show which step and data a candidate came from.

See docs/finetune.md for data formats, recipe keys, the `auto` rule and the manifest.
"""

from __future__ import annotations

from tunegate.finetune.manifest import CHECKPOINT_RECORD, MANIFEST_NAME, read_checkpoint_record
from tunegate.finetune.recipe import LoraSettings, Recipe, load_recipe
from tunegate.finetune.run import finetune
from tunegate.finetune.train import FinetuneResult, TrainingInterrupted

__all__ = ["CHECKPOINT_RECORD", "MANIFEST_NAME", "FinetuneResult", "LoraSettings", "Recipe", "TrainingInterrupted",
           "finetune", "load_recipe", "read_checkpoint_record"]
