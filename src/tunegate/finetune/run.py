"""`finetune()`: the one entry point behind `tunegate finetune`, the audit's `finetune:` blocks and the API.

It validates everything (`prepare.prepare`), then hands the job to the trainer of the recipe's
objective: `train.Trainer` for `sft`, `dpo.DpoTrainer` for `dpo`. It lives in its own module
because the DPO trainer extends the SFT one: choosing between them from inside `train.py`
would make the two import each other.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tunegate.finetune.dpo import DpoTrainer
from tunegate.finetune.prepare import prepare
from tunegate.finetune.recipe import resolve_recipe
from tunegate.finetune.train import FinetuneResult, Trainer


def finetune(recipe: Path | str | None, *, base: str, data: Path | str | None = None,
             eval_data: Path | str | None = None, out: Path | str, overrides: Any = (), resume: bool = False,
             progress: bool = True, stop_after_step: int | None = None) -> FinetuneResult:
    """Fine-tune `base` on `data` by `recipe` into `out` (see docs/finetune.md).

    `stop_after_step` interrupts the run after that optimizer step, as a
    crash would (used by tests to prove `resume=True` continues exactly).
    """
    prep = prepare(resolve_recipe(recipe) if recipe else None, base=base, data=Path(data) if data else None,
                   eval_data=Path(eval_data) if eval_data else None, out=Path(out), overrides=overrides, resume=resume)
    cls = DpoTrainer if prep.recipe.objective == "dpo" else Trainer
    return cls(prep, progress=progress, stop_after_step=stop_after_step).run()
