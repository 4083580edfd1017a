"""The exit-code contract for failures of the tool itself.

Only a gate decision exits 1. An unexpected exception anywhere in `run`,
`gate` or `audit` exits 3 with one line on stderr (the traceback goes to a log
file, and to stderr only under --debug); an unusable output folder is bad
input and exits 2 before any work.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.cli import run_cli
from tests.kinds import register, write_suite
from tests.report.factory import run_result, suite_result
from tests.test_audit import _audit, _script


@pytest.fixture(autouse=True)
def _kind() -> None:
    register()


ROWS = [{"id": f"r{i}", "prompt": f"Say {i}", "target": str(i)} for i in range(3)]


def _boom(*args: object, **kwargs: object) -> None:
    raise ZeroDivisionError("planted fault deep in the pipeline")


def _assert_crash_line(code: int, err: str) -> Path:
    assert code == 3, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith("error: internal error") and "ZeroDivisionError: planted fault" in lines[0]
    log = Path(re.search(r"traceback in (\S+\.log)", lines[0]).group(1))  # type: ignore[union-attr]
    assert "Traceback" in log.read_text() and "_boom" in log.read_text()
    return log


def _run_args(tmp_path: Path) -> list[str]:
    suite = write_suite(tmp_path / "s", ROWS)
    script = tmp_path / "script.json"
    script.write_text(json.dumps({"generations": {"Say 1": "1"}}))
    return ["run", "--backend", "mock", "--model", "m", "--option", f"script={script}", "--suites", str(suite),
            "--out", str(tmp_path / "out"), "--no-cache"]


def test_unexpected_exception_in_run_exits_3_with_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    from tunegate.core.results import RunResult

    monkeypatch.setattr(RunResult, "save", _boom)
    code, _, err = run_cli(_run_args(tmp_path), capsys)
    _assert_crash_line(code, err)


def test_debug_prints_the_traceback(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    from tunegate.core.results import RunResult

    monkeypatch.setattr(RunResult, "save", _boom)
    monkeypatch.setattr("tunegate.cli._DEBUG", {"on": False})
    code, _, err = run_cli(["--debug", *_run_args(tmp_path)], capsys)
    assert code == 3 and "Traceback (most recent call last)" in err and "_boom" in err
    assert err.strip().splitlines()[-1].startswith("error: internal error")


def test_out_that_is_a_file_exits_2_before_the_model_loads(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "hostname"
    target.write_text("not a folder\n")
    args = _run_args(tmp_path)
    args[args.index("--out") + 1] = str(target)
    args[args.index("--model") + 1] = str(tmp_path / "no-such-model")  # never reached
    args[args.index("--backend") + 1] = "hf"
    code, _, err = run_cli(args, capsys)
    assert code == 2 and "is a file, not a folder" in err and err.count("\n") == 1
    args[args.index("--out") + 1] = str(target / "below")
    code, _, err = run_cli(args, capsys)
    assert code == 2 and "cannot be created" in err


def test_os_error_is_an_incomplete_run_not_a_gate_failure(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    from tunegate.core.results import RunResult

    def full_disk(*args: object, **kwargs: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(RunResult, "save", full_disk)
    code, _, err = run_cli(_run_args(tmp_path), capsys)
    assert code == 3 and err.startswith("error: run incomplete: OSError") and "No space left" in err
    assert err.count("\n") == 1


def _results_pair(tmp_path: Path) -> tuple[Path, Path, Path]:
    vals = {f"s{i}": float(i % 2) for i in range(40)}
    base = run_result("base", [suite_result("task", {"accuracy": vals})])
    cand = run_result("cand", [suite_result("task", {"accuracy": vals})])
    base.save(tmp_path / "base" / "results.json")
    cand.save(tmp_path / "cand" / "results.json")
    policy = tmp_path / "policy.yaml"
    policy.write_text("rules:\n  - metric: task/accuracy\n    max_regression: 0.5\n")
    return tmp_path / "base" / "results.json", tmp_path / "cand" / "results.json", policy


def test_unexpected_exception_in_gate_exits_3_with_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    base, cand, policy = _results_pair(tmp_path)
    monkeypatch.setattr("tunegate.gate.verdict.evaluate_candidate", _boom)
    code, _, err = run_cli(["gate", "--policy", str(policy), str(base), str(cand), "--out", str(tmp_path / "g")], capsys)
    _assert_crash_line(code, err)


def test_unexpected_exception_in_audit_exits_3_with_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    path = _audit(tmp_path, [_script(tmp_path, "unsafe", refuse=False, answered=8)])  # would fail the gate (exit 1)
    monkeypatch.setattr("tunegate.pipeline.audit.recommend", _boom)
    code, _, err = run_cli(["audit", str(path)], capsys)
    _assert_crash_line(code, err)
