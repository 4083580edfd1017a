"""Plugin discovery through entry points.

Built-in suites, scorers and backends are registered in the project's own
pyproject exactly as a third-party package would register its own, so every
test run exercises the path a plugin author takes. `register()` adds a plugin
in-process (tests, notebooks) without packaging.
"""

from __future__ import annotations

from importlib.metadata import entry_points
from typing import Any

from tunegate.core.errors import UserError

GROUPS = {"backends": "tunegate.backends", "suites": "tunegate.suites", "scorers": "tunegate.scorers"}

_extra: dict[str, dict[str, Any]] = {g: {} for g in GROUPS}


def _entry_points(group: str) -> dict[str, Any]:
    return {ep.name: ep for ep in entry_points(group=GROUPS[group])}


def names(group: str) -> list[str]:
    """Every registered plugin name in `group`, sorted."""
    return sorted(set(_entry_points(group)) | set(_extra[group]))


def describe(group: str) -> list[dict[str, str]]:
    """Name and import target of each plugin, for `tunegate plugins` (nothing imported)."""
    rows = [
        {"group": group, "name": n, "target": ep.value, "package": ep.dist.name if ep.dist else "?"}
        for n, ep in _entry_points(group).items()
    ]
    rows += [
        {"group": group, "name": n, "target": f"{obj.__module__}.{obj.__qualname__}", "package": "(in-process)"}
        for n, obj in _extra[group].items()
    ]
    return sorted(rows, key=lambda r: r["name"])


def load(group: str, name: str) -> Any:
    """Import and return the plugin class `name` of `group`, or a UserError listing the valid names."""
    if name in _extra[group]:
        return _extra[group][name]
    eps = _entry_points(group)
    if name not in eps:
        kind = group[:-1]
        raise UserError(f"unknown {kind} {name!r}; installed {group}: {', '.join(names(group)) or '(none)'}")
    return eps[name].load()


def register(group: str, name: str, obj: Any) -> None:
    """Register a plugin in-process (takes precedence over an entry point of that name)."""
    _extra[group][name] = obj


def unregister(group: str, name: str) -> None:
    _extra[group].pop(name, None)
