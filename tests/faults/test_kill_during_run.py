"""kill -9 in the middle of a run: the rerun resumes from the cache and ends with identical results.

A KeyboardInterrupt test (tests/test_runner.py) exercises the clean path; this
one kills a separate process with SIGKILL while a backend call is in flight,
after at least one chunk was committed, so nothing gets to clean up.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from tests.kinds import write_suite

ROWS = [{"id": f"q{i}", "prompt": f"Question {i}?", "target": f"answer {i}"} for i in range(24)]

CHILD = """
import json, sys, time
from tests.kinds import register
from tunegate.backends.mock import MockBackend
from tunegate.run.evaluate import evaluate
from tunegate.run.runner import RunOptions

register()
suite, cache, out, delay = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])

class Slow(MockBackend):
    def generate(self, requests):
        time.sleep(delay)  # a forward pass in flight when the kill lands
        return super().generate(requests)

backend = Slow.scripted(label="slow", default_text="answer 3", rules=[["Question 1?", "answer 1"]])
result = evaluate(backend.spec, [suite], backend=backend, cache_path=__import__("pathlib").Path(cache),
                  options=RunOptions(chunk_size=4, progress=False))
result.save(__import__("pathlib").Path(out))
"""


def _child(suite: Path, cache: Path, out: Path, delay: float) -> subprocess.Popen[bytes]:
    repo = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": str(repo)}
    return subprocess.Popen([sys.executable, "-c", CHILD, str(suite), str(cache), str(out), str(delay)], cwd=repo, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _committed(cache: Path) -> int:
    if not cache.is_file():
        return 0
    try:
        with sqlite3.connect(str(cache), timeout=5) as db:
            return int(db.execute("SELECT COUNT(*) FROM responses").fetchone()[0])
    except sqlite3.OperationalError:  # table not created yet
        return 0


def _comparable(path: Path) -> list[dict[str, object]]:
    data = json.loads(path.read_text())
    return [{"id": s["sample"]["id"], "status": s["status"], "scores": s["scores"],
             "texts": [r.get("text") for r in s["responses"]]} for suite in data["suites"] for s in suite["samples"]]


def test_sigkill_mid_run_then_rerun_gives_identical_results(tmp_path: Path) -> None:
    suite = write_suite(tmp_path / "suite", ROWS)
    reference = tmp_path / "reference.json"
    ref = _child(suite, tmp_path / "ref.sqlite", reference, 0.0)
    assert ref.wait(timeout=120) == 0, ref.stderr.read() if ref.stderr else ""

    cache = tmp_path / "cache.sqlite"
    out = tmp_path / "killed.json"
    proc = _child(suite, cache, out, 0.3)
    deadline = time.monotonic() + 60
    while _committed(cache) < 4 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert proc.poll() is None, "the run finished before it could be killed; raise the delay"
    committed = _committed(cache)
    total = json.loads(reference.read_text())["cache"]["computed"]
    assert 4 <= committed < total
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert not out.exists()  # nothing partial presented as a result

    resumed = _child(suite, cache, out, 0.0)
    assert resumed.wait(timeout=120) == 0, resumed.stderr.read() if resumed.stderr else ""
    data = json.loads(out.read_text())
    assert data["cache"]["hits"] >= committed and data["cache"]["hits"] + data["cache"]["computed"] == total
    assert _comparable(out) == _comparable(reference)
