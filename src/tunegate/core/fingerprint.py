"""SHA-256 fingerprints of every model file that changes outputs, memoised by (path, size, mtime).

Identity covers weights, tokenizer files, the model config (`config.json`:
architecture, norms, activations, rope scaling), the generation config, a PEFT
adapter's `adapter_config.json` (rank, alpha, targets) and any model code shipped
in the folder (`*.py`, used under `trust_remote_code`). Editing any of them is a
different model: its answers never come from the old model's cache.

The fingerprint is over file *bytes*, never names: the same weights under two
names are one model, and a changed file under the same name is another. Each
file's digest is memoised in a JSON sidecar in the cache folder so a 500 MB
checkpoint is hashed once, not on every run.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from pathlib import Path

from tunegate.core.io import atomic_write_text

WEIGHT_PATTERNS = ("*.safetensors",)
PICKLE_PATTERNS = ("*.bin", "*.pt", "*.pth")
TOKENIZER_FILES = (
    "tokenizer.json", "tokenizer.model", "tokenizer_config.json", "special_tokens_map.json",
    "vocab.json", "merges.txt", "vocab.txt", "added_tokens.json", "chat_template.jinja", "chat_template.json",
)
#: configuration files that change outputs: the architecture config, generation defaults, a PEFT adapter's config
CONFIG_FILES = ("config.json", "generation_config.json", "adapter_config.json")
#: model code a folder may ship (loaded under trust_remote_code); hashed whenever present
CODE_PATTERNS = ("*.py",)


def _memo_path() -> Path:
    from tunegate.core.cache import default_cache_path

    return default_cache_path().parent / "file_hashes.json"


def file_sha256(path: Path, memo: dict[str, str] | None = None) -> str:
    st = path.stat()
    key = f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}"
    if memo is not None and key in memo:
        return memo[key]
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    digest = h.hexdigest()
    if memo is not None:
        memo[key] = digest
    return digest


def model_files(folder: Path, allow_pickle: bool = False) -> list[Path]:
    """Every file of a model folder that changes outputs: weights (pickle only when allowed), tokenizer, configs, code."""
    patterns = WEIGHT_PATTERNS + (PICKLE_PATTERNS if allow_pickle else ()) + CODE_PATTERNS
    files = {p for pat in patterns for p in folder.glob(pat) if p.is_file()}
    files |= {folder / n for n in TOKENIZER_FILES + CONFIG_FILES if (folder / n).is_file()}
    files |= set(folder.glob("adapter_model.safetensors"))
    return sorted(files)


def fingerprint_files(files: list[Path]) -> str:
    """Combine per-file digests, sorted, so the result depends on bytes only."""
    memo_file = _memo_path()
    try:
        memo = json.loads(memo_file.read_text()) if memo_file.is_file() else {}
    except (OSError, json.JSONDecodeError):
        memo = {}
    before = len(memo)
    digests = sorted(file_sha256(f, memo) for f in files)
    if len(memo) != before:
        with contextlib.suppress(OSError):  # memoisation is an optimisation; a read-only cache folder is fine
            atomic_write_text(memo_file, json.dumps(memo))
    return hashlib.sha256("\n".join(digests).encode()).hexdigest()


def fingerprint_folder(folder: Path, allow_pickle: bool = False) -> str:
    return fingerprint_files(model_files(folder, allow_pickle))


