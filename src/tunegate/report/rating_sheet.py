"""rating_sheet.html: one self-contained, offline page on which a person rates blinded answer pairs.

Render only (the items, their order and the A/B assignment come from
`tunegate.pipeline.rate`). Like report.html: Jinja2 with autoescaping, inline
CSS, one inline script allowed by its SHA-256 in a strict Content-Security-
Policy, nothing loaded from the network; model text is only ever text. The page
shows no model names. Keys 1 / 2 / 3 rate (A better / tie / B better), arrows
move, and "Download ratings" saves a JSONL file (progress is also kept in the
browser's local storage, so a reload loses nothing).
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass

from tunegate.report.html import environment

SCRIPT = "rating_sheet.js"


@dataclass(frozen=True)
class SheetItem:
    """One blinded pair as shown: an opaque id, the request and the two answers in their shown order."""

    item: str
    prompt: str
    answer_a: str
    answer_b: str


def sheet_script_hash() -> str:
    text = environment().get_template(SCRIPT).render()
    return "sha256-" + base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode("ascii")


def render_rating_sheet(sheet_id: str, title: str, items: list[SheetItem]) -> str:
    return environment().get_template("rating_sheet.html.j2").render(
        sheet_id=sheet_id, title=title, items=items, script_hash=sheet_script_hash())
