"""`--resume`: every rule about the resumable state a run keeps in `OUT/state/`, in one place.

An interrupted run leaves accelerate's state (optimizer, scheduler, RNG per process) and
`trainer_state.json` in `OUT/state/`, and `--resume` continues exactly from them. The rules
that make this safe live here together, apart from the training loop, so they cannot drift
apart: which output folders may be started or resumed (`check_out`, before any model loads),
that a resumed run has exactly the inputs of the interrupted one (`check_resumable`), the
atomic save (`save_state`) and its restore (`restore`), counting the time an interrupted
segment lost (`record_segments`) and dropping the state once the run is complete (`discard_state`).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tunegate.core.errors import IncompleteError, UserError
from tunegate.finetune.manifest import MANIFEST_NAME, TRAINER_STATE, TrainerState

if TYPE_CHECKING:
    from accelerate import Accelerator

STATE_DIR = "state"


def check_out(out: Path, resume: bool) -> bool:
    """Refuse to overwrite a run or to resume what cannot be resumed; return whether to resume.

    A run stopped before its first checkpoint left only a manifest: with or without
    `--resume` it simply starts over, which is what resuming it would amount to.
    """
    state_file = out / STATE_DIR / TRAINER_STATE
    saved = any(out.glob("checkpoint-*")) or (out / "final").exists() if out.exists() else False
    if resume:
        manifest = out / MANIFEST_NAME
        try:
            status = json.loads(manifest.read_text(encoding="utf-8")).get("status") if manifest.is_file() else None
        except (OSError, ValueError, AttributeError):
            status = None
        if status == "complete":
            raise UserError(f"--out {out}: this run is already complete; nothing to resume")
        if state_file.is_file():
            return True
        if saved:
            raise UserError(f"--out {out}: has checkpoints but no resumable state ({STATE_DIR}/{TRAINER_STATE}); "
                            "choose an empty --out folder")
        return False
    if saved or state_file.is_file():
        raise UserError(f"--out {out}: already holds a fine-tuning run; pass --resume to continue it, "
                        "or choose an empty --out folder")
    return False


def check_resumable(out: Path, *, recipe_hash: str, data_sha256: str, eval_sha256: str | None,
                    base_fingerprint: str) -> None:
    """Refuse to resume with another recipe, data or base, before any model loads."""
    saved = TrainerState.load(out / STATE_DIR)
    mismatches = [name for name, a, b in (
        ("recipe (after overrides and auto)", saved.recipe_hash, recipe_hash),
        ("training data", saved.data_sha256, data_sha256),
        ("eval data", saved.eval_sha256, eval_sha256),
        ("base model", saved.base_fingerprint, base_fingerprint)) if a != b]
    if mismatches:
        raise UserError(f"--resume {out}: the {', '.join(mismatches)} differ from the interrupted run; "
                        "rerun with exactly the same recipe, overrides, data and base, or use a new --out")


def restore(acc: Accelerator, model: Any, out: Path, method: str) -> TrainerState:
    """Load state/ (optimizer, scheduler, RNG) and, for LoRA, the adapter of the last checkpoint; return the saved
    trainer state."""
    state_dir = out / STATE_DIR
    saved = TrainerState.load(state_dir)
    acc.load_state(str(state_dir))
    if method == "lora" and acc.distributed_type.value != "FSDP":
        from peft import set_peft_model_state_dict
        from safetensors.torch import load_file

        last = out / saved.checkpoints[-1]["path"]
        weights = load_file(str(last / "adapter_model.safetensors"))
        # peft annotates the return as `namedtuple` (the factory); it is torch's load_state_dict result
        result: Any = set_peft_model_state_dict(acc.unwrap_model(model), weights)
        if getattr(result, "unexpected_keys", None):
            raise IncompleteError(f"{last}: adapter weights do not match the model ({result.unexpected_keys[:3]})")
    return saved


def save_state(acc: Accelerator, out: Path, snapshot: Callable[[], TrainerState]) -> None:
    """accelerate's state (optimizer, scheduler, RNG per process) + trainer_state.json, swapped in atomically.

    Every process must call it; `snapshot()` (the trainer state to save) is taken on the main process only,
    once accelerate's state is written.
    """
    tmp, old, live = out / ".state-tmp", out / ".state-old", out / STATE_DIR
    if acc.is_main_process and tmp.exists():
        shutil.rmtree(tmp)
    acc.wait_for_everyone()
    acc.save_state(str(tmp), safe_serialization=True)
    acc.wait_for_everyone()
    if acc.is_main_process:
        snapshot().save(tmp)
        if live.exists():
            live.rename(old)
        tmp.rename(live)
        shutil.rmtree(old, ignore_errors=True)
    acc.wait_for_everyone()


def record_segments(acc: Accelerator, out: Path, segments: list[dict[str, Any]]) -> None:
    """Write the segments (the interrupted one included) into the saved state, so a resumed run counts the lost
    time too."""
    live = out / STATE_DIR / TRAINER_STATE
    if acc.is_main_process and live.is_file():
        saved = TrainerState.load(live.parent)
        saved.segments = segments
        saved.save(live.parent)


def discard_state(acc: Accelerator, out: Path) -> None:
    """Remove state/ once the run is complete: a complete run has nothing to resume. Every process must call it."""
    acc.wait_for_everyone()
    if acc.is_main_process:
        shutil.rmtree(out / STATE_DIR, ignore_errors=True)
    acc.wait_for_everyone()
