"""Preference data for DPO: `{prompt, chosen, rejected}` JSONL rows, validated and tokenised like SFT rows.

A row is one prompt with two answers, the preferred (`chosen`) and the
dispreferred (`rejected`). Two forms, which may be mixed in one file (other
keys, such as `id`, are ignored):

- text: `{"prompt": "Q: ...\\nA:", "chosen": " good answer", "rejected": " bad answer"}`; each side is
  scored as `prompt + answer + EOS` exactly as the SFT prompt/completion form trains it;
- chat: `{"prompt": [{"role": "user", "content": "..."}], "chosen": "...", "rejected": "..."}`; each side
  is the conversation plus one assistant turn (a string, or TRL's `[{"role": "assistant", "content": ...}]`),
  rendered by the same chat-template code as SFT chat rows (tokenizer template or the plain template).

Only the answer tokens (and EOS) count in a side's log-likelihood, the tokens SFT would put loss on;
with a chat prompt that already holds assistant turns, only the new final turn counts. The file is
validated whole before anything loads, every bad row named by file, line and field (exit 2), by the
same reader as SFT data (`data.load_jsonl`), so the error format is the same.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tunegate.core.errors import UserError
from tunegate.finetune.data import (
    IGNORE_INDEX,
    DataFile,
    Example,
    Tokenised,
    TrainRow,
    check_messages,
    collate,
    load_jsonl,
    tokenize_row,
)

EXPECTED = "prompt, chosen and rejected"


@dataclass(frozen=True)
class PreferenceRow:
    """One valid preference row: the prompt (text, or messages) and the two answers."""

    line: int
    chosen: str
    rejected: str
    prompt: str | None = None
    messages: tuple[tuple[str, str], ...] = ()

    @property
    def kind(self) -> str:
        return "preference_chat" if self.messages else "preference"

    def side(self, answer: str) -> TrainRow:
        """The SFT row that scores `answer` after this prompt (so both objectives tokenise alike)."""
        if self.messages:
            return TrainRow(line=self.line, messages=(*self.messages, ("assistant", answer)))
        return TrainRow(line=self.line, prompt=self.prompt or "", completion=answer)


@dataclass
class PairExample:
    """A tokenised pair: chosen and rejected sequences with labels on the answer only; `index` keys the
    reference log-probabilities computed once before training."""

    chosen: Example
    rejected: Example
    line: int
    index: int = 0


def _answer(obj: dict[str, Any], name: str, chat: bool) -> tuple[str | None, str | None]:
    value = obj.get(name)
    if chat and isinstance(value, list):  # TRL's conversational form: one assistant message
        if (len(value) != 1 or not isinstance(value[0], dict) or set(value[0]) != {"role", "content"}
                or value[0].get("role") != "assistant"):
            return None, f"field '{name}' must be a string or a list of one {{\"role\": \"assistant\", \"content\": ...}}"
        value = value[0].get("content")
    if not isinstance(value, str) or not value.strip():
        return None, f"field '{name}' is missing or not a non-empty string"
    return value, None


def check_preference_row(obj: Any, line: int) -> tuple[PreferenceRow | None, str | None]:
    """Validate one parsed row; return the row or the reason it is bad (naming the field)."""
    if not isinstance(obj, dict):
        return None, f"expected a JSON object, got {type(obj).__name__}"
    if "messages" in obj or "completion" in obj:
        return None, ("this is an SFT row ('messages'/'completion'); preference data needs 'prompt', 'chosen' and "
                      "'rejected' (use an sft recipe for SFT data)")
    prompt = obj.get("prompt")
    messages: list[tuple[str, str]] = []
    if isinstance(prompt, list):
        checked, reason = check_messages(prompt, "prompt")
        if checked is None:
            return None, reason
        if checked[-1][0] == "assistant":
            return None, "field 'prompt' ends with an assistant turn; the answers in 'chosen'/'rejected' are that turn"
        messages = checked
    elif not isinstance(prompt, str):
        return None, "field 'prompt' is missing or not a string (or a list of {role, content} messages)"
    chosen, reason = _answer(obj, "chosen", bool(messages))
    if chosen is None:
        return None, reason
    rejected, reason = _answer(obj, "rejected", bool(messages))
    if rejected is None:
        return None, reason
    if chosen == rejected:
        return None, "fields 'chosen' and 'rejected' are identical, so the pair prefers nothing"
    if messages:
        return PreferenceRow(line=line, chosen=chosen, rejected=rejected, messages=tuple(messages)), None
    return PreferenceRow(line=line, chosen=chosen, rejected=rejected, prompt=str(prompt)), None


def load_preferences(path: Path, what: str = "training data") -> DataFile[PreferenceRow]:
    """Read and validate a whole preference file; one UserError (exit 2) lists every bad row."""
    return load_jsonl(path, f"{what} (preference pairs)", check=check_preference_row, expected=EXPECTED)


def _final_turn_only(ex: Example) -> Example:
    """Keep labels on the last labelled span (the answer) only: earlier assistant turns of a chat prompt are context."""
    labels = list(ex.labels)
    end = len(labels)
    start = end
    while start > 0 and labels[start - 1] != IGNORE_INDEX:
        start -= 1
    return Example(input_ids=ex.input_ids, labels=[IGNORE_INDEX] * start + labels[start:], lines=ex.lines)


def tokenize_pair(row: PreferenceRow, tokenizer: Any, chat_mode: str = "auto", source: str = "data") -> PairExample:
    sides = [_final_turn_only(tokenize_row(row.side(answer), tokenizer, chat_mode, source))
             for answer in (row.chosen, row.rejected)]
    return PairExample(chosen=sides[0], rejected=sides[1], line=row.line)


def build_pairs(data: DataFile[PreferenceRow], tokenizer: Any, max_length: int, chat_mode: str = "auto",
                packing: bool = False) -> Tokenised[PairExample]:
    """Tokenise every pair; drop a pair when either side is longer than max_length (recorded, never truncated:
    cutting one answer would compare a whole answer with a fragment)."""
    if packing:
        raise UserError("packing is not available for preference pairs")
    kept: list[PairExample] = []
    dropped: list[int] = []
    for row in data.rows:
        pair = tokenize_pair(row, tokenizer, chat_mode, str(data.path))
        if max(len(pair.chosen.input_ids), len(pair.rejected.input_ids)) > max_length:
            dropped.append(row.line)
            continue
        pair.index = len(kept)
        kept.append(pair)
    if not kept:
        raise UserError(f"{data.path}: every pair has a side longer than max_length={max_length} tokens; "
                        "raise max_length in the recipe (e.g. max_length=1024)")
    trained = sum(sum(1 for t in ex.labels if t != IGNORE_INDEX) for p in kept for ex in (p.chosen, p.rejected))
    return Tokenised(examples=kept, rows=len(data.rows), dropped_for_length=dropped, trained_tokens=trained)


def collate_pairs(batch: list[PairExample | None], pad_id: int, filler: PairExample | None = None) -> dict[str, Any]:
    """Chosen rows then rejected rows in one right-padded batch (one forward pass scores both sides).

    `None` (an eval process's padding slot) repeats a real pair (or `filler`) with `weight` 0, so every process
    runs the same number of forward passes (FSDP needs that) and padding never counts.
    """
    import torch

    real = next((p for p in batch if p is not None), filler)
    if real is None:
        raise ValueError("a batch of preference pairs needs at least one real pair")
    pairs = [p if p is not None else real for p in batch]
    rows: list[Example | None] = [*(p.chosen for p in pairs), *(p.rejected for p in pairs)]
    out = collate(rows, pad_id)
    out["index"] = torch.tensor([p.index for p in pairs], dtype=torch.long)
    out["weight"] = torch.tensor([0.0 if p is None else 1.0 for p in batch], dtype=torch.float64)
    return out
