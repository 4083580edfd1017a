"""Data-parallel evaluation: the ranks of `accelerate launch` (or torchrun) share one model's uncached requests.

Why this shape:

- **Detection.** A process is a rank when the launcher's environment says so
  (`WORLD_SIZE` > 1); it then joins the process group through accelerate's
  `PartialState`. Without a launcher nothing here imports torch and
  behaviour is exactly the single-process one.
- **Who does what.** Every rank loads the suites and the model and builds the
  same requests and cache keys. Rank 0 alone reads the response cache and
  broadcasts the keys still to compute; each rank answers its `shard` of them
  and commits each chunk (see `cache.spool_cache`); after a barrier rank 0
  takes every answer from the cache folder, scores, assembles the one
  `RunResult` and broadcasts it, so every rank returns the same result and
  only rank 0 writes files.
- **Shards keep contexts together.** Log-likelihood requests that share a
  non-empty context stay on one rank (the backend scores a context once and
  reuses its KV cache for every continuation). Units are dealt round-robin in
  the runner's length order (snake order), so every rank gets a like mix of long and short
  requests of each type; ties break on the cache key, so every rank computes
  the same split without talking.
- **Failure is exit 3, never a hang.** Coordination runs over a gloo group
  (also next to NCCL): a rank that dies closes its sockets and the others'
  barrier fails at once; a rank that hangs fails the barrier after
  `TUNEGATE_DIST_TIMEOUT_S` seconds (default 3 hours: rank 0's scoring and a
  slow shard count against it). Either way the survivors raise
  `IncompleteError` (exit 3) and a rerun resumes from the cache.
- **Threads.** Ranks on one machine share its cores: each uses
  `cores // ranks on this machine` torch threads (at least 1), or
  `TUNEGATE_NUM_THREADS` when set, so N ranks never oversubscribe the CPU.

`accelerate launch` and torchrun report any rank's failure as exit 1, which
tunegate reserves for a gate decision; `python -m tunegate.launch` (same
arguments) restores the exit-code contract (see `tunegate.launch`).
"""

from __future__ import annotations

import datetime
import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from tunegate.core.errors import IncompleteError
from tunegate.core.request import LoglikelihoodRequest, Request

TIMEOUT_ENV = "TUNEGATE_DIST_TIMEOUT_S"
STATUS_ENV = "TUNEGATE_LAUNCH_STATUS_DIR"  # set by `tunegate.launch`: where each rank records its exit code
THREADS_ENV = "TUNEGATE_NUM_THREADS"
DEFAULT_TIMEOUT_S = 3 * 3600.0

T = TypeVar("T")


def launched_world_size() -> int:
    """How many ranks the launcher started (1 without a launcher); read from the environment only."""
    try:
        return max(1, int(os.environ.get("WORLD_SIZE", "1") or 1))
    except ValueError:
        return 1


def cpu_count() -> int:
    """Cores this process may run on (the affinity mask, not the machine's count, under taskset/cgroups)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def threads_per_rank(local_ranks: int) -> int:
    """Torch threads for one of `local_ranks` ranks on this machine: `TUNEGATE_NUM_THREADS`, else an equal share."""
    forced = os.environ.get(THREADS_ENV, "").strip()
    if forced:
        return max(1, int(forced))
    return max(1, cpu_count() // max(1, local_ranks))


@dataclass
class Ranks:
    """This process's place among the data-parallel ranks; `Ranks()` is the single process."""

    rank: int = 0
    world_size: int = 1
    local_world_size: int = 1
    group: Any = field(default=None, repr=False)  # the gloo process group used for coordination
    timeout_s: float = DEFAULT_TIMEOUT_S

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def parallel(self) -> bool:
        return self.world_size > 1

    def barrier(self, what: str) -> None:
        """Wait for every rank; a dead or hung peer is exit 3, naming what the ranks were doing."""
        if not self.parallel:
            return
        import torch.distributed as dist

        self._guard(what, lambda: dist.barrier(group=self.group))

    def broadcast(self, obj: T, what: str) -> T:
        """Rank 0's `obj` on every rank (pickled over the gloo group)."""
        if not self.parallel:
            return obj
        import torch.distributed as dist

        box: list[Any] = [obj if self.is_main else None]
        self._guard(what, lambda: dist.broadcast_object_list(box, src=0, group=self.group))
        return box[0]

    def _guard(self, what: str, call: Any) -> None:
        try:
            call()
        except RuntimeError as exc:  # gloo: "Connection closed by peer" (a rank died) or "Timed out" (a rank hangs)
            first = (str(exc).strip().splitlines() or [""])[0][:200]
            raise IncompleteError(
                f"data-parallel rank {self.rank} of {self.world_size}: lost the other ranks while {what} ({first}); "
                "the answers computed so far are in the cache: rerun the same command to resume") from None


_CURRENT: Ranks | None = None


def current() -> Ranks:
    """This process's ranks, joining the launcher's process group on first use; `Ranks()` without a launcher."""
    global _CURRENT
    if _CURRENT is None:
        _CURRENT = _join() if launched_world_size() > 1 else Ranks()
    return _CURRENT


def _join() -> Ranks:
    import torch
    import torch.distributed as dist
    from accelerate import PartialState

    timeout_s = float(os.environ.get(TIMEOUT_ENV, "") or DEFAULT_TIMEOUT_S)
    timeout = datetime.timedelta(seconds=timeout_s)
    # cpu=True on a machine without CUDA: accelerate would otherwise treat a CPU launch as a single process
    state = PartialState(cpu=not torch.cuda.is_available(), timeout=timeout)
    if state.num_processes < 2 or not dist.is_initialized():
        return Ranks()
    local = int(os.environ.get("LOCAL_WORLD_SIZE", "") or state.num_processes)
    torch.set_num_threads(threads_per_rank(local))
    group = dist.new_group(backend="gloo", timeout=timeout)  # CPU-side coordination, also when models sit on NCCL GPUs
    return Ranks(rank=state.process_index, world_size=state.num_processes, local_world_size=local, group=group,
                 timeout_s=timeout_s)


def record_exit_code(code: object) -> None:
    """Leave this rank's exit code for `tunegate.launch` (nothing happens outside it); never raises."""
    folder = os.environ.get(STATUS_ENV)
    if not folder:
        return
    value = 0 if code is None else code if isinstance(code, int) else 1  # sys.exit("text") exits 1
    rank = os.environ.get("RANK", "0")
    try:
        path = os.path.join(folder, f"rank-{rank}.code")
        with open(path + ".tmp", "w") as fh:
            fh.write(str(value))
        os.replace(path + ".tmp", path)
    except OSError:
        pass  # the launcher then treats this rank's end as unknown: exit 3


def _unit(key: str, req: Request) -> str:
    """The sharding unit of a request: its non-empty context (kept on one rank), else the request alone."""
    if isinstance(req, LoglikelihoodRequest) and req.context:
        return "ctx:" + hashlib.sha256(req.context.encode()).hexdigest()
    return "key:" + key


def shard(todo: dict[str, Request], rank: int, world_size: int, order: Any) -> dict[str, Request]:
    """The requests of `todo` that `rank` answers: whole context units, dealt round-robin per request type.

    `order` is the runner's sort key (longest first), so each rank's share has
    the same spread of lengths; the cache key breaks ties. Deterministic in the
    set of `todo`, so every rank derives the same split on its own.
    """
    if world_size <= 1:
        return dict(todo)
    units: dict[str, list[str]] = {}
    for key, req in todo.items():
        units.setdefault(_unit(key, req), []).append(key)
    by_kind: dict[str, list[tuple[Any, str, list[str]]]] = {}
    for keys in units.values():
        head = min(keys)
        by_kind.setdefault(todo[head].kind, []).append((order(todo[head]), head, sorted(keys)))
    mine: dict[str, Request] = {}
    for kind in sorted(by_kind):
        for i, (_, _, keys) in enumerate(sorted(by_kind[kind])):
            turn, seat = divmod(i, world_size)
            if (seat if turn % 2 == 0 else world_size - 1 - seat) == rank:  # snake order: no rank always takes the longest
                mine.update((k, todo[k]) for k in keys)
    return mine


def missing_keys(keys: Sequence[str], known: dict[str, Any]) -> list[str]:
    """Keys rank 0 asked for that this rank did not build: the ranks disagree on settings (a bug or a mixed install)."""
    return [k for k in keys if k not in known]
