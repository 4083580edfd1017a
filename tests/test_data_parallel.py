"""Data-parallel evaluation (issue 17, item 2): ranks share the uncached requests and rank 0 writes one result.

The integration tests launch two CPU ranks (gloo) with `python -m
tunegate.launch --multi_gpu --num_processes 2` (accelerate's torchrun launcher;
`--cpu` would start a single process) on a tiny GPT-2 over a multiple-choice
suite (contexts shared by four choices) and a generation suite, and compare
with a single-process run: log-likelihoods within 1e-5, greedy text and every
score identical. A rank killed midway makes the run exit 3 and a rerun
resumes from what both ranks committed. The pieces (sharding, the spool hand
over, the exit-code decision, lost peers) are tested directly and fast.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tunegate.core.cache import ResponseCache, cache_key, spool_cache, spool_folder
from tunegate.core.errors import IncompleteError, UserError
from tunegate.core.request import GenerateRequest, LoglikelihoodRequest, Response
from tunegate.launch import decide
from tunegate.run import distributed
from tunegate.run.runner import _order

REPO = Path(__file__).resolve().parents[1]
SUITES = "support_mc,summaries"


# ---- the pieces -----------------------------------------------------------------
def _todo() -> dict[str, Any]:
    reqs: list[Any] = []
    for q in range(30):
        reqs += [LoglikelihoodRequest(context=f"Question {q}: {'why ' * (q % 7)}?", continuation=f" answer {c}") for c in range(4)]
    reqs += [LoglikelihoodRequest(context="", continuation=f"text {i} " * (i % 5 + 1)) for i in range(20)]
    reqs += [GenerateRequest(prompt=f"Prompt {i} " + "x" * (i % 11), max_new_tokens=16) for i in range(25)]
    return {cache_key("fp", {"backend": "t"}, r): r for r in reqs}


@pytest.mark.parametrize("world", [2, 3, 4])
def test_shards_partition_the_requests_keep_contexts_together_and_balance(world: int) -> None:
    todo = _todo()
    shards = [distributed.shard(todo, r, world, _order) for r in range(world)]
    assert sorted(k for s in shards for k in s) == sorted(todo)  # every request exactly once
    for s in shards:
        contexts = {r.context for r in s.values() if isinstance(r, LoglikelihoodRequest) and r.context}
        for other in shards:
            if other is not s:
                assert not contexts & {r.context for r in other.values() if isinstance(r, LoglikelihoodRequest)}
        for kind in ("loglikelihood", "generate"):
            n = sum(1 for r in s.values() if r.kind == kind)
            total = sum(1 for r in todo.values() if r.kind == kind)
            assert abs(n - total / world) <= 4 + 1  # off by at most one context unit (four choices) and one more
    # deterministic: another process (another dict order) derives the same split
    shuffled = dict(reversed(list(todo.items())))
    assert [sorted(distributed.shard(shuffled, r, world, _order)) for r in range(world)] == [sorted(s) for s in shards]


def test_single_process_is_unchanged() -> None:
    ranks = distributed.Ranks()
    assert ranks.is_main and not ranks.parallel
    assert ranks.broadcast(["a"], "x") == ["a"]
    ranks.barrier("x")  # no process group, nothing to wait for
    todo = _todo()
    assert distributed.shard(todo, 0, 1, _order) == todo


def test_a_lost_peer_is_exit_3_naming_the_step() -> None:
    def dead() -> None:
        raise RuntimeError("[gloo/transport/tcp/pair.cc:553] Connection closed by peer [127.0.0.1]:1234")

    ranks = distributed.Ranks(rank=1, world_size=2)
    with pytest.raises(IncompleteError, match=r"rank 1 of 2: lost the other ranks while answering .*Connection closed"):
        ranks._guard("answering", dead)


def test_threads_per_rank_share_the_cores(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(distributed.THREADS_ENV, raising=False)
    monkeypatch.setattr(distributed, "cpu_count", lambda: 16)
    assert [distributed.threads_per_rank(n) for n in (1, 2, 4, 32)] == [16, 8, 4, 1]
    monkeypatch.setenv(distributed.THREADS_ENV, "3")
    assert distributed.threads_per_rank(4) == 3


def test_spools_are_handed_to_rank_0_and_a_locked_one_is_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "cache" / "responses.sqlite"
    main = ResponseCache(path)
    done = spool_cache(path, rank=1)
    done.put_many([("k1", Response(kind="generate", text="one")), ("bad", Response(kind="generate", error="x"))])
    done.close()
    live = spool_cache(path, rank=2)  # a rank of another run still writing
    live.put_many([("k2", Response(kind="generate", text="two"))])
    assert main.absorb_spools() == 1
    assert set(main.get_many(["k1", "k2", "bad"])) == {"k1"}
    live.close()
    assert main.absorb_spools() == 1 and set(main.get_many(["k1", "k2"])) == {"k1", "k2"}
    assert list(spool_folder(path).iterdir()) == []  # nothing left behind
    main.close()


def test_data_parallel_without_a_cache_is_bad_input(monkeypatch: pytest.MonkeyPatch) -> None:
    from tunegate.run.evaluate import open_cache

    monkeypatch.setattr(distributed, "_CURRENT", distributed.Ranks(rank=0, world_size=2))
    with pytest.raises(UserError, match="drop --no-cache"):
        open_cache(None)


@pytest.mark.parametrize(("launcher", "codes", "want"), [
    (0, {0: 0, 1: 0}, 0),
    (1, {0: 1, 1: 0}, 1),   # the gate failed on rank 0
    (1, {0: 2, 1: 2}, 2),   # bad input, seen by every rank
    (1, {0: 3, 1: 0}, 3),
    (1, {1: 0}, 3),         # rank 0 killed by the launcher after a peer died
    (1, {}, 3),
    (1, {0: 0, 1: 3}, 3),   # rank 0 ended well but a rank failed: not a pass
])
def test_launch_exit_code_keeps_the_contract(launcher: int, codes: dict[int, int], want: int) -> None:
    assert decide(launcher, codes) == want


# ---- two real ranks -------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _launch(target: list[str], args: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "tunegate.launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
           "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(_free_port()), *target, *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=REPO,
                          env={**os.environ, "TUNEGATE_NUM_THREADS": "1", **(env or {})})


def _run_args(model: Path, out: Path, cache: Path) -> list[str]:
    return ["run", "--model", str(model), "--suites", SUITES, "--out", str(out), "--cache", str(cache)]


def _assert_same_results(want_path: Path, got_path: Path) -> None:
    want, got = json.loads(want_path.read_text()), json.loads(got_path.read_text())
    assert [s["name"] for s in got["suites"]] == [s["name"] for s in want["suites"]]
    assert got["cache"]["hits"] + got["cache"]["computed"] == want["cache"]["computed"]
    worst = 0.0
    for ws, gs in zip(want["suites"], got["suites"], strict=True):
        assert gs["counts"] == ws["counts"]
        for a, b in zip(ws["samples"], gs["samples"], strict=True):
            assert (a["sample"]["id"], a["status"]) == (b["sample"]["id"], b["status"])
            for ra, rb in zip(a["responses"], b["responses"], strict=True):
                assert rb.get("text") == ra.get("text")  # greedy text identical
                if ra.get("loglikelihood") is not None:
                    worst = max(worst, abs(ra["loglikelihood"] - rb["loglikelihood"]))
                    assert rb["is_greedy"] == ra["is_greedy"]
            assert [s["value"] for s in b["scores"]] == pytest.approx([s["value"] for s in a["scores"]], abs=1e-5)
        assert [m["value"] for m in gs["metrics"]] == pytest.approx([m["value"] for m in ws["metrics"]], abs=1e-5)
    assert worst <= 1e-5


def _run_in_process(args: list[str]) -> None:
    """`tunegate ARGS` in this process on one thread (as each rank has; two threads on a busy 2-core box crawl)."""
    import torch

    from tunegate.cli import main

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        main(args)
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def single(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The single-process reference run (no launcher)."""
    root = tmp_path_factory.mktemp("single")
    _run_in_process(_run_args(tiny_model_dir, root / "out", root / "cache.sqlite"))
    return root / "out" / "results.json"


@pytest.mark.slow
def test_two_ranks_write_one_result_equal_to_a_single_process(tiny_model_dir: Path, single: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    proc = _launch(["-m", "tunegate.cli"], _run_args(tiny_model_dir, out, tmp_path / "cache.sqlite"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("wrote ") == 1  # rank 0 alone reports
    assert sorted(p.name for p in out.iterdir() if p.name.startswith("results")) == ["results.json"]
    _assert_same_results(single, out / "results.json")
    got = json.loads((out / "results.json").read_text())
    assert got["provenance"]["processes"] == 2
    assert got["cache"] == {"hits": 0, "computed": json.loads(single.read_text())["cache"]["computed"]}
    # every answer landed in the one cache: a rerun (one process) computes nothing
    _run_in_process(_run_args(tiny_model_dir, tmp_path / "again", tmp_path / "cache.sqlite"))
    assert json.loads((tmp_path / "again" / "results.json").read_text())["cache"]["computed"] == 0


@pytest.mark.slow
def test_a_killed_rank_is_exit_3_and_the_rerun_resumes(tiny_model_dir: Path, single: Path, tmp_path: Path) -> None:
    out, cache = tmp_path / "out", tmp_path / "cache.sqlite"
    worker = str(REPO / "tests" / "dp_worker.py")
    proc = _launch([worker], _run_args(tiny_model_dir, out, cache), env={"TUNEGATE_TEST_DIE_RANK": "1"})
    assert proc.returncode == 3, proc.stderr[-3000:]
    assert "rerun the same command to resume" in proc.stderr
    assert not (out / "results.json").exists()  # nothing partial is presented as complete
    spooled = list(spool_folder(cache).glob("*.sqlite"))
    assert len(spooled) == 1  # the dead rank's two committed chunks wait for rank 0
    proc = _launch(["-m", "tunegate.cli"], _run_args(tiny_model_dir, out, cache))
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = json.loads((out / "results.json").read_text())
    assert got["cache"]["hits"] >= 16  # at least the dead rank's two chunks of 8, taken from its spool
    assert got["cache"]["computed"] > 0
    _assert_same_results(single, out / "results.json")
