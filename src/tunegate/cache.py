"""SQLite response cache keyed by (model fingerprint, backend settings, library versions, request content).

Responses are committed chunk by chunk as the runner gets them, so a run that is
killed midway resumes from here and ends with the same results as an
uninterrupted one. Error responses are never cached: a retry recomputes them.

An upgrade never serves stale answers as fresh: the key holds the backend's
`implementation_version` (in its settings, see `Backend`) and the installed
versions of the packages that change numerics (`NUMERICS_PACKAGES`: torch,
transformers, peft, tokenizers; a backend may name its own subset, the
`openai` backend none). Changing any of them is a cache miss.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
from collections.abc import Iterable
from functools import lru_cache
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from tunegate.request import GenerateRequest, LoglikelihoodRequest, Response


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
    """A small key -> Response JSON store. `path=None` disables caching (nothing persists)."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._mem: dict[str, str] = {}
        self._db: sqlite3.Connection | None = None
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(str(path), timeout=60)
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

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None
