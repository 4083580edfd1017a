"""Fixtures for the fine-tuning tests: tiny datasets and one thread per test process.

Tiny models train in a second on one thread; with two or more threads on a
shared 2-core machine, OpenMP spin-waiting makes the same run 10x slower.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

ROWS = [
    {"prompt": "Q: color of sky? A:", "completion": " blue"},
    {"prompt": "Q: color of grass? A:", "completion": " green"},
    {"prompt": "Q: two plus two? A:", "completion": " four"},
    {"prompt": "Q: capital of France? A:", "completion": " Paris"},
]


@pytest.fixture(autouse=True)
def _one_thread():
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture
def jsonl():
    """A writer: jsonl(path, rows) -> path."""
    return write_jsonl


@pytest.fixture
def tiny_rows() -> list[dict]:
    return [dict(r) for r in ROWS]


@pytest.fixture
def train_file(tmp_path: Path) -> Path:
    return write_jsonl(tmp_path / "train.jsonl", ROWS)
