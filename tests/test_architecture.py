"""The layout's rules, checked over the source: stages import downwards only, never another stage's
private modules, and the import graph has no cycles (docs/architecture.md).

Every `import` counts, including the ones inside functions: a lazy import still
couples two modules, and hiding a cycle inside a function is how the old
config <-> finetune.recipe cycle survived. Only `if TYPE_CHECKING:` blocks are
left out, since they never run.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

import tunegate

SRC = Path(tunegate.__file__).resolve().parent

#: the stages, top to bottom: a module may import its own stage and any stage below it, nothing above
STAGES = ("entry", "pipeline", "report", "gate", "compare", "run", "suites", "scorers", "backends", "finetune", "core")


def module_name(path: Path) -> str:
    parts = ("tunegate", *path.relative_to(SRC).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def stage_of(module: str) -> str:
    """`tunegate.<stage>...`; the package root, cli.py and launch.py are the entry layer above every stage."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in STAGES else "entry"


def _type_checking_block(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)


def imports_of(path: Path) -> Iterator[tuple[str, int]]:
    """(imported tunegate module, line) for every import that runs, `from pkg import mod` resolved to the module."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skip = {id(n) for block in ast.walk(tree) if _type_checking_block(block) for n in ast.walk(block)}
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "tunegate":
                    yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom) and node.level > 0:
            raise AssertionError(f"{path}:{node.lineno}: relative import; the project imports absolutely, so the "
                                 "layering and cycle checks see every edge")
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "tunegate":
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                yield (sub if sub in MODULES else node.module), node.lineno


MODULES = {module_name(p): p for p in SRC.rglob("*.py")}
GRAPH = {mod: sorted(set(imports_of(path))) for mod, path in MODULES.items()}


def test_every_module_belongs_to_a_stage_or_the_entry_layer() -> None:
    entry = sorted(m for m in MODULES if stage_of(m) == "entry")
    assert entry == ["tunegate", "tunegate.cli", "tunegate.launch"]


def test_stages_import_downwards_only() -> None:
    upward = [f"{mod} ({stage_of(mod)}) imports {target} ({stage_of(target)}) on line {line}"
              for mod, targets in GRAPH.items() for target, line in targets
              if STAGES.index(stage_of(target)) < STAGES.index(stage_of(mod))]
    assert upward == []


def test_no_stage_imports_another_stages_private_modules() -> None:
    private = [f"{mod} imports {target} on line {line}" for mod, targets in GRAPH.items() for target, line in targets
               if stage_of(target) != stage_of(mod) and any(p.startswith("_") for p in target.split(".")[1:])]
    assert private == []


def test_the_import_graph_has_no_cycles() -> None:
    """Depth-first search over module -> imported module. Importing `a.b.c` first runs the package `a.b`'s
    __init__, so that is an edge too: a package whose __init__ imports a child that imports a sibling through the
    package closes a cycle."""
    edges = {mod: {t for t, _ in targets if t in MODULES and t != mod} for mod, targets in GRAPH.items()}
    for mod, targets in edges.items():
        for target in list(targets):
            parts = target.split(".")
            targets |= {p for i in range(2, len(parts)) if (p := ".".join(parts[:i])) in MODULES
                        and p != mod and not mod.startswith(p + ".")}
    state: dict[str, int] = {}
    cycles: list[list[str]] = []

    def visit(mod: str, path: list[str]) -> None:
        state[mod] = 1
        for nxt in sorted(edges[mod]):
            if state.get(nxt) == 1:
                cycles.append([*path[path.index(nxt):], nxt])
            elif nxt not in state:
                visit(nxt, [*path, nxt])
        state[mod] = 2

    for mod in sorted(edges):
        if mod not in state:
            visit(mod, [mod])
    assert cycles == []


@pytest.mark.parametrize("stage", ["suites", "scorers", "backends"])
def test_each_plugin_folder_has_a_base_module(stage: str) -> None:
    assert f"tunegate.{stage}.base" in MODULES


def test_the_public_api_is_functions_and_types_not_modules() -> None:
    """`from tunegate import evaluate` used to return the module `tunegate.evaluate`; every export is now the thing."""
    import types

    for name in tunegate.__all__:
        assert not isinstance(getattr(tunegate, name), types.ModuleType), name
    from tunegate import evaluate, run_finetune

    assert callable(evaluate) and evaluate.__module__ == "tunegate.run.evaluate"
    assert run_finetune.__name__ == "finetune"
    with pytest.raises(AttributeError):
        tunegate.no_such_name  # noqa: B018


def test_all_lists_exactly_the_exports() -> None:
    assert sorted(tunegate.__all__) == sorted(tunegate._EXPORTS)
