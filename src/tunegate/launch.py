"""`python -m tunegate.launch ARGS`: `accelerate launch ARGS` with tunegate's exit codes.

Why it exists: `accelerate launch` (and torchrun under it) exits 1 when any
rank fails, whatever that rank's own code was, and tunegate reserves 1 for
"the gate failed". A rank that died, or a run that was bad input, would read
as a gate decision in CI. This wrapper runs the same launcher with the same
arguments, has every rank record its own exit code (see
`distributed.record_exit_code`, called by `tunegate.cli.main`) and exits with:

- 0 when the launcher succeeded;
- rank 0's code when rank 0 ended with a non-zero code of its own (1 gate
  failed, 2 bad input, 3 incomplete): rank 0 decides and writes the results;
- 3 otherwise: rank 0 was killed or never reported (a rank died and the
  launcher stopped the rest), an infrastructure failure.

On several machines, run it on each machine with that machine's
`--machine_rank`; the machine with rank 0 carries the verdict.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from tunegate.core.errors import ExitCode
from tunegate.run.distributed import STATUS_ENV


def read_codes(folder: Path) -> dict[int, int]:
    """rank -> the exit code it recorded (ranks that died before exiting recorded nothing)."""
    codes: dict[int, int] = {}
    for path in folder.glob("rank-*.code"):
        try:
            codes[int(path.name[len("rank-"):-len(".code")])] = int(path.read_text().strip())
        except (ValueError, OSError):
            continue
    return codes


def decide(launcher_code: int, codes: dict[int, int]) -> int:
    """The run's exit code from the launcher's and the ranks' own (see the module docstring)."""
    if launcher_code == 0:
        return int(ExitCode.PASS)
    main_code = codes.get(0)
    if main_code is not None and main_code != 0:
        return main_code
    return int(ExitCode.INCOMPLETE)


def main(argv: list[str] | None = None) -> int:
    """Run `accelerate launch` with `argv` and return tunegate's exit code for the whole run."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print("usage: python -m tunegate.launch [accelerate launch options] -m tunegate.cli run|audit ...\n"
              "Same arguments as `accelerate launch`; exits 0 pass, 1 gate failed, 2 bad input, 3 incomplete.")
        return int(ExitCode.PASS if args else ExitCode.BAD_INPUT)
    folder = Path(tempfile.mkdtemp(prefix="tunegate-launch-"))
    try:
        env = {**os.environ, STATUS_ENV: str(folder)}
        try:
            launcher = subprocess.run([sys.executable, "-m", "accelerate.commands.launch", *args], env=env, check=False)
        except KeyboardInterrupt:
            print("error: interrupted; rerun the same command to resume from the cache", file=sys.stderr)
            return int(ExitCode.INCOMPLETE)
        code = decide(launcher.returncode, read_codes(folder))
        if launcher.returncode != 0 and code == ExitCode.INCOMPLETE:
            print("error: run incomplete: a data-parallel rank failed (see its messages above); "
                  "rerun the same command to resume from the cache", file=sys.stderr)
        return code
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
