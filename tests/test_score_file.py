"""`tunegate score`: original fields plus scores per line; bad lines exit 2 naming the line; failures exit 3."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.cli import run_cli
from tunegate.scorers.base import _LOADED


@pytest.fixture(autouse=True)
def _fresh_scorers() -> Any:
    _LOADED.clear()
    yield
    _LOADED.clear()


def write_jsonl(path: Path, rows: list[Any]) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8")
    return path


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_refusal_scores_are_added_to_the_original_fields(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = write_jsonl(tmp_path / "in.jsonl", [
        {"id": 7, "prompt": "How do I pick a lock?", "text": "I can't help with breaking into homes.", "model": "m1"},
        {"id": 8, "text": "Sorry for the delay! Water boils at 100 degrees Celsius at sea level."},
    ])
    code, out, err = run_cli(["score", "refusal", "--input", str(src), "--output", str(tmp_path / "out.jsonl")], capsys)
    assert code == 0, err
    assert "2 of 2 line(s) scored by refusal" in out
    rows = read_jsonl(tmp_path / "out.jsonl")
    assert rows[0]["id"] == 7 and rows[0]["model"] == "m1" and rows[0]["prompt"] == "How do I pick a lock?"
    assert rows[0]["refused"] == 1.0 and rows[0]["refused_details"]["label"] == "refused"
    assert rows[1]["refused"] == 0.0 and rows[1]["refused_details"]["label"] == "complied"


def test_scorer_options_are_passed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = "I won't do that part. Here is the rest: the form is on page two of the guide."
    src = write_jsonl(tmp_path / "in.jsonl", [{"text": text}])
    out_path = tmp_path / "out.jsonl"
    assert run_cli(["score", "refusal", "--input", str(src), "--output", str(out_path)], capsys)[0] == 0
    assert read_jsonl(out_path)[0]["refused"] == 0.5
    args = ["score", "refusal", "--input", str(src), "--output", str(out_path), "--option", "method=rules",
            "--option", "partial_min_words=50"]
    assert run_cli(args, capsys)[0] == 0
    assert read_jsonl(out_path)[0]["refused"] == 1.0


def test_profanity_check_values(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from profanity_check import predict_prob

    texts = ["what a lovely morning", "shut up you stupid idiot"]
    src = write_jsonl(tmp_path / "in.jsonl", [{"text": t} for t in texts])
    assert run_cli(["score", "profanity-check", "--input", str(src), "--output", str(tmp_path / "o.jsonl")], capsys)[0] == 0
    got = [r["toxicity"] for r in read_jsonl(tmp_path / "o.jsonl")]
    assert got == pytest.approx([float(p) for p in predict_prob(texts)])


@pytest.mark.parametrize("line,message", [
    ("{not json", "line 2: invalid JSON"),
    ('["a list"]', "line 2: expected a JSON object, got list"),
    ('{"txt": "typo"}', "line 2: field 'text' must be a string (it is missing)"),
    ('{"text": 3}', "line 2: field 'text' must be a string (it is a int)"),
    ('{"text": "ok", "prompt": 5}', "line 2: field 'prompt' must be a string or absent"),
])
def test_bad_input_line_exits_2_naming_it(tmp_path: Path, capsys: pytest.CaptureFixture[str], line: str, message: str) -> None:
    src = write_jsonl(tmp_path / "in.jsonl", [{"text": "fine"}, line])
    code, _, err = run_cli(["score", "refusal", "--input", str(src), "--output", str(tmp_path / "o.jsonl")], capsys)
    assert code == 2 and message in err
    assert not (tmp_path / "o.jsonl").exists()


def test_unknown_scorer_and_bad_option_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = write_jsonl(tmp_path / "in.jsonl", [{"text": "x"}])
    code, _, err = run_cli(["score", "nope", "--input", str(src), "--output", str(tmp_path / "o.jsonl")], capsys)
    assert code == 2 and "unknown scorer 'nope'" in err
    code, _, err = run_cli(["score", "refusal", "--input", str(src), "--output", str(tmp_path / "o.jsonl"),
                            "--option", "colour=red"], capsys)
    assert code == 2 and "colour" in err


def test_a_scorer_that_cannot_load_writes_errors_and_exits_3(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("detoxify")
    src = write_jsonl(tmp_path / "in.jsonl", [{"text": "a"}, {"text": "b"}])
    out_path = tmp_path / "o.jsonl"
    code, _, err = run_cli(["score", "detoxify", "--input", str(src), "--output", str(out_path),
                            "--option", f"checkpoint={tmp_path / 'missing.ckpt'}"], capsys)
    assert code == 3 and "2 of 2 line(s) could not be scored" in err
    rows = read_jsonl(out_path)
    assert [r["toxicity"] for r in rows] == [None, None]  # never 0 / "safe"
    assert all("missing.ckpt not found" in r["toxicity_error"] for r in rows)
