"""Resolving `--suites` arguments: a built-in name or a path to a suite YAML file.

Built-in suites live in the top-level `suites/` folder of the source tree and are
shipped inside the wheel (found by `tunegate.core.shipped`). `TUNEGATE_SUITES_PATH`
(os.pathsep-separated) adds folders searched by name before the built-ins.
`lm_eval:TASK` names an lm-evaluation-harness task directly (the `lm_eval` kind,
suite name `lm_eval_TASK`), with no YAML to write.

A *suite group* (`groups/NAME.yaml` in any of those folders: a name, a
description and its member suites) stands for its members wherever suites are
named (`--suites`, an audit's `suites:`, `plan --suites`), so a set such as
`general_capabilities` is asked for with one word and its members stay
ordinary suites (own names, own results, own gate rules).
"""

from __future__ import annotations

import os
from pathlib import Path

from tunegate.core import plugins
from tunegate.core.config import SuiteConfig, SuiteGroup, load_yaml_model
from tunegate.core.errors import UserError
from tunegate.core.shipped import shipped_dir
from tunegate.scorers.base import check_scorer
from tunegate.suites.base import SuiteKind


def builtin_dirs() -> list[Path]:
    """Folders holding suite YAML files, in search order."""
    dirs = [Path(p) for p in os.environ.get("TUNEGATE_SUITES_PATH", "").split(os.pathsep) if p]
    return [*dirs, shipped_dir("suites")]


def builtin_suites() -> dict[str, Path]:
    """Suite name (file stem) -> YAML path; the first folder in search order wins."""
    found: dict[str, Path] = {}
    for d in builtin_dirs():
        for path in sorted(d.glob("*.yaml")):  # top level only: data/ may hold YAML data files
            found.setdefault(path.stem, path)
    return found


def builtin_groups() -> dict[str, Path]:
    """Group name (file stem) -> YAML path, from `groups/` in each suite folder; the first folder wins."""
    found: dict[str, Path] = {}
    for d in builtin_dirs():
        for path in sorted((d / "groups").glob("*.yaml")):
            found.setdefault(path.stem, path)
    return found


def load_group(path: Path) -> SuiteGroup:
    group = load_yaml_model(path, SuiteGroup)
    if group.name != path.stem:
        raise UserError(f"{path}: name: {group.name!r} must equal the file name ({path.stem})")
    return group


def expand_refs(refs: list[str]) -> list[str]:
    """Suite references with every group name replaced by its members (a suite of the same name wins)."""
    groups, suites = builtin_groups(), builtin_suites()
    out: list[str] = []
    for ref in refs:
        if ref in groups and ref not in suites:
            out.extend(m for m in load_group(groups[ref]).suites if m not in out)
        else:
            out.append(ref)
    return out


def resolve_suite_path(ref: str) -> Path:
    """A name or a path -> the suite's YAML file, or a UserError listing the known names."""
    p = Path(ref)
    if p.suffix in (".yaml", ".yml") or os.sep in ref or p.exists():
        if not p.is_file():
            raise UserError(f"{ref}: suite file not found")
        return p
    known = builtin_suites()
    if ref not in known:
        groups = f"; groups: {', '.join(sorted(builtin_groups()))}" if builtin_groups() else ""
        raise UserError(f"unknown suite {ref!r}; built-in suites: {', '.join(sorted(known))}{groups} "
                        "(or give a path to a suite YAML)")
    return known[ref]


#: `--suites lm_eval:arc_easy`: an lm-eval task by name, without a suite file
LM_EVAL_PREFIX = "lm_eval:"


def lm_eval_suite_config(ref: str) -> SuiteConfig:
    """The suite an `lm_eval:TASK` reference stands for: kind `lm_eval`, the task's defaults, named `lm_eval_TASK`."""
    task = ref[len(LM_EVAL_PREFIX):].strip()
    if not task or not all(c.isalnum() or c in "_.-" for c in task):
        raise UserError(f"{ref!r}: expected lm_eval:TASK with an lm-eval task name (letters, digits, _ . -), "
                        "e.g. lm_eval:arc_easy; for options (num_fewshot, limit, a task YAML) write a suite file")
    return SuiteConfig(name=f"lm_eval_{task}", kind="lm_eval", description=f"lm-evaluation-harness task {task}",
                       options={"task": task})


def load_suite(ref: str, *, read_data: bool = True) -> SuiteKind:
    """Read, validate and instantiate one suite, before any model loads or trains.

    Its options, every scorer they name (plugin name and scorer options; no
    scorer weights load) and every data row are checked here, so a typo is
    exit 2 in a second, not after a model load or a fine-tune. `read_data=False`
    stops before the rows (listing and planning: a Hub task is not fetched).
    """
    if ref.startswith(LM_EVAL_PREFIX):
        config, path = lm_eval_suite_config(ref), Path.cwd() / f"{ref}.yaml"  # no file: paths resolve from here
    else:
        path = resolve_suite_path(ref)
        config = load_yaml_model(path, SuiteConfig)
    if config.kind not in plugins.names("suites"):
        raise UserError(
            f"{path}: kind: unknown suite kind {config.kind!r}; installed kinds: {', '.join(plugins.names('suites'))}"
        )
    kind_cls = plugins.load("suites", config.kind)
    suite = kind_cls(config, path.parent)
    for key, name, options in suite.scorer_refs():
        check_scorer(name, options, where=f"{path}: options.{key}")
    if read_data:
        suite.samples()  # validate every row now, before any model loads
    return suite


def suite_size(suite: SuiteKind) -> int:
    """How many samples the suite asks: its declared size when it has one (no data read), else its rows counted."""
    declared = suite.declared_size()
    return declared if declared is not None else len(suite.samples())


def load_suites(refs: list[str]) -> list[SuiteKind]:
    """The suites (groups expanded), each validated; a name given twice is an input error."""
    suites = [load_suite(r) for r in expand_refs(refs)]
    names = [s.config.name for s in suites]
    dup = {n for n in names if names.count(n) > 1}
    if dup:
        raise UserError(f"suite name(s) given twice: {', '.join(sorted(dup))}")
    return suites
