"""A third-party package registers plugins exactly as the built-ins do: through entry points.

The fixture package in tests/plugin_fixture is made importable and its
distribution metadata (what `pip install` would write) is put on sys.path, so
discovery goes through importlib.metadata like for any installed plugin.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from tunegate.backends.mock import MockBackend
from tunegate.core import plugins
from tunegate.run.evaluate import evaluate
from tunegate.scorers.base import get_scorer

FIXTURE = Path(__file__).resolve().parent / "plugin_fixture"


@pytest.fixture
def installed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import tomllib

    meta = tomllib.loads((FIXTURE / "pyproject.toml").read_text())["project"]
    dist = tmp_path / "tunegate_example_plugin-0.1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {meta['name']}\nVersion: {meta['version']}\n")
    lines = []
    for group, eps in meta["entry-points"].items():
        lines.append(f"[{group}]")
        lines += [f"{k} = {v}" for k, v in eps.items()]
    (dist / "entry_points.txt").write_text("\n".join(lines) + "\n")
    monkeypatch.syspath_prepend(str(FIXTURE))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "tunegate_example_plugin", raising=False)


def test_third_party_suite_and_scorer_are_discovered_and_run(installed: None, tmp_path: Path) -> None:
    assert "example_shout" in plugins.names("suites")
    assert "example_length" in plugins.names("scorers")
    rows = [{"id": "a", "prompt": "say hi"}, {"id": "b", "prompt": "say bye"}]
    (tmp_path / "d.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "shout.yaml").write_text("name: shout\nkind: example_shout\ndata: d.jsonl\n")
    backend = MockBackend.scripted(generations={"say hi": "HELLO", "say bye": "bye"})
    result = evaluate(backend.spec, [str(tmp_path / "shout.yaml")], backend=backend, cache_path=None)
    assert result.suite("shout").metric("shout_rate").value == pytest.approx(0.5)  # type: ignore[union-attr]
    scores = get_scorer("example_length").score_texts_safe(["x" * 50, "y" * 500])
    assert [s[0].value for s in scores] == [0.5, 1.0]
    assert any(r["package"] == "tunegate-example-plugin" for r in plugins.describe("suites"))


def test_without_the_package_the_kind_is_unknown() -> None:
    assert "example_shout" not in plugins.names("suites")
