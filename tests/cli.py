"""Run `tunegate ARGS` in-process as the console script does: its exit code and what it printed."""

from __future__ import annotations

import pytest

from tunegate.cli import main


def run_cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """(exit code, stdout, stderr); a command that returns without exiting counts as exit 0."""
    with pytest.raises(SystemExit) as exc:
        main(args)
        raise SystemExit(0)
    out = capsys.readouterr()
    return int(exc.value.code or 0), out.out, out.err


def run_cli_merged(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """(exit code, stdout + stderr)."""
    code, out, err = run_cli(args, capsys)
    return code, out + err
