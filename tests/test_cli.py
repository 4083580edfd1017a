"""CLI behaviour: exit codes and one-line messages for bad input, before any model loads."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.cli import run_cli
from tests.kinds import register, write_suite
from tunegate.core.results import RunResult


@pytest.fixture(autouse=True)
def _kind() -> None:
    register()


ROWS = [{"id": f"r{i}", "prompt": f"Say {i}", "target": str(i)} for i in range(3)]


def test_run_writes_results_with_mock_backend(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    suite = write_suite(tmp_path / "s", ROWS)
    script = tmp_path / "script.json"
    script.write_text(json.dumps({"generations": {"Say 1": "1"}}))
    code, out, err = run_cli(["run", "--backend", "mock", "--model", "m", "--option", f"script={script}",
                              "--suites", str(suite), "--out", str(tmp_path / "out")], capsys)
    assert code == 0, err
    result = RunResult.load(tmp_path / "out" / "results.json")
    assert result.suite("echo").metric("accuracy").value == pytest.approx(1 / 3)  # type: ignore[union-attr]
    assert "echo: 3 scored" in out


@pytest.mark.parametrize(
    ("case", "expect"),
    [
        ("missing_model", "model folder not found"),
        ("unknown_suite", "unknown suite 'no_such_suite'"),
        ("malformed_yaml", "malformed YAML"),
        ("unknown_key", "colour: unknown key"),
        ("bad_row_json", "data row 2: invalid JSON"),
        ("bad_row_field", "data row 2: field 'prompt': is empty"),
        ("missing_field", "data row 1: field 'target': is missing"),
        ("missing_data", "data file not found"),
        ("unknown_kind", "unknown suite kind 'nope'"),
        ("bad_option", "command line"),
    ],
)
def test_bad_input_exits_2_with_one_line(case: str, expect: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = write_suite(tmp_path / "good", ROWS)
    suite = str(good)
    model = str(tmp_path / "no-model-here")  # never loaded: suite errors must come first
    extra: list[str] = []
    if case == "missing_model":
        pass
    elif case == "unknown_suite":
        suite = "no_such_suite"
    elif case == "malformed_yaml":
        bad = tmp_path / "bad.yaml"
        bad.write_text("name: x\nkind: [unclosed\n")
        suite = str(bad)
    elif case == "unknown_key":
        suite = str(write_suite(tmp_path / "k", ROWS, extra="colour: blue\n"))
    elif case == "bad_row_json":
        p = write_suite(tmp_path / "j", ROWS)
        (p.parent / "echo.jsonl").write_text('{"id": "a", "prompt": "p", "target": "t"}\n{not json}\n')
        suite = str(p)
    elif case == "bad_row_field":
        suite = str(write_suite(tmp_path / "f", [ROWS[0], {"id": "x", "prompt": "  ", "target": "t"}]))
    elif case == "missing_field":
        suite = str(write_suite(tmp_path / "m", [{"id": "x", "prompt": "p"}]))
    elif case == "missing_data":
        p = write_suite(tmp_path / "d", ROWS)
        (p.parent / "echo.jsonl").unlink()
        suite = str(p)
    elif case == "unknown_kind":
        p = tmp_path / "kind.yaml"
        p.write_text("name: k\nkind: nope\ndata: x.jsonl\n")
        suite = str(p)
    elif case == "bad_option":
        extra = ["--max-length", "2"]
    code, out, err = run_cli(["run", "--model", model, "--suites", suite, "--out", str(tmp_path / "o"), *extra], capsys)
    assert code == 2
    assert expect in err
    assert err.startswith("error: ") and err.count("\n") == 1
    assert "Traceback" not in err


def test_suite_errors_are_reported_before_the_model_is_checked(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli(["run", "--model", str(tmp_path / "absent"), "--suites", "no_such_suite", "--out", str(tmp_path)], capsys)
    assert code == 2 and "unknown suite" in err


def test_incomplete_run_exits_3(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    suite = write_suite(tmp_path / "s", ROWS)
    script = tmp_path / "script.json"
    script.write_text(json.dumps({"fail_on": ["Say 1"]}))
    code, _, err = run_cli(["run", "--backend", "mock", "--model", "m", "--option", f"script={script}",
                            "--suites", str(suite), "--out", str(tmp_path / "out"), "--no-cache"], capsys)
    assert code == 3 and "1 sample(s) errored" in err
    assert RunResult.load(tmp_path / "out").suite("echo").counts["errored"] == 1  # type: ignore[union-attr]


def test_plugins_lists_builtins(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(["plugins"], capsys)
    assert code == 0
    for name in ("hf", "mock", "multiple_choice", "generation", "perplexity"):
        assert name in out


def test_suites_json_lists_every_builtin_with_its_keys(capsys: pytest.CaptureFixture[str]) -> None:
    from tunegate.run.suite_loader import builtin_groups, builtin_suites

    code, out, _ = run_cli(["suites", "--json"], capsys)
    assert code == 0
    rows = json.loads(out)
    assert {r["name"] for r in rows} == set(builtin_suites()) | set(builtin_groups())
    assert all(set(r) == {"name", "kind", "samples", "description"} for r in rows if r["kind"] != "group")
    assert all(set(r) == {"name", "kind", "samples", "description", "suites"} for r in rows if r["kind"] == "group")
    mc = next(r for r in rows if r["name"] == "support_mc")
    assert mc["kind"] == "multiple_choice" and mc["samples"] >= 50
    code, out, _ = run_cli(["suites"], capsys)
    assert code == 0 and len(out.splitlines()) == len(rows)
    assert all(len(line) < 200 for line in out.splitlines())
