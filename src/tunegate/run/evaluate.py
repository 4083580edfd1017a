"""The public entry point for evaluating one model: `evaluate(spec, suite_refs)`.

The CLI, the audit and notebooks all come through here, so validation happens
in one order everywhere: suites and their data first, then the model spec, and
only then does a model load.

Under a data-parallel launch (`tunegate.run.distributed`) every rank comes through
here too: rank 0 opens the response cache, the other ranks a spool of their
own beside it, and every rank returns the same `RunResult` (only rank 0 should
write it; `is_main_process()` says which).
"""

from __future__ import annotations

from pathlib import Path

from tunegate.backends.base import Backend, backend_class
from tunegate.core.cache import ResponseCache, default_cache_path, spool_cache
from tunegate.core.errors import UserError
from tunegate.core.model_spec import ModelSpec
from tunegate.core.results import RunResult
from tunegate.run import distributed
from tunegate.run.runner import Runner, RunOptions
from tunegate.run.suite_loader import load_suites
from tunegate.suites.base import SuiteKind


def is_main_process() -> bool:
    """False on the data-parallel ranks other than 0: they compute, but write no results and print no summary."""
    return distributed.current().is_main


def load_backend(spec: ModelSpec) -> Backend:
    """Check the spec, then load the model (the expensive step); a data-parallel rank joins its peers first."""
    cls = backend_class(spec)
    cls.check(spec)
    distributed.current()  # sets this rank's thread share and GPU before the model loads
    return cls(spec)


def open_cache(path: Path | None) -> ResponseCache:
    """The response cache of this process: the cache itself, or on a data-parallel rank other than 0 its spool."""
    ranks = distributed.current()
    if not ranks.parallel:
        return ResponseCache(path)
    if path is None:
        raise UserError("a data-parallel run hands the ranks' answers to rank 0 through the response cache; "
                        "drop --no-cache (give --cache PATH on a filesystem every machine shares)")
    return ResponseCache(path) if ranks.is_main else spool_cache(path, ranks.rank)


def evaluate(
    spec: ModelSpec,
    suites: list[str] | list[SuiteKind],
    *,
    cache_path: Path | None | bool = True,
    options: RunOptions | None = None,
    backend: Backend | None = None,
) -> RunResult:
    """Run `suites` (names, paths or loaded kinds) against the model of `spec`.

    `cache_path=True` uses the default cache, `None`/`False` disables caching.
    Pass `backend` to reuse an already loaded model.
    """
    loaded = [s for s in suites if isinstance(s, SuiteKind)]
    refs = [s for s in suites if not isinstance(s, SuiteKind)]
    loaded += load_suites(refs) if refs else []
    if backend is None:
        backend_class(spec).check(spec)
        backend = load_backend(spec)
    if cache_path is True:
        cache_path = default_cache_path()
    cache = open_cache(cache_path or None)
    options = options or RunOptions()
    if not options.config:
        options.config = {
            "model": spec.model_dump(mode="json"),
            "suites": [{"name": s.config.name, "config_hash": s.config_hash()} for s in loaded],
            "seed": options.seed,
        }
    try:
        return Runner(backend, loaded, cache, options).run()
    finally:
        cache.close()
