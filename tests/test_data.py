"""Reading suite data: local files in three formats, a Hub-style dataset source, row-level errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tunegate.core.config import DataSource
from tunegate.core.data import read_rows
from tunegate.core.errors import UserError

ROWS = [{"id": "a", "prompt": "p1"}, {"id": "b", "prompt": "p2"}]


def test_jsonl_json_and_csv_give_the_same_rows_with_line_numbers(tmp_path: Path) -> None:
    (tmp_path / "d.jsonl").write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    (tmp_path / "d.json").write_text(json.dumps({"data": ROWS}))
    (tmp_path / "d.csv").write_text("id,prompt\na,p1\nb,p2\n")
    for name in ("d.jsonl", "d.json", "d.csv"):
        rows, digest = read_rows(DataSource(path=name), tmp_path, {})
        assert [dict(r.data) for r in rows] == ROWS
        assert [r.line for r in rows] == [1, 2] and len(digest) == 64
    rows, _ = read_rows(DataSource(path="d.jsonl", limit=1), tmp_path, {})
    assert len(rows) == 1


def test_hub_dataset_source_goes_through_datasets_load_dataset(tmp_path: Path) -> None:
    """`data: {hf: ...}` is handed to datasets.load_dataset; a local dataset folder stands in for a Hub id offline."""
    folder = tmp_path / "acme-support"
    folder.mkdir()
    (folder / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    rows, digest = read_rows(DataSource(hf=str(folder), split="test"), tmp_path, {"prompt": "prompt"})
    assert [r.data["prompt"] for r in rows] == ["p1", "p2"]
    assert rows[0].source.endswith("[test]") and digest
    with pytest.raises(UserError, match="could not load split 'validation'"):
        read_rows(DataSource(hf=str(folder), split="validation"), tmp_path, {})


def test_data_source_needs_exactly_one_of_path_or_hf() -> None:
    with pytest.raises(ValueError, match="exactly one"):
        DataSource(path="a.jsonl", hf="x/y")


def test_row_errors_name_file_row_and_field(tmp_path: Path) -> None:
    (tmp_path / "d.jsonl").write_text('{"id": "a", "n": "x"}\n')
    rows, _ = read_rows(DataSource(path="d.jsonl"), tmp_path, {"count": "n"})
    with pytest.raises(UserError, match=r"d.jsonl: data row 1: field 'count' \(column 'n'\): expected int"):
        rows[0].get("count", int)
    with pytest.raises(UserError, match="field 'missing': is missing"):
        rows[0].get("missing", str)
