"""What a run was: versions, git commit, device, seed, resolved config and its hash.

A compliance reader must be able to tell exactly what produced a number, so the
resolved configuration is stored with a SHA-256 over its canonical JSON. Each
run also gets a random `run_id`, so a comparison can refuse a run set against itself.
"""

from __future__ import annotations

import hashlib
import json
import platform
import subprocess
import sys
import uuid
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from tunegate.core.results import Provenance

LIBRARIES = ("torch", "transformers", "accelerate", "peft", "datasets", "sacrebleu", "rouge-score", "scipy", "numpy", "pydantic")


def lib_versions(names: tuple[str, ...] = LIBRARIES) -> dict[str, str]:
    out = {}
    for n in names:
        try:
            out[n] = version(n)
        except PackageNotFoundError:
            continue
    return out


def tunegate_version() -> str:
    try:
        return version("tunegate")
    except PackageNotFoundError:
        return "0+unknown"


def git_commit() -> str | None:
    """The commit of the tunegate source tree, when it is a git checkout."""
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(
            ["git", "-C", str(here), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def config_hash(config: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def collect(config: dict[str, Any], seed: int, device: str) -> Provenance:
    return Provenance(
        tunegate_version=tunegate_version(),
        git_commit=git_commit(),
        python=sys.version.split()[0],
        platform=platform.platform(),
        libraries=lib_versions(),
        device=device,
        seed=seed,
        config=config,
        config_hash=config_hash(config),
        started_at=now_iso(),
        run_id=new_run_id(),
    )


def new_run_id() -> str:
    """A fresh, unique id for one run (uuid4): two results files with the same id are the same run."""
    return uuid.uuid4().hex
