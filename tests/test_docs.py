"""The docs teach the public API: every Python example imports from `tunegate` itself, and only names it exports.

The stage packages behind `tunegate/__init__.py` may move (docs/architecture.md); an example that imports
`tunegate.run.runner` would break with them, so it fails here instead. Also checked: docs/architecture.md
exists and names every stage folder under src/tunegate.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

import tunegate

ROOT = Path(__file__).resolve().parent.parent
SRC = Path(tunegate.__file__).resolve().parent
DOCS = sorted([ROOT / "README.md", *(ROOT / "docs").glob("*.md")])
PUBLIC = set(tunegate.__all__)

FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>```|~~~)[ \t]*(?P<lang>[\w+-]*)[^\n]*\n(?P<body>.*?)^(?P=indent)(?P=fence)[ \t]*$",
                   re.MULTILINE | re.DOTALL)
#: an import statement naming tunegate, anywhere in a doc (inline code, shell one-liners, any code block)
IMPORT_TEXT = re.compile(r"\b(?:from\s+(?P<mod>tunegate(?:\.[\w.]+)?)\s+import\s+(?P<names>\([\w\s,]+\)|[\w \t,]+|\*)"
                         r"|import\s+(?P<imp>tunegate(?:\.[\w.]+)?))")


def python_blocks(path: Path) -> list[tuple[int, str]]:
    """(line number, code) of every ```python block in `path`."""
    text = path.read_text(encoding="utf-8")
    return [(text.count("\n", 0, m.start()) + 2, _dedent(m.group("body"), m.group("indent")))
            for m in FENCE.finditer(text) if m.group("lang").lower() in ("python", "py", "python3", "pycon")]


def _dedent(body: str, indent: str) -> str:
    return "\n".join(line[len(indent):] if line.startswith(indent) else line for line in body.splitlines())


def _strip_prompts(code: str) -> str:
    """A pycon/doctest block (`>>> `, `... `) as plain code; output lines dropped."""
    if not any(line.startswith(">>>") for line in code.splitlines()):
        return code
    return "\n".join(line[4:] for line in code.splitlines() if line.startswith((">>>", "...")))


def problems_in_code(code: str) -> list[str]:
    """What in one Python example does not go through the public API."""
    tree = ast.parse(_strip_prompts(code))
    out: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "tunegate":
            if node.module != "tunegate":
                out.append(f"line {node.lineno}: `from {node.module} import ...`: import from `tunegate` instead")
            for alias in node.names:
                if alias.name == "*":
                    out.append(f"line {node.lineno}: `import *`: name what the example uses")
                elif alias.name not in PUBLIC:
                    out.append(f"line {node.lineno}: `{alias.name}` is not in tunegate.__all__")
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "tunegate" and alias.name != "tunegate":
                    out.append(f"line {node.lineno}: `import {alias.name}`: use `from tunegate import ...`")
        elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "tunegate" \
                and node.attr not in PUBLIC and not node.attr.startswith("__"):
            out.append(f"line {node.lineno}: `tunegate.{node.attr}` is not in tunegate.__all__")
    return out


def problems_in_text(text: str) -> list[str]:
    """Import statements outside ```python blocks (inline code, shell one-liners) are held to the same rule."""
    out = []
    for m in IMPORT_TEXT.finditer(text):
        line = text.count("\n", 0, m.start()) + 1
        if m.group("imp") and m.group("imp") != "tunegate":
            out.append(f"line {line}: `import {m.group('imp')}`: use `from tunegate import ...`")
        elif m.group("mod"):
            if m.group("mod") != "tunegate":
                out.append(f"line {line}: `from {m.group('mod')} import ...`: import from `tunegate` instead")
            names = [n.split()[0] for n in m.group("names").strip("()").split(",") if n.strip()]
            out += [f"line {line}: `{n}` is not in tunegate.__all__" for n in names if n not in PUBLIC]
    return out


@pytest.mark.parametrize("doc", DOCS, ids=[str(p.relative_to(ROOT)) for p in DOCS])
def test_python_examples_import_only_the_public_api(doc: Path) -> None:
    problems = []
    for line, code in python_blocks(doc):
        try:
            found = problems_in_code(code)
        except SyntaxError as err:
            found = [f"does not parse as Python: {err.msg} (line {err.lineno})"]
        problems += [f"{doc.relative_to(ROOT)}: block at line {line}: {p}" for p in found]
    assert problems == []


@pytest.mark.parametrize("doc", DOCS, ids=[str(p.relative_to(ROOT)) for p in DOCS])
def test_import_statements_anywhere_in_a_doc_use_the_public_api(doc: Path) -> None:
    problems = [f"{doc.relative_to(ROOT)}: {p}" for p in problems_in_text(doc.read_text(encoding="utf-8"))]
    assert problems == []


def test_the_checks_catch_a_stage_import(tmp_path: Path) -> None:
    """The rule bites: a doc that teaches a stage's module, a private name or an unexported one fails."""
    assert problems_in_code("from tunegate.run.runner import Runner\n")
    assert problems_in_code("import tunegate.run.runner\n")
    assert problems_in_code("from tunegate import Runner\n")
    assert problems_in_code("import tunegate\ntunegate.Runner\n")
    assert problems_in_code(">>> from tunegate.compare.comparison import compare_runs\n")
    assert problems_in_text("Use `from tunegate.run.runner import Runner` there.")
    assert problems_in_text("python -c 'import tunegate.cli'")
    block = "# t\n\n```python\nfrom tunegate.run.runner import Runner\n```\n"
    doc = tmp_path / "probe.md"
    doc.write_text(block, encoding="utf-8")
    ((line, code),) = python_blocks(doc)
    assert line == 4 and problems_in_code(code)
    assert problems_in_code("from tunegate import compare_runs, evaluate\nimport tunegate\ntunegate.run_audit\n") == []


def test_the_scan_finds_the_python_examples() -> None:
    """A scan that finds no block would pass everything."""
    assert sum(len(python_blocks(d)) for d in DOCS) > 0, "no ```python block found: is the scan broken?"


def stage_folders() -> list[str]:
    return sorted(p.name for p in SRC.iterdir() if p.is_dir() and (p / "__init__.py").is_file())


def test_architecture_page_names_every_stage_folder() -> None:
    page = ROOT / "docs" / "architecture.md"
    assert page.is_file(), "docs/architecture.md: the one-page map of the stages is missing"
    text = page.read_text(encoding="utf-8")
    folders = stage_folders()
    assert {"pipeline", "report", "gate", "compare", "run", "core"} <= set(folders)
    missing = [f"{name}/" for name in folders if f"{name}/" not in text]
    assert missing == [], f"docs/architecture.md does not name {missing}"
    for entry in ("cli.py", "launch.py", "__init__.py", "tests/test_architecture.py"):
        assert entry in text, entry


def test_architecture_page_lists_the_whole_public_api() -> None:
    text = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    assert sorted(n for n in tunegate.__all__ if f"`{n}`" not in text) == []


def test_readme_points_at_the_architecture_page_and_its_doc_links_resolve() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "docs/architecture.md" in readme
    for doc in DOCS:
        for target in re.findall(r"\]\(([^)\s]+)\)", doc.read_text(encoding="utf-8")):
            if re.match(r"^[a-z]+:", target) or target.startswith("#"):
                continue
            path = (doc.parent / target.split("#")[0]).resolve()
            assert path.exists(), f"{doc.relative_to(ROOT)}: link to {target} resolves to nothing"
