"""SQLite response cache keyed by (model fingerprint, backend settings, library versions, request content).

Responses are committed chunk by chunk as the runner gets them, so a run that is
killed midway resumes from here and ends with the same results as an
uninterrupted one. Error responses are never cached: a retry recomputes them.

An upgrade never serves stale answers as fresh: the key holds the backend's
`implementation_version` (in its settings, see `Backend`) and the installed
versions of the packages that change numerics (`NUMERICS_PACKAGES`: torch,
transformers, peft, tokenizers; a backend may name its own subset, the
`openai` backend none). Changing any of them is a cache miss.

Several processes: SQLite's own locking makes concurrent readers and writers
of one cache file safe on a local filesystem (WAL journal, a 60 s busy
timeout). Data-parallel ranks do not rely on it, because WAL does not work on
network filesystems, where the cache of a multi-machine run lives: only rank 0
opens the cache file, and every other rank commits its answers to a spool of
its own (`spool_cache`: one writer, rollback journal, beside the cache file in
`<cache>.spool/`), which rank 0 folds into the cache after the ranks meet
(`absorb_spools`) and again at the start of the next run, so the answers of a
rank that died are not lost.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import socket
import sqlite3
import sys
from collections.abc import Iterable
from functools import lru_cache
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import IO, Any

from tunegate.core.request import GenerateRequest, LoglikelihoodRequest, Response


def default_cache_path() -> Path:
    root = os.environ.get("TUNEGATE_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "tunegate"
    )
    return Path(root) / "responses.sqlite"


#: packages whose version changes a model's numbers (kernels, modelling code, adapter merging, tokenisation)
NUMERICS_PACKAGES = ("torch", "transformers", "peft", "tokenizers")


def package_version(name: str) -> str | None:
    """The installed version of `name`, or None when it is not installed."""
    try:
        return version(name)
    except PackageNotFoundError:
        return None


@lru_cache(maxsize=16)
def numerics_versions(packages: tuple[str, ...] = NUMERICS_PACKAGES) -> tuple[tuple[str, str | None], ...]:
    """(package, installed version or None) for each of `packages`; read once per process."""
    return tuple((name, package_version(name)) for name in packages)


def cache_key(fingerprint: str, settings: dict[str, Any], request: LoglikelihoodRequest | GenerateRequest) -> str:
    """The key of one request's answer from one model served one way by one installation.

    `settings` is the backend's (it carries `implementation_version`); a backend
    whose numbers do not come from the local libraries (an HTTP API) lists the
    packages that matter to it in `settings["numerics_packages"]` (empty: none).
    """
    packages = tuple(settings.get("numerics_packages", NUMERICS_PACKAGES))
    payload = json.dumps({"fp": fingerprint, "settings": settings, "libs": dict(numerics_versions(packages)),
                          "req": request.key()}, sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()


class ResponseCache:
    """A small key -> Response JSON store. `path=None` disables caching (nothing persists).

    `wal=False` keeps SQLite's rollback journal: the choice for a spool, which
    has one writer and may sit on a network filesystem.
    """

    def __init__(self, path: Path | None, *, wal: bool = True) -> None:
        self.path = path
        self._mem: dict[str, str] = {}
        self._db: sqlite3.Connection | None = None
        self._lock: IO[str] | None = None
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(str(path), timeout=60)
            if wal:
                self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("CREATE TABLE IF NOT EXISTS responses (key TEXT PRIMARY KEY, response TEXT NOT NULL)")
            self._db.commit()

    def get_many(self, keys: Iterable[str]) -> dict[str, Response]:
        keys = list(dict.fromkeys(keys))
        found: dict[str, str] = {}
        if self._db is None:
            found = {k: self._mem[k] for k in keys if k in self._mem}
        else:
            for i in range(0, len(keys), 500):
                chunk = keys[i : i + 500]
                marks = ",".join("?" * len(chunk))
                for k, v in self._db.execute(f"SELECT key, response FROM responses WHERE key IN ({marks})", chunk):
                    found[k] = v
        return {k: Response.model_validate_json(v).model_copy(update={"cached": True}) for k, v in found.items()}

    def put_many(self, items: Iterable[tuple[str, Response]]) -> None:
        rows = [(k, r.model_copy(update={"cached": False}).model_dump_json()) for k, r in items if r.ok]
        if not rows:
            return
        if self._db is None:
            self._mem.update(rows)
            return
        with self._db:
            self._db.executemany("INSERT OR REPLACE INTO responses (key, response) VALUES (?, ?)", rows)

    def absorb_spools(self) -> int:
        """Fold every finished spool beside this cache into it and delete the spool; returns the rows taken.

        A spool whose writer still holds its lock (a live rank of another run
        sharing this cache folder) is left alone. Only the process that owns
        the cache calls this (rank 0), while no rank of its own run writes.
        """
        if self.path is None or self._db is None:
            return 0
        folder = spool_folder(self.path)
        taken = 0
        for spool in sorted(folder.glob("*.sqlite")) if folder.is_dir() else []:
            lock_path = spool.with_suffix(".lock")
            with open(lock_path, "a") as lock:
                try:
                    fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except OSError:
                    continue  # still being written
                try:
                    src = sqlite3.connect(str(spool), timeout=60)
                    try:
                        rows = list(src.execute("SELECT key, response FROM responses"))
                    finally:
                        src.close()
                except sqlite3.DatabaseError as exc:  # a spool cut short by a crash before its first commit
                    print(f"warning: skipping unreadable response spool {spool}: {exc}", file=sys.stderr)
                    rows = []
                with self._db:
                    self._db.executemany("INSERT OR IGNORE INTO responses (key, response) VALUES (?, ?)", rows)
                taken += len(rows)
                for leftover in (spool, spool.with_name(spool.name + "-journal"), lock_path):
                    with contextlib.suppress(FileNotFoundError):
                        leftover.unlink()
        return taken

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None
        if self._lock is not None:
            self._lock.close()  # releases the spool's lock: rank 0 may take it now
            self._lock = None


def spool_folder(cache_path: Path) -> Path:
    """Where the data-parallel ranks of runs on `cache_path` leave their answers for rank 0."""
    return cache_path.with_name(cache_path.name + ".spool")


def spool_cache(cache_path: Path, rank: int) -> ResponseCache:
    """A fresh spool for one rank's answers, locked while this process writes it (one writer, no WAL)."""
    folder = spool_folder(cache_path)
    folder.mkdir(parents=True, exist_ok=True)
    stem = f"rank{rank}-{socket.gethostname()}-{os.getpid()}"
    lock = open(folder / f"{stem}.lock", "a")  # noqa: SIM115 - held until the spool closes
    fcntl.flock(lock, fcntl.LOCK_EX)
    cache = ResponseCache(folder / f"{stem}.sqlite", wal=False)
    cache._lock = lock
    return cache
