"""Suite data through `datasets`: parquet/arrow/folders, Hub datasets offline from the local cache, field paths.

No network: a Hub dataset is stood in for by a datasets cache laid out exactly
as an earlier online `load_dataset("acme/support_mc")` leaves it
(tests/hub_cache.py); with offline mode on, datasets resolves the Hub id from
that cache, which is what a user offline-with-cache gets.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import datasets
import pytest

from tests.cli import run_cli
from tests.hub_cache import SHA, cache_hub_dataset
from tunegate.core.config import DataSource, SuiteConfig
from tunegate.core.data import load_data, read_rows, rows_digest
from tunegate.core.errors import UserError
from tunegate.core.results import RunResult

ROWS: list[dict[str, Any]] = [
    {"id": f"q{i}", "question": f"Which number is {i}?", "choices": [str(i), str(i + 1)], "answer": 0,
     "meta": {"topic": "numbers", "level": i}}
    for i in range(4)
]
OTHER_SHA = "fedcba9876543210fedcba9876543210fedcba98"


@pytest.fixture
def ds_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty datasets cache for this test, with offline mode on (as conftest sets for the whole run)."""
    cache = tmp_path / "hf-datasets-cache"
    cache.mkdir()
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", cache)
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    return cache


def write_mc_suite(folder: Path, data: dict[str, Any], **extra: Any) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    doc = {"name": "hub_mc", "kind": "multiple_choice", "data": data, **extra}
    path = folder / "hub_mc.yaml"
    path.write_text(json.dumps(doc))  # JSON is YAML
    return path


# ---- local formats through datasets --------------------------------------------
def test_parquet_arrow_and_folders_read_the_same_rows_and_hash_the_rows_used(tmp_path: Path) -> None:
    ds = datasets.Dataset.from_list(ROWS)
    ds.to_parquet(str(tmp_path / "d.parquet"))
    ds.save_to_disk(str(tmp_path / "saved"))
    shutil.copy(next((tmp_path / "saved").glob("*.arrow")), tmp_path / "d.arrow")
    (tmp_path / "folder").mkdir()
    (tmp_path / "folder" / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    digests = set()
    for src in (DataSource(path="d.parquet"), DataSource(path="d.arrow"), DataSource(path="saved"),
                DataSource(path="folder"), DataSource(path="folder/", split="test")):
        loaded = load_data(src, tmp_path, {})
        assert [dict(r.data) for r in loaded.rows] == ROWS, src
        assert [r.line for r in loaded.rows] == [1, 2, 3, 4]
        digests.add(loaded.digest)
    assert digests == {rows_digest(ROWS)}  # the rows, not the file layout
    rows, digest = read_rows(DataSource(path="d.parquet", limit=2), tmp_path, {})
    assert len(rows) == 2 and digest == rows_digest(ROWS[:2])  # only the rows actually used


def test_jsonl_json_csv_keep_their_file_hash(tmp_path: Path) -> None:
    """Today's formats keep tunegate's readers and the file-bytes hash, so older results still compare."""
    import hashlib

    p = tmp_path / "d.jsonl"
    p.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    _, digest = read_rows(DataSource(path="d.jsonl"), tmp_path, {})
    assert digest == hashlib.sha256(p.read_bytes()).hexdigest()


def test_folder_with_a_missing_split_names_the_splits_there_are(tmp_path: Path) -> None:
    (tmp_path / "folder").mkdir()
    (tmp_path / "folder" / "train.jsonl").write_text(json.dumps(ROWS[0]) + "\n")
    with pytest.raises(UserError, match=r"split 'test'.*splits: train"):
        load_data(DataSource(path="folder"), tmp_path, {})


def test_dotted_field_mapping_reads_nested_columns(tmp_path: Path) -> None:
    datasets.Dataset.from_list(ROWS).to_parquet(str(tmp_path / "d.parquet"))
    rows, _ = read_rows(DataSource(path="d.parquet"), tmp_path, {"topic": "meta.topic", "first": "choices.0"})
    assert rows[2].get("topic", str) == "numbers" and rows[2].get("first", str) == "2"
    rows, _ = read_rows(DataSource(path="d.parquet"), tmp_path, {"nope": "meta.nope"})
    with pytest.raises(UserError, match=r"field 'nope' \(column 'meta.nope'\): is missing"):
        rows[0].get("nope", str)


def test_config_hash_of_a_suite_without_revision_is_unchanged() -> None:
    """`revision` is left out of the dump while unset: suites written before it keep their config hash."""
    cfg = SuiteConfig(name="s", kind="multiple_choice", data={"path": "d.jsonl"})
    assert cfg.model_dump(mode="json")["data"] == {"path": "d.jsonl", "hf": None, "config": None, "split": "test",
                                                   "format": "auto", "limit": None}
    assert DataSource.model_validate({"hub": "a/b"}).hf == "a/b" == DataSource.model_validate({"hf": "a/b"}).hf
    with pytest.raises(ValueError, match="needs 'hub'"):
        DataSource(path="d.jsonl", revision=SHA)


# ---- Hub datasets offline ------------------------------------------------------
def test_hub_suite_runs_offline_from_the_cache_and_records_the_commit(
        ds_cache: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cache_hub_dataset(ds_cache, "acme/support_mc", {"test": ROWS})
    suite = write_mc_suite(tmp_path / "s", {"hub": "acme/support_mc", "split": "test", "revision": SHA},
                           fields={"topic": "meta.topic"})
    code, out, err = run_cli(["run", "--backend", "mock", "--model", "m", "--suites", str(suite),
                              "--out", str(tmp_path / "out")], capsys)
    assert code == 0, err
    (sr,) = RunResult.load(tmp_path / "out" / "results.json").suites
    assert sr.counts["scored"] == 4
    assert sr.data_hash == rows_digest(ROWS)
    assert sr.data_source == {"hub": "acme/support_mc", "config": "default", "split": "test", "revision": SHA,
                              "offline_cache": True}


def test_hub_suite_offline_without_cache_exits_2_naming_the_dataset(
        ds_cache: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    suite = write_mc_suite(tmp_path / "s", {"hub": "acme/not_cached", "split": "test"})
    code, out, err = run_cli(["run", "--backend", "mock", "--model", "m", "--suites", str(suite),
                              "--out", str(tmp_path / "out")], capsys)
    assert code == 2
    assert "dataset 'acme/not_cached' is not in the local datasets cache" in err and "offline" in err
    assert not (tmp_path / "out" / "results.json").exists()


def test_hub_pinned_revision_must_match_the_cached_commit(ds_cache: Path, tmp_path: Path) -> None:
    cache_hub_dataset(ds_cache, "acme/support_mc", {"test": ROWS}, commit=OTHER_SHA)
    with pytest.raises(UserError, match=f"revision {SHA} is pinned but the local datasets cache holds {OTHER_SHA}"):
        load_data(DataSource(hf="acme/support_mc", revision=SHA), tmp_path, {})
    loaded = load_data(DataSource(hf="acme/support_mc", limit=3), tmp_path, {})  # unpinned: the cached commit
    assert loaded.origin["revision"] == OTHER_SHA and loaded.digest == rows_digest(ROWS[:3])
    with pytest.raises(UserError, match="could not load split 'validation'.*splits: test"):
        load_data(DataSource(hf="acme/support_mc", split="validation"), tmp_path, {})
