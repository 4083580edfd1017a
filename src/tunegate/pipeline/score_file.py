"""`tunegate score`: re-score a JSONL file of texts with any registered scorer.

Users re-score old outputs with it (a new toxicity classifier over last
month's generations), and it is how a scorer's quality is measured against a
labelled file (`benchmarks/scorer_quality.py`). Each input line is a JSON
object with a `text` string (and optionally `prompt`, passed to scorers that
use it); each output line is the same object plus one key per score
(`toxicity`, `refused`, ...) and `<name>_details` / `<name>_error` where
present. The whole input is validated before the scorer loads: a bad line is
a UserError (exit 2) naming the line. A scorer that cannot score writes
`null` plus the error for those lines and the command exits 3, so nothing
partial is presented as complete.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tunegate.core.data import iter_jsonl
from tunegate.core.errors import IncompleteError, UserError
from tunegate.core.io import atomic_write_text


def read_input(path: Path, text_field: str = "text", prompt_field: str = "prompt") -> list[dict[str, Any]]:
    """Every line as an object with a string `text_field`; the first bad line is a UserError."""
    if not path.is_file():
        raise UserError(f"{path}: input file not found")
    rows: list[dict[str, Any]] = []
    for lineno, obj in iter_jsonl(path, unit="line"):
        if not isinstance(obj.get(text_field), str):
            got = "missing" if text_field not in obj else f"a {type(obj[text_field]).__name__}"
            raise UserError(f"{path}: line {lineno}: field '{text_field}' must be a string (it is {got})")
        if prompt_field in obj and obj[prompt_field] is not None and not isinstance(obj[prompt_field], str):
            raise UserError(f"{path}: line {lineno}: field '{prompt_field}' must be a string or absent")
        rows.append(obj)
    if not rows:
        raise UserError(f"{path}: no input lines")
    return rows


def score_file(
    name: str,
    input_path: Path,
    output_path: Path,
    options: dict[str, Any] | None = None,
    *,
    text_field: str = "text",
    prompt_field: str = "prompt",
    device: str = "cpu",
    batch_size: int = 1024,
) -> dict[str, int]:
    """Score every line of `input_path` with scorer `name`; write `output_path` atomically.

    Returns counts {"lines", "scored", "errored"}; raises IncompleteError (exit 3)
    after writing the file when any line could not be scored.
    """
    from tunegate.scorers.base import get_scorer

    rows = read_input(input_path, text_field, prompt_field)
    scorer = get_scorer(name, **(options or {}))
    texts = [r[text_field] for r in rows]
    prompts: list[str | None] = [r.get(prompt_field) for r in rows]
    errored = 0
    out_lines: list[str] = []
    for start in range(0, len(rows), batch_size):
        chunk = slice(start, start + batch_size)
        results = scorer.score_texts_safe(texts[chunk], prompts[chunk], device=device)
        for row, scores in zip(rows[chunk], results, strict=True):
            out = dict(row)
            bad = False
            for s in scores:
                out[s.name] = s.value if s.ok else None
                if s.details:
                    out[f"{s.name}_details"] = s.details
                if not s.ok:
                    out[f"{s.name}_error"] = s.error
                    bad = True
            errored += bad
            out_lines.append(json.dumps(out, ensure_ascii=False, allow_nan=False))
    atomic_write_text(output_path, "\n".join(out_lines) + "\n")
    counts = {"lines": len(rows), "scored": len(rows) - errored, "errored": errored}
    if errored:
        raise IncompleteError(f"{errored} of {len(rows)} line(s) could not be scored by {name}; "
                              f"see the '*_error' fields in {output_path}")
    return counts

