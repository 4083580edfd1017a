"""Training data: JSONL loading, whole-file validation, tokenisation with label masking, packing.

Two row formats (other keys on a row, such as `id`, are ignored):

- `{"prompt": "...", "completion": "..."}`: the text is `prompt + completion`
  exactly as written, followed by the tokenizer's EOS token. Loss is on the
  completion tokens and the EOS only.
- `{"messages": [{"role": "system"|"user"|"assistant", "content": "..."}, ...]}`:
  rendered with the tokenizer's chat template when it has one (and the recipe
  says `chat_template: auto`), otherwise with the plain template below. Loss is
  on every assistant turn only.

The plain template (`PLAIN_TEMPLATE_DOC`) renders each message as

    System: <content>\\n\\n
    User: <content>\\n\\n
    Assistant: <content><EOS>\\n\\n

where the trained part of an assistant turn is " <content><EOS>"; at inference
the model is prompted with the conversation so far followed by "Assistant:".

The whole file is validated before anything trains: every bad row is reported
with its line number and reason in one `UserError` (exit 2).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

from tunegate.core.errors import UserError

IGNORE_INDEX = -100
ROLES = ("system", "user", "assistant")
PLAIN_ROLE_NAMES = {"system": "System", "user": "User", "assistant": "Assistant"}
PLAIN_TEMPLATE_DOC = "System: {system}\\n\\nUser: {user}\\n\\nAssistant: {assistant}<EOS>\\n\\n"
MAX_LISTED_ERRORS = 200
RowT = TypeVar("RowT")  # a validated row: TrainRow here, PreferenceRow in preference_data.py
ExT = TypeVar("ExT")  # a tokenised example: Example here, PairExample in preference_data.py


@dataclass(frozen=True)
class TrainRow:
    """One valid JSONL row: its 1-based line number and either prompt/completion or messages."""

    line: int
    prompt: str | None = None
    completion: str | None = None
    messages: tuple[tuple[str, str], ...] = ()

    @property
    def kind(self) -> str:
        return "chat" if self.messages else "prompt_completion"


@dataclass
class Example:
    """A tokenised training example: ids and labels of equal length (-100 where no loss)."""

    input_ids: list[int]
    labels: list[int]
    lines: tuple[int, ...] = field(default_factory=tuple)


@dataclass
class DataFile(Generic[RowT]):
    """A validated JSONL file and what the manifest records about it (rows have a `kind`)."""

    path: Path
    sha256: str
    rows: list[RowT]

    @property
    def format_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for r in self.rows:
            kind = str(getattr(r, "kind", "row"))
            counts[kind] = counts.get(kind, 0) + 1
        return counts


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with Path(path).open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def check_messages(msgs: Any, name: str = "messages") -> tuple[list[tuple[str, str]] | None, str | None]:
    """Validate a list of {role, content} messages (field `name`); shared by SFT chat rows and DPO chat prompts."""
    if not isinstance(msgs, list) or not msgs:
        return None, f"field '{name}' must be a non-empty list of {{role, content}} objects"
    out: list[tuple[str, str]] = []
    for i, m in enumerate(msgs):
        if not isinstance(m, dict):
            return None, f"field '{name}[{i}]' must be an object with 'role' and 'content'"
        extra = set(m) - {"role", "content"}
        if extra:
            return None, f"field '{name}[{i}]' has unknown key(s) {sorted(extra)}; only 'role' and 'content' are read"
        role, content = m.get("role"), m.get("content")
        if role not in ROLES:
            return None, f"field '{name}[{i}].role' is {role!r}; use one of {', '.join(ROLES)}"
        if not isinstance(content, str):
            return None, f"field '{name}[{i}].content' must be a string"
        if role == "assistant" and not content.strip():
            return None, f"field '{name}[{i}].content' is an empty assistant turn (nothing to learn)"
        out.append((role, content))
    return out, None


def _check_row(obj: Any, line: int) -> tuple[TrainRow | None, str | None]:
    """Validate one parsed row; return the row or the reason it is bad."""
    if not isinstance(obj, dict):
        return None, f"expected a JSON object, got {type(obj).__name__}"
    has_pc = "prompt" in obj or "completion" in obj
    if has_pc and "messages" in obj:
        return None, "give either 'prompt'/'completion' or 'messages', not both"
    if "messages" in obj:
        out, reason = check_messages(obj["messages"])
        if out is None:
            return None, reason
        if not any(r == "assistant" for r, _ in out):
            return None, "field 'messages' has no assistant turn, so there is nothing to train on"
        return TrainRow(line=line, messages=tuple(out)), None
    if not has_pc:
        return None, "expected 'prompt' and 'completion' strings, or a 'messages' list"
    prompt, completion = obj.get("prompt"), obj.get("completion")
    if not isinstance(prompt, str):
        return None, "field 'prompt' is missing or not a string"
    if not isinstance(completion, str) or not completion:
        return None, "field 'completion' is missing or not a non-empty string"
    return TrainRow(line=line, prompt=prompt, completion=completion), None


def load_jsonl(path: Path, what: str = "training data",
               check: Callable[[Any, int], tuple[Any, str | None]] = _check_row,
               expected: str = "prompt/completion or messages") -> DataFile[Any]:
    """Read and validate the whole file with `check` (one row -> row or reason); one UserError lists every bad row."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: {what} file not found")
    rows: list[Any] = []
    errors: list[str] = []
    with path.open("rb") as fh:
        for lineno, raw in enumerate(fh, start=1):
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError:
                errors.append(f"line {lineno}: not UTF-8 text")
                continue
            if not text.strip():
                continue
            try:
                obj = json.loads(text)
            except json.JSONDecodeError as exc:
                errors.append(f"line {lineno}: not valid JSON ({exc.msg} at column {exc.colno})")
                continue
            row, reason = check(obj, lineno)
            if row is None:
                errors.append(f"line {lineno}: {reason}")
            else:
                rows.append(row)
    if errors:
        shown = errors[:MAX_LISTED_ERRORS]
        more = f"\n  ... and {len(errors) - len(shown)} more" if len(errors) > len(shown) else ""
        body = "\n".join(f"  {path}: {e}" for e in shown)
        raise UserError(f"{path}: {len(errors)} bad row(s) in {what}; fix them and rerun "
                        f"(nothing was trained):\n{body}{more}")
    if not rows:
        raise UserError(f"{path}: {what} has no rows; add JSONL rows with {expected}")
    return DataFile(path=path.resolve(), sha256=sha256_file(path), rows=rows)


# ---------------------------------------------------------------- tokenisation


def _special_prefix(tokenizer: Any) -> list[int]:
    """Tokens the tokenizer puts before text by default (e.g. Llama's BOS), found by comparison."""
    with_special = tokenizer("a").input_ids
    without = tokenizer("a", add_special_tokens=False).input_ids
    n = len(with_special) - len(without)
    if n > 0 and with_special[n:n + len(without)] == without:
        return list(with_special[:n])
    return []


def _ids(tokenizer: Any, text: str) -> list[int]:
    return list(tokenizer(text, add_special_tokens=False).input_ids) if text else []


def _eos(tokenizer: Any) -> list[int]:
    return [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []


def uses_chat_template(tokenizer: Any, mode: str) -> bool:
    """True when chat rows are rendered by the tokenizer's own template (mode `auto` and one exists)."""
    return mode == "auto" and bool(getattr(tokenizer, "chat_template", None))


def render_plain(messages: list[tuple[str, str]] | list[dict[str, str]], add_generation_prompt: bool = False,
                 eos_token: str = "") -> str:
    """The plain chat template as text (what a model trained on it should be prompted with)."""
    parts = []
    for m in messages:
        role, content = (m["role"], m["content"]) if isinstance(m, dict) else m
        if role == "assistant":
            parts.append(f"Assistant: {content}{eos_token}\n\n")
        else:
            parts.append(f"{PLAIN_ROLE_NAMES[role]}: {content}\n\n")
    if add_generation_prompt:
        parts.append("Assistant:")
    return "".join(parts)


def _plain_segments(row: TrainRow, tokenizer: Any, prefix: list[int]) -> list[tuple[list[int], bool]]:
    segs: list[tuple[list[int], bool]] = [(prefix, False)]
    for role, content in row.messages:
        if role == "assistant":
            segs.append((_ids(tokenizer, "Assistant:"), False))
            segs.append((_ids(tokenizer, " " + content) + _eos(tokenizer), True))
            segs.append((_ids(tokenizer, "\n\n"), False))
        else:
            segs.append((_ids(tokenizer, f"{PLAIN_ROLE_NAMES[role]}: {content}\n\n"), False))
    return segs


def _template_segments(row: TrainRow, tokenizer: Any, source: str) -> list[tuple[list[int], bool]]:
    """Split the rendered conversation into context and assistant spans by rendering prefixes."""
    msgs = [{"role": r, "content": c} for r, c in row.messages]
    segs: list[tuple[list[int], bool]] = []
    done = ""
    for i, m in enumerate(msgs):
        if m["role"] != "assistant":
            continue
        ctx = tokenizer.apply_chat_template(msgs[:i], tokenize=False, add_generation_prompt=True) if i else ""
        full = tokenizer.apply_chat_template(msgs[: i + 1], tokenize=False)
        if not (ctx.startswith(done) and full.startswith(ctx)):
            raise UserError(f"{source}: line {row.line}: the tokenizer's chat template does not render this "
                            "conversation as growing prefixes, so assistant turns cannot be isolated; "
                            "set chat_template=plain in the recipe")
        segs.append((_ids(tokenizer, ctx[len(done):]), False))
        segs.append((_ids(tokenizer, full[len(ctx):]), True))
        done = full
    return segs


def tokenize_row(row: TrainRow, tokenizer: Any, chat_mode: str = "auto", source: str = "data") -> Example:
    """Token ids and labels for one row; labels are -100 on every prompt/context token."""
    prefix = _special_prefix(tokenizer)
    if row.messages:
        segs = (_template_segments(row, tokenizer, source) if uses_chat_template(tokenizer, chat_mode)
                else _plain_segments(row, tokenizer, prefix))
    else:
        segs = [(prefix + _ids(tokenizer, row.prompt or ""), False),
                (_ids(tokenizer, row.completion or "") + _eos(tokenizer), True)]
    ids: list[int] = []
    labels: list[int] = []
    for seg, trained in segs:
        ids.extend(seg)
        labels.extend(seg if trained else [IGNORE_INDEX] * len(seg))
    while labels and labels[-1] == IGNORE_INDEX:  # trailing context teaches nothing
        labels.pop()
        ids.pop()
    return Example(input_ids=ids, labels=labels, lines=(row.line,))


@dataclass
class Tokenised(Generic[ExT]):
    """Examples ready for the data loader, plus what was dropped and why."""

    examples: list[ExT]
    rows: int
    dropped_for_length: list[int]
    trained_tokens: int


def build_examples(data: DataFile[TrainRow], tokenizer: Any, max_length: int, chat_mode: str = "auto",
                   packing: bool = False) -> Tokenised[Example]:
    """Tokenise every row; drop rows longer than max_length (recorded); pack when asked."""
    kept: list[Example] = []
    dropped: list[int] = []
    for row in data.rows:
        ex = tokenize_row(row, tokenizer, chat_mode, str(data.path))
        if len(ex.input_ids) > max_length:
            dropped.append(row.line)
            continue
        kept.append(ex)
    if not kept:
        raise UserError(f"{data.path}: every row is longer than max_length={max_length} tokens; "
                        "raise max_length in the recipe (e.g. max_length=1024)")
    examples = pack(kept, max_length) if packing else kept
    trained = sum(sum(1 for t in ex.labels if t != IGNORE_INDEX) for ex in kept)
    return Tokenised(examples=examples, rows=len(data.rows), dropped_for_length=dropped, trained_tokens=trained)


def pack(examples: list[Example], max_length: int) -> list[Example]:
    """Concatenate examples and cut into blocks of max_length (attention spans example borders)."""
    blocks: list[Example] = []
    ids: list[int] = []
    labels: list[int] = []
    lines: list[int] = []
    for ex in examples:
        if len(ids) + len(ex.input_ids) > max_length and ids:
            blocks.append(Example(ids, labels, tuple(lines)))
            ids, labels, lines = [], [], []
        ids = ids + ex.input_ids
        labels = labels + ex.labels
        lines.extend(ex.lines)
    if ids:
        blocks.append(Example(ids, labels, tuple(lines)))
    return blocks


class ExampleDataset(Generic[ExT]):
    """Map-style dataset whose order is set per epoch (seeded), so every process agrees on it."""

    def __init__(self, examples: list[ExT]) -> None:
        self.examples = examples
        self.order = list(range(len(examples)))

    def set_epoch_order(self, seed: int, epoch: int, shuffle: bool = True) -> None:
        import torch

        if not shuffle:
            self.order = list(range(len(self.examples)))
            return
        g = torch.Generator().manual_seed(seed * 1000003 + epoch)
        self.order = torch.randperm(len(self.examples), generator=g).tolist()

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, i: int) -> ExT:
        return self.examples[self.order[i]]


def collate(batch: list[Example | None], pad_id: int) -> dict[str, Any]:
    """Right-pad a batch; padded positions get attention 0 and label -100. `None` = an all-padding row."""
    import torch

    width = max((len(ex.input_ids) for ex in batch if ex is not None), default=1)
    n = len(batch)
    input_ids = torch.full((n, width), pad_id, dtype=torch.long)
    labels = torch.full((n, width), IGNORE_INDEX, dtype=torch.long)
    attention = torch.zeros((n, width), dtype=torch.long)
    for i, ex in enumerate(batch):
        if ex is None:
            attention[i, :] = 1  # attend to padding so no row is fully masked; its labels stay -100
            continue
        k = len(ex.input_ids)
        input_ids[i, :k] = torch.tensor(ex.input_ids, dtype=torch.long)
        labels[i, :k] = torch.tensor(ex.labels, dtype=torch.long)
        attention[i, :k] = 1
    return {"input_ids": input_ids, "labels": labels, "attention_mask": attention}
