"""A data-parallel rank for tests/test_data_parallel.py: `tunegate.cli.main` with a planted fault on one rank.

`TUNEGATE_TEST_DIE_RANK=r` makes rank r answer in chunks of 8 requests and
kill itself (SIGKILL: no cleanup, no exit code) when it starts its third chunk,
so its first two chunks are committed and the rest of its share is not. It
lives under tests/, so no installed tunegate carries it.
"""

from __future__ import annotations

import os
import signal
from typing import Any

if os.environ.get("RANK") is not None and os.environ.get("RANK") == os.environ.get("TUNEGATE_TEST_DIE_RANK"):
    import tunegate.run.runner as runner

    _chunks = runner._chunks
    _call = runner.Runner._call
    calls = {"n": 0}

    def small_chunks(items: Any, size: int) -> Any:
        return _chunks(items, 8)

    def dying_call(self: Any, call: Any, kind: str, reqs: list[Any]) -> Any:
        calls["n"] += 1
        if calls["n"] == 3:
            os.kill(os.getpid(), signal.SIGKILL)
        return _call(self, call, kind, reqs)

    runner._chunks = small_chunks  # type: ignore[assignment]
    runner.Runner._call = dying_call  # type: ignore[method-assign]

from tunegate.cli import main  # noqa: E402

if __name__ == "__main__":
    main()
