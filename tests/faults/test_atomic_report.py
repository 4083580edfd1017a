"""The report set is written as one unit (issue 14, item 8).

A kill while the four files are written used to leave comparison.json saying
FAIL next to an older report.html saying PASS, and stray .tmp files. Now every
write goes through a temp folder and a completion marker (`out/.complete`,
removed first, written last). These tests kill writers with SIGKILL, at every
file operation of the write and at random moments of real `tunegate gate`
runs, and check that afterwards either a complete set (the old one or the new
one, never a mix) is there and verifiable, or every reader refuses it.

Kill points are injected in forked children of one driver process, so the
imports are paid once and the test stays fast.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.report.factory import binary, run_result, suite_result
from tunegate.cli import main
from tunegate.compare.comparison import compare_runs
from tunegate.compare.models import CompareSettings, Comparison
from tunegate.core.config import GateRule, Policy
from tunegate.core.errors import UserError
from tunegate.core.report_marker import REPORT_MARKER, verify_report_set
from tunegate.core.results import RunResult
from tunegate.gate.verdict import evaluate_policy
from tunegate.pipeline.commands import gate_and_write, rerender
from tunegate.report import OUTPUTS, TEMP_PREFIX, write_outputs, write_report_set

ACC = {"acc": ("binary", "higher", "mean")}
REPO = Path(__file__).resolve().parents[2]
POLICY = "name: atomic\nrules:\n  - metric: qa/acc\n    max_regression: 0.1\n"

# Runs in a fresh interpreter; forks one child per kill point, so each child is killed mid-write by SIGKILL.
DRIVER = r'''
import json, os, random, shutil, signal, sys, time
from pathlib import Path
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
import tunegate.report as report
import tunegate.report.context, tunegate.report.html, tunegate.report.junit, tunegate.report.markdown  # noqa
from tunegate.compare.models import Comparison
from tunegate.cli import main

args = json.loads(sys.argv[1])
HOOKED = ("replace", "unlink", "fsync", "rmdir", "mkdir")


def arm(kill_at):
    """Count file operations; SIGKILL this process just before operation number `kill_at` (0: never)."""
    count = [0]
    for name in HOOKED:
        real = getattr(os, name)

        def hooked(*a, _real=real, **k):
            count[0] += 1
            if count[0] == kill_at:
                os.kill(os.getpid(), signal.SIGKILL)
            return _real(*a, **k)

        setattr(os, name, hooked)
    return count


def child(fn):
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            fn()
        except SystemExit as exc:
            code = int(exc.code or 0)
        except BaseException:
            code = 99
        os._exit(code)
    return pid


def status(ws):
    return {"signal": os.WTERMSIG(ws)} if os.WIFSIGNALED(ws) else {"exit": os.WEXITSTATUS(ws)}


out = {}
if args["mode"] == "steps":
    # render the new set once (write_outputs renders everything before its first file operation),
    # then kill children in the middle of writing it over a copy of the old set
    root = Path(args["root"])
    shutil.copytree(args["old"], root / "new")
    report.write_outputs(Comparison.load(Path(args["comparison"])), root / "new", {})
    files = {name: (root / "new" / name).read_bytes() for name in report.OUTPUTS}

    def count_run():  # one unkilled write, in a child like the others, tells how many operations a write makes
        count = arm(0)
        report.write_report_set(root / "count", files)
        (root / "ops.txt").write_text(str(count[0]))

    shutil.copytree(args["old"], root / "count")
    os.waitpid(child(count_run), 0)
    ops = int((root / "ops.txt").read_text())
    out["ops"], out["runs"] = ops, {}
    for n in range(1, ops + 1):
        folder = root / f"kill-{n}"
        shutil.copytree(args["old"], folder)
        _, ws = os.waitpid(child(lambda n=n, folder=folder: (arm(n), report.write_report_set(folder, files))), 0)
        out["runs"][n] = status(ws)
else:  # "gate": real gate runs, killed at random moments
    rng = random.Random(args["seed"])
    gate = ["gate", "--policy", args["policy"], args["base"], args["cand"], "--resamples", "100", "--out"]
    folder = Path(args["root"]) / "timing"
    shutil.copytree(args["old"], folder)
    t0 = time.perf_counter()
    _, ws = os.waitpid(child(lambda: main(gate + [str(folder)])), 0)
    took = time.perf_counter() - t0
    out["timing"], out["took"], out["runs"] = status(ws), took, {}
    for i in range(args["n"]):
        folder = Path(args["root"]) / f"gate-{i}"
        shutil.copytree(args["old"], folder)
        delay = rng.uniform(0.0, 1.2 * took)
        pid = child(lambda folder=folder: main(gate + [str(folder)]))
        time.sleep(delay)
        os.kill(pid, signal.SIGKILL)
        _, ws = os.waitpid(pid, 0)
        out["runs"][i] = dict(status(ws), delay=delay)
print(json.dumps(out))
'''


def _drive(args: dict[str, object]) -> dict[str, object]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "src"), str(REPO)]), "OPENBLAS_NUM_THREADS": "1",
           "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-c", DRIVER, json.dumps(args)], capture_output=True, text=True, timeout=240,
                          env=env, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def _runs(fail: bool) -> tuple[RunResult, RunResult]:
    base = run_result("base", [suite_result("qa", {"acc": binary("1" * 30)}, kinds=ACC)])
    cand = run_result("cand", [suite_result("qa", {"acc": binary(("0" if fail else "1") * 30)}, kinds=ACC)])
    return base, cand


def _gated(fail: bool) -> Comparison:
    base, cand = _runs(fail)
    comparison = compare_runs(base, [cand], CompareSettings(n_resamples=200))
    evaluate_policy(Policy(name="atomic", rules=[GateRule(metric="qa/acc", max_regression=0.1)]), comparison)
    return comparison


def _status(folder: Path) -> str | None:
    verdict = json.loads((folder / "comparison.json").read_text())["verdict"]
    return None if verdict is None else str(verdict["status"])


def _contents(folder: Path) -> dict[str, bytes | None]:
    return {n: (folder / n).read_bytes() if (folder / n).is_file() else None for n in OUTPUTS}


def _loads(folder: Path) -> Comparison | None:
    """What a reader gets: the comparison, or None when it refuses (and then with the documented message)."""
    try:
        return Comparison.load(folder)
    except UserError as exc:
        assert "incomplete report set" in exc.message and "rerun" in exc.message, exc.message
        return None


def _no_leftovers(folder: Path) -> None:
    stray = [p.name for p in folder.iterdir() if p.name.startswith(TEMP_PREFIX) or p.name.endswith(".tmp")]
    assert not stray, stray


def test_a_complete_write_is_verifiable_and_leaves_nothing_behind(tmp_path: Path) -> None:
    (tmp_path / ".report-deadbeef").mkdir()  # what a killed write leaves
    (tmp_path / ".report-deadbeef" / "report.html").write_text("half")
    (tmp_path / ".report.html.x1y2.tmp").write_text("half")  # what the old per-file writes left
    (tmp_path / "runs").mkdir()  # an audit's other content is left alone
    write_outputs(_gated(fail=True), tmp_path, {})
    _no_leftovers(tmp_path)
    assert (tmp_path / "runs").is_dir()
    digests = verify_report_set(tmp_path, require_all=True)
    assert set(digests) == set(OUTPUTS)
    marker = json.loads((tmp_path / REPORT_MARKER).read_text())
    assert marker["files"] == digests
    assert _loads(tmp_path) is not None


def test_readers_refuse_a_mix_a_missing_marker_and_a_legacy_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    old, new = tmp_path / "old", tmp_path / "new"
    write_outputs(_gated(fail=False), old, {})
    write_outputs(_gated(fail=True), new, {})
    # the incident: comparison.json says FAIL next to a report.html that says PASS
    mixed = tmp_path / "mixed"
    shutil.copytree(old, mixed)
    shutil.copy(new / "comparison.json", mixed / "comparison.json")
    assert _loads(mixed) is None
    with pytest.raises(UserError, match=r"comparison.json does not match the completed set"):
        rerender(mixed)
    # no marker (killed between removing it and writing the new one, or written by an older tunegate)
    (new / REPORT_MARKER).unlink()
    assert _loads(new) is None
    with pytest.raises(SystemExit) as exc:
        main(["report", str(new)])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and err.count("\n") == 1 and "incomplete report set" in err and "rerun" in err
    # a derived file deleted by hand is fine: `tunegate report` writes it again from comparison.json
    (old / "report.html").unlink()
    assert _loads(old) is not None
    with pytest.raises(UserError, match="report.html is missing"):
        verify_report_set(old, require_all=True)
    rerender(old)
    verify_report_set(old, require_all=True)


def test_kill_at_every_file_operation_of_a_write(tmp_path: Path) -> None:
    """SIGKILL just before each file operation of a write: the old set, the new set, or a refusal; never a mix."""
    old_ref = tmp_path / "old"
    write_outputs(_gated(fail=False), old_ref, {})
    new = _gated(fail=True)
    new.save(tmp_path / "new-comparison.json")
    old_bytes = _contents(old_ref)
    statuses = {"old": _status(old_ref), "new": new.verdict.status if new.verdict else None}
    assert statuses["new"] == "fail" != statuses["old"]  # the incident's shape: a FAIL written over a non-failing set
    report = _drive({"mode": "steps", "comparison": str(tmp_path / "new-comparison.json"), "old": str(old_ref),
                     "root": str(tmp_path)})
    ops = int(report["ops"])  # type: ignore[call-overload]
    assert ops >= 2 * len(OUTPUTS)  # the files, their fsyncs, the marker, the renames
    new_bytes = _contents(tmp_path / "new")
    assert new_bytes != old_bytes and None not in new_bytes.values()
    verify_report_set(tmp_path / "new", require_all=True)

    seen = set()
    runs: dict[str, dict[str, int]] = report["runs"]  # type: ignore[assignment]
    for n in range(1, ops + 1):
        folder = tmp_path / f"kill-{n}"
        assert runs[str(n)] == {"signal": signal.SIGKILL}, (n, runs[str(n)])
        files = _contents(folder)
        state = "old" if files == old_bytes else "new" if files == new_bytes else "mixed"
        loaded = _loads(folder)
        if loaded is None:
            seen.add("refused")
        else:
            assert state in ("old", "new"), f"kill point {n}: a mix of two writes was accepted as complete"
            assert loaded.verdict is not None and loaded.verdict.status == statuses[state]
            verify_report_set(folder, require_all=True)
            seen.add(state)
        # the next write recovers: no stray temp folder, a complete set
        write_report_set(folder, {name: new_bytes[name] or b"" for name in OUTPUTS})
        _no_leftovers(folder)
        assert _contents(folder) == new_bytes
    assert seen == {"old", "refused", "new"}, seen  # the kill points spanned the whole protocol


def test_random_kills_of_real_gate_runs(tmp_path: Path) -> None:
    """`tunegate gate` (FAIL) over a folder holding a PASS set, SIGKILLed at random moments, 10 times."""
    base, good = _runs(fail=False)
    _, bad = _runs(fail=True)
    for name, run in (("base", base), ("good", good), ("bad", bad)):
        run.save(tmp_path / f"{name}.json")
    (tmp_path / "policy.yaml").write_text(POLICY)
    old_ref = tmp_path / "old"
    gate_and_write(tmp_path / "policy.yaml", tmp_path / "base.json", [tmp_path / "good.json"], old_ref,
                   settings=CompareSettings(n_resamples=100))
    old_bytes, old_status = _contents(old_ref), _status(old_ref)
    assert old_status != "fail"
    seed = int(time.time())
    report = _drive({"mode": "gate", "policy": str(tmp_path / "policy.yaml"), "base": str(tmp_path / "base.json"),
                     "cand": str(tmp_path / "bad.json"), "old": str(old_ref), "root": str(tmp_path), "n": 10, "seed": seed})
    assert report["timing"] == {"exit": 1}, report  # an unkilled run: the gate fails the bad candidate
    runs: dict[str, dict[str, float]] = report["runs"]  # type: ignore[assignment]
    for i in range(10):
        folder = tmp_path / f"gate-{i}"
        why = f"seed {seed}, run {i}: {runs[str(i)]}"
        loaded = _loads(folder)
        if loaded is None:
            continue
        files = _contents(folder)
        if files == old_bytes:
            assert loaded.verdict is not None and loaded.verdict.status == old_status, why
            continue
        # otherwise it must be the whole new set, every file telling the same verdict
        verify_report_set(folder, require_all=True)
        assert loaded.verdict is not None and loaded.verdict.status == "fail", why
        assert 'class="banner fail"' in (files["report.html"] or b"").decode(), why
        assert "## tunegate gate: FAIL" in (files["summary.md"] or b"").decode(), why
        assert "<failure" in (files["junit.xml"] or b"").decode(), why


def test_kill_of_a_gate_process_while_it_writes(tmp_path: Path) -> None:
    """A fresh `python -m tunegate.cli gate` process, SIGKILLed the moment its temp folder appears."""
    base, good = _runs(fail=False)
    _, bad = _runs(fail=True)
    for name, run in (("base", base), ("good", good), ("bad", bad)):
        run.save(tmp_path / f"{name}.json")
    (tmp_path / "policy.yaml").write_text(POLICY)
    out = tmp_path / "out"
    gate_and_write(tmp_path / "policy.yaml", tmp_path / "base.json", [tmp_path / "good.json"], out,
                   settings=CompareSettings(n_resamples=100))
    old_bytes = _contents(out)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "src"), str(REPO)])}
    proc = subprocess.Popen([sys.executable, "-m", "tunegate.cli", "gate", "--policy", str(tmp_path / "policy.yaml"),
                             str(tmp_path / "base.json"), str(tmp_path / "bad.json"), "--out", str(out), "--resamples", "100"],
                            env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while proc.poll() is None and time.monotonic() < deadline:
        if any(p.name.startswith(TEMP_PREFIX) for p in out.iterdir()):
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.0002)
    code = proc.wait(timeout=60)
    assert code in (1, -signal.SIGKILL), code
    loaded = _loads(out)
    if loaded is not None and _contents(out) != old_bytes:
        verify_report_set(out, require_all=True)  # not the old set, so it must be the whole new one
        assert loaded.verdict is not None and loaded.verdict.status == "fail"
    write_outputs(_gated(fail=True), out, {})  # the next write cleans up whatever the kill left
    _no_leftovers(out)
    verify_report_set(out, require_all=True)
