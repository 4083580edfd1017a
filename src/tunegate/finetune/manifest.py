"""What a fine-tuning run did: `OUT/manifest.json`, per-checkpoint records, and the resumable trainer state.

The manifest is the audit trail of a candidate: which base (by fingerprint),
which data (by SHA-256 and row counts), which resolved recipe (and its hash),
on which devices, for how long, at what energy (measured or unavailable), and
the loss curves. Each checkpoint folder also carries a small
`tunegate_checkpoint.json` so a folder on its own says where it came from;
the harness shows it next to the candidate's fingerprint.
"""

from __future__ import annotations

import json
import platform
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tunegate.core.io import atomic_write_text

MANIFEST_NAME = "manifest.json"
CHECKPOINT_RECORD = "tunegate_checkpoint.json"
TRAINER_STATE = "trainer_state.json"
SCHEMA_VERSION = 1


@dataclass
class TrainerState:
    """Where training stands; saved next to the accelerate state so `--resume` can continue exactly."""

    global_step: int = 0
    epoch: int = 0
    batches_in_epoch: int = 0
    total_steps: int = 0
    steps_per_epoch: int = 0
    recipe_hash: str = ""
    data_sha256: str = ""
    eval_sha256: str | None = None
    base_fingerprint: str = ""
    train_loss_history: list[dict[str, Any]] = field(default_factory=list)
    eval_loss_history: list[dict[str, Any]] = field(default_factory=list)
    checkpoints: list[dict[str, Any]] = field(default_factory=list)
    segments: list[dict[str, Any]] = field(default_factory=list)
    tokens_seen: int = 0
    started_at: str = ""

    def save(self, folder: Path) -> None:
        atomic_write_text(Path(folder) / TRAINER_STATE, json.dumps(asdict(self), indent=1))

    @classmethod
    def load(cls, folder: Path) -> TrainerState:
        return cls(**json.loads((Path(folder) / TRAINER_STATE).read_text(encoding="utf-8")))


def checkpoint_record(*, step: int, epoch: float, method: str, base: str, base_fingerprint: str,
                      data_path: str, data_sha256: str, eval_sha256: str | None, recipe_hash: str,
                      final: bool, train_loss: float | None, eval_loss: float | None, created_at: str) -> dict[str, Any]:
    """The content of `tunegate_checkpoint.json` in every checkpoint folder (and final/)."""
    return {
        "schema_version": SCHEMA_VERSION,
        "kind": "tunegate-finetune-checkpoint",
        "step": step,
        "epoch": round(epoch, 4),
        "final": final,
        "method": method,
        "base": base,
        "base_fingerprint": base_fingerprint,
        "data_path": data_path,
        "data_sha256": data_sha256,
        "eval_data_sha256": eval_sha256,
        "recipe_hash": recipe_hash,
        "train_loss": train_loss,
        "eval_loss": eval_loss,
        "manifest": f"../{MANIFEST_NAME}",
        "created_at": created_at,
    }


def write_checkpoint_record(folder: Path, record: dict[str, Any]) -> None:
    atomic_write_text(Path(folder) / CHECKPOINT_RECORD, json.dumps(record, indent=1))


def read_checkpoint_record(folder: Path) -> dict[str, Any] | None:
    """The record of a checkpoint folder, or None when the folder is not a tunegate checkpoint."""
    path = Path(folder) / CHECKPOINT_RECORD
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) else None


def data_block(path: Path, sha256: str, rows: int, used: int, dropped: list[int], formats: dict[str, int],
               trained_tokens: int) -> dict[str, Any]:
    """`data` / `eval_data` entries: the memorization suite reads `path` and `sha256`."""
    return {
        "path": str(path),
        "sha256": sha256,
        "rows": rows,
        "rows_used": used,
        "rows_dropped_for_length": len(dropped),
        "dropped_lines": dropped[:100],
        "formats": formats,
        "trained_tokens": trained_tokens,
    }


def build_manifest(*, status: str, base: dict[str, Any], method: str, data: dict[str, Any],
                   eval_data: dict[str, Any] | None, recipe: dict[str, Any], recipe_hash: str,
                   recipe_source: str | None, overrides: dict[str, Any], auto: dict[str, Any],
                   devices: dict[str, Any], state: TrainerState, parameters: dict[str, int],
                   energy: dict[str, Any], memory: dict[str, Any], final: dict[str, Any] | None,
                   finished_at: str | None) -> dict[str, Any]:
    """Assemble the manifest from what the trainer measured; nothing here is estimated."""
    from tunegate.core.provenance import git_commit, lib_versions, tunegate_version

    wall = sum(float(s["wall_s"]) for s in state.segments)
    device_seconds = sum(float(s["wall_s"]) * int(s["num_processes"]) for s in state.segments)
    train_wall = sum(float(s.get("train_s", 0.0)) for s in state.segments)
    return {
        "schema_version": SCHEMA_VERSION,
        "kind": "tunegate-finetune-manifest",
        "status": status,
        "tunegate_version": tunegate_version(),
        "git_commit": git_commit(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "libraries": lib_versions(("torch", "transformers", "accelerate", "peft", "safetensors", "tokenizers",
                                   "numpy", "pydantic")),
        "base": base,
        "method": method,
        "parameters": parameters,
        "data": data,
        "eval_data": eval_data,
        "recipe": recipe,
        "recipe_hash": recipe_hash,
        "recipe_source": recipe_source,
        "overrides": overrides,
        "auto": auto,
        "seed": recipe.get("seed"),
        "devices": devices,
        "steps": {"completed": state.global_step, "total": state.total_steps, "per_epoch": state.steps_per_epoch,
                  "epochs": recipe.get("epochs")},
        "train_loss_history": state.train_loss_history,
        "eval_loss_history": state.eval_loss_history,
        "checkpoints": state.checkpoints,
        "final": final,
        "tokens_seen": state.tokens_seen,
        "tokens_per_second": (state.tokens_seen / train_wall) if train_wall > 0 else None,
        "memory": memory,
        "wall_time_s": wall,
        "device_hours": device_seconds / 3600.0,
        "device_hours_definition": "sum over run segments of wall time x number of processes (one device each)",
        "energy": energy,
        "segments": state.segments,
        "started_at": state.started_at,
        "finished_at": finished_at,
    }


def write_manifest(out: Path, manifest: dict[str, Any]) -> Path:
    path = Path(out) / MANIFEST_NAME
    atomic_write_text(path, json.dumps(manifest, indent=1, default=str))
    return path
