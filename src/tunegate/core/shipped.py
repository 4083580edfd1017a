"""The one lookup for data shipped with tunegate: built-in suites, fine-tuning recipes, the demo, policies.

Why one place: the same files must be found from a source checkout (top-level
`suites/`, `fine_tune/`, `policies/`) and from an installed wheel (copied to
`tunegate/_shipped/<name>` by the build). Three hand-written lookups used to
disagree, and the wheel lacked the recipes that `recipe: sft-lora` names.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

Shipped = Literal["suites", "fine_tune", "policies"]

_PACKAGE = Path(__file__).resolve().parents[1]  # the tunegate package folder


def shipped_dir(name: Shipped) -> Path:
    """The folder holding shipped data `name`: the installed package's copy, else the source tree's.

    Raises FileNotFoundError (a broken installation, not bad input) when neither exists.
    """
    for cand in (_PACKAGE / "_shipped" / name, _PACKAGE.parents[1] / name):
        if cand.is_dir():
            return cand
    raise FileNotFoundError(f"tunegate's shipped '{name}' folder is missing from this installation; reinstall tunegate")
