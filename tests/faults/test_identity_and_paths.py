"""Issue 14, verdict integrity: model identity and cache keys, suite data paths, validation before work.

- (4) The fingerprint covers every file that changes outputs (config.json,
  generation_config.json, adapter_config.json), and the cache key adds the
  backend's implementation version and the numerics libraries' versions: an
  edited config or an upgrade is never served from the old cache.
- (7) Suite data resolves inside the suite's folder (or an allowed data root);
  `../`, absolute paths and symlinks that lead out are exit 2 naming the
  resolved path.
- (9) An unknown scorer or scorer option is exit 2 when the suite loads:
  before any model loads and before any fine-tuning.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.cli import run_cli_merged as run_cli
from tests.kinds import register, write_suite
from tunegate.backends.mock import MockBackend
from tunegate.core import cache as cache_mod
from tunegate.core.config import DataSource
from tunegate.core.data import read_rows
from tunegate.core.errors import UserError
from tunegate.core.fingerprint import fingerprint_folder, model_files
from tunegate.core.model_spec import ModelSpec
from tunegate.core.shipped import shipped_dir
from tunegate.run.evaluate import evaluate
from tunegate.run.suite_loader import load_suite

DATA_ROOTS_ENV = "TUNEGATE_DATA_ROOTS"  # the documented name (docs/suites.md)
ROWS = [{"id": f"r{i}", "prompt": f"The support agent said number {i}", "target": f"thanks {i}"} for i in range(6)]


@pytest.fixture(autouse=True)
def _setup(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    register()
    monkeypatch.delenv(DATA_ROOTS_ENV, raising=False)
    cache_mod.numerics_versions.cache_clear()
    yield
    cache_mod.numerics_versions.cache_clear()  # a patched version must not outlive the test


def _lls(result: Any) -> list[float | None]:
    return [r.loglikelihood for s in result.suites[0].samples for r in s.responses if r.kind == "loglikelihood"]


# ---- (4) identity: every file that changes outputs ---------------------------------------------------
@pytest.mark.slow
def test_editing_config_json_is_a_new_model_not_a_cache_hit(tiny_model_dir: Path, tmp_path: Path) -> None:
    """187/187 answers came from the previous model's cache after an architecture config edit."""
    model = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model)
    suite = write_suite(tmp_path / "suite", ROWS)
    cache = tmp_path / "cache.sqlite"
    spec = ModelSpec(model=str(model))
    first = evaluate(spec, [str(suite)], cache_path=cache)
    assert first.cache["hits"] == 0 and first.cache["computed"] == 2 * len(ROWS)

    cfg_path = model / "config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["activation_function"] = "relu"  # same weights, still loadable, different numbers
    cfg_path.write_text(json.dumps(cfg, indent=2))
    second = evaluate(spec, [str(suite)], cache_path=cache)
    fresh = evaluate(spec, [str(suite)], cache_path=None)

    assert second.cache["hits"] == 0 and second.cache["computed"] == 2 * len(ROWS)
    assert second.model_fingerprint != first.model_fingerprint == first.model_identity["fingerprint"]
    assert _lls(second) == pytest.approx(_lls(fresh), abs=1e-6)
    assert _lls(second) != pytest.approx(_lls(first), abs=1e-3)  # the edit did change the answers
    assert [s.responses[0].text for s in second.suites[0].samples] == [s.responses[0].text for s in fresh.suites[0].samples]
    assert evaluate(spec, [str(suite)], cache_path=cache).cache["hits"] == 2 * len(ROWS)  # unchanged: served


def test_fingerprint_covers_config_generation_config_adapter_config_and_code(tmp_path: Path) -> None:
    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "model.safetensors").write_bytes(b"weights")
    (folder / "tokenizer.json").write_text("{}")
    (folder / "README.md").write_text("notes")  # not identity: does not change outputs
    base = fingerprint_folder(folder)
    seen = {base}
    for name, text in [("config.json", '{"n_layer": 2}'), ("generation_config.json", '{"temperature": 0.7}'),
                       ("adapter_config.json", '{"r": 8}'), ("modeling_custom.py", "x = 1")]:
        (folder / name).write_text(text)
        assert folder / name in model_files(folder)
        fp = fingerprint_folder(folder)
        assert fp not in seen, name
        seen.add(fp)
        (folder / name).write_text(text.replace("2", "3").replace("0.7", "0.9").replace("8", "16").replace("1", "2"))
        assert fingerprint_folder(folder) not in seen, f"{name} edited"
    (folder / "README.md").write_text("other notes")
    assert folder / "README.md" not in model_files(folder)


def _mock_run(suite: Path, cache: Path, backend: MockBackend | None = None) -> dict[str, int]:
    backend = backend or MockBackend.scripted(default_text="thanks")
    return evaluate(backend.spec, [str(suite)], backend=backend, cache_path=cache).cache


def test_a_numerics_library_upgrade_is_not_served_from_the_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    suite = write_suite(tmp_path / "suite", ROWS)
    cache = tmp_path / "cache.sqlite"
    n = 2 * len(ROWS)
    assert _mock_run(suite, cache) == {"hits": 0, "computed": n}
    assert _mock_run(suite, cache) == {"hits": n, "computed": 0}
    real = cache_mod.package_version
    monkeypatch.setattr(cache_mod, "package_version", lambda name: "99.0.0" if name == "transformers" else real(name))
    cache_mod.numerics_versions.cache_clear()
    assert _mock_run(suite, cache) == {"hits": 0, "computed": n}  # an upgraded transformers recomputes
    assert _mock_run(suite, cache) == {"hits": n, "computed": 0}


def test_a_new_backend_implementation_version_is_not_served_from_the_cache(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    suite = write_suite(tmp_path / "suite", ROWS)
    cache = tmp_path / "cache.sqlite"
    n = 2 * len(ROWS)
    assert _mock_run(suite, cache) == {"hits": 0, "computed": n}
    # the cache keys on the backend's own settings() plus the version
    assert MockBackend.scripted().cache_settings()["implementation_version"] == MockBackend.implementation_version
    monkeypatch.setattr(MockBackend, "implementation_version", "2")
    assert _mock_run(suite, cache) == {"hits": 0, "computed": n}


def test_a_backend_that_names_no_numerics_packages_keeps_its_cache_across_upgrades(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An API backend's answers come from the server: a local torch upgrade must not re-ask (and re-pay) for them."""

    class ApiLike(MockBackend):
        numerics_packages = ()

    suite = write_suite(tmp_path / "suite", ROWS)
    cache = tmp_path / "cache.sqlite"
    make = lambda: ApiLike(ModelSpec(model="api", backend="mock"), MockBackend.scripted().script)  # noqa: E731
    assert _mock_run(suite, cache, make()) == {"hits": 0, "computed": 2 * len(ROWS)}
    monkeypatch.setattr(cache_mod, "package_version", lambda name: "99.0.0")
    cache_mod.numerics_versions.cache_clear()
    assert _mock_run(suite, cache, make()) == {"hits": 2 * len(ROWS), "computed": 0}


# ---- (7) data paths stay inside the suite's folder ---------------------------------------------------
def _outside(tmp_path: Path) -> Path:
    """A valid data file outside the suite's folder: the old code read it without complaint."""
    secret = tmp_path / "elsewhere" / "secret.jsonl"
    secret.parent.mkdir(parents=True)
    secret.write_text("".join(json.dumps({"id": f"s{i}", "prompt": f"SECRET-{i}", "target": "x"}) + "\n" for i in range(3)))
    return secret


def _suite_with_data(folder: Path, data: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "s.yaml"
    path.write_text(yaml.safe_dump({"name": "s", "kind": "echo_test", "data": data}))
    return path


@pytest.mark.parametrize("how", ["dotdot", "absolute", "symlink"])
def test_data_paths_that_leave_the_suite_folder_exit_2_naming_the_resolved_path(
        how: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    secret = _outside(tmp_path)
    folder = tmp_path / "suites"
    folder.mkdir()
    if how == "dotdot":
        data = "../elsewhere/secret.jsonl"
    elif how == "absolute":
        data = str(secret)
    else:
        (folder / "data.jsonl").symlink_to(secret)
        data = "data.jsonl"
    suite = _suite_with_data(folder, data)
    out = tmp_path / "out"
    code, output = run_cli(["run", "--model", "m", "--backend", "mock", "--suites", str(suite), "--out", str(out)], capsys)
    assert code == 2, output
    assert f"resolves to {secret.resolve()}" in output and "outside the suite's folder" in output
    assert DATA_ROOTS_ENV in output  # the message names the fix
    assert not (out / "results.json").exists()


def test_passwd_is_not_read_into_results(tmp_path: Path) -> None:
    suite = _suite_with_data(tmp_path / "suites", "/etc/passwd")
    with pytest.raises(UserError, match="resolves to /etc/passwd, outside"):
        load_suite(str(suite))


def test_symlinks_inside_the_folder_and_allowed_roots_work(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "suites"
    (folder / "data").mkdir(parents=True)
    (folder / "data" / "rows.jsonl").write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    (folder / "link.jsonl").symlink_to(folder / "data" / "rows.jsonl")
    assert len(load_suite(str(_suite_with_data(folder, "link.jsonl"))).samples()) == len(ROWS)
    assert len(load_suite(str(_suite_with_data(folder, "./data/../link.jsonl"))).samples()) == len(ROWS)

    secret = _outside(tmp_path)
    outside = _suite_with_data(folder, str(secret))
    with pytest.raises(UserError, match="outside the suite's folder"):
        load_suite(str(outside))
    monkeypatch.setenv(DATA_ROOTS_ENV, os.pathsep.join([str(tmp_path / "nowhere"), str(secret.parent)]))
    assert [s.input for s in load_suite(str(outside)).samples()] == ["SECRET-0", "SECRET-1", "SECRET-2"]


def test_shipped_suite_data_is_an_allowed_root(tmp_path: Path) -> None:
    shipped = shipped_dir("suites") / "data" / "support_text.jsonl"
    rows, _ = read_rows(DataSource(path=str(shipped)), tmp_path, {})
    assert rows


def test_a_local_folder_given_as_a_hub_id_obeys_the_same_rule(tmp_path: Path) -> None:
    secret = _outside(tmp_path)
    with pytest.raises(UserError, match=rf"data\.(?:hf|hub) .* resolves to {secret.parent.resolve()}, outside"):
        read_rows(DataSource(hf=str(secret.parent)), tmp_path / "suites", {})


# ---- (9) scorer names and options are checked before any model loads or trains ----------------------
@pytest.fixture
def no_work(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Records (and refuses) every model load and fine-tune; a test asserts the list stays empty."""
    import tunegate.finetune
    import tunegate.run.evaluate

    calls: list[str] = []

    def refuse(what: str) -> Any:
        def f(*args: Any, **kwargs: Any) -> Any:
            calls.append(what)
            raise RuntimeError(f"{what} was called before the suites were validated")
        return f

    monkeypatch.setattr(tunegate.run.evaluate, "load_backend", refuse("load_backend"))
    monkeypatch.setattr(MockBackend, "__init__", refuse("MockBackend"))
    monkeypatch.setattr(tunegate.finetune, "finetune", refuse("finetune"))
    return calls


def _toxicity_audit(d: Path, options: dict[str, Any]) -> Path:
    (d / "tox.jsonl").write_text("".join(json.dumps({"id": f"p{i}", "prompt": f"The weather today is {i}"}) + "\n"
                                         for i in range(4)))
    (d / "tox.yaml").write_text(yaml.safe_dump({"name": "tox", "kind": "toxicity", "data": "tox.jsonl",
                                                "options": {"k": 1, **options}}))
    (d / "policy.yaml").write_text(yaml.safe_dump({"rules": [{"metric": "tox/toxic_rate", "max_regression": 0.1}]}))
    (d / "train.jsonl").write_text("".join(json.dumps({"prompt": f"Q{i}:", "completion": f" A{i}"}) + "\n"
                                           for i in range(4)))
    cfg = {"base": {"model": "base", "backend": "mock"},
           "candidates": [{"model": "cand", "backend": "mock"},
                          {"finetune": {"recipe": "sft-lora", "data": "train.jsonl", "out": "runs/ft", "label": "ft"}}],
           "suites": ["tox.yaml"], "policy": "policy.yaml", "out": "out", "cache": "cache.sqlite"}
    path = d / "audit.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.mark.parametrize("options,expect", [
    ({"scorer": "detoxfy"}, r"tox.yaml: options.scorer: unknown scorer 'detoxfy'; installed scorers: .*profanity-check"),
    ({"scorer_options": {"treshold": 0.3}}, r"tox.yaml: options.scorer_options \(scorer embedding-toxicity\): treshold: unknown key"),
    ({"scorer": "refusal", "scorer_options": {"partial_min_words": "many"}},
     r"options.scorer_options \(scorer refusal\): partial_min_words"),
    ({"scorer": "detoxify"}, r"options.scorer_options: scorer detoxify: its checkpoints are torch pickles"),
    ({"scorer": "hf-classifier"}, r"options.scorer_options \(scorer hf-classifier\): model: Field required"),
    ({"scorer": "hf-classifier", "scorer_options": {"model": "./no-such-classifier"}}, r"folder ./no-such-classifier not found"),
])
def test_audit_with_a_bad_scorer_exits_2_before_any_model_loads_or_trains(
        options: dict[str, Any], expect: str, tmp_path: Path, no_work: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    code, output = run_cli(["audit", str(_toxicity_audit(tmp_path, options))], capsys)
    assert code == 2, output
    assert no_work == []
    assert re.search(expect, output), output
    assert not (tmp_path / "runs").exists() and not (tmp_path / "out").exists()


def test_run_with_an_unknown_scorer_exits_2_before_the_model_loads(tmp_path: Path, no_work: list[str],
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    _toxicity_audit(tmp_path, {"scorer": "nope"})
    code, output = run_cli(["run", "--model", "m", "--backend", "mock", "--suites", str(tmp_path / "tox.yaml"),
                            "--out", str(tmp_path / "o")], capsys)
    assert code == 2 and "unknown scorer 'nope'" in output and no_work == []


def test_every_scorer_option_key_of_a_kind_is_checked(tmp_path: Path) -> None:
    """`<x>_scorer` options (the counterfactual kind's sentiment and toxicity scorers) are checked too."""
    src = shipped_dir("suites") / "counterfactual_decisions.yaml"
    cfg = yaml.safe_load(src.read_text())
    cfg["data"] = str(src.parent / cfg["data"] if isinstance(cfg["data"], str) else src.parent / cfg["data"]["path"])
    groups = cfg["options"].get("groups")
    if isinstance(groups, str):
        cfg["options"]["groups"] = str(src.parent / groups)
    cfg["options"]["toxicity_scorer"] = "no-such-scorer"
    path = tmp_path / "cf.yaml"
    path.write_text(yaml.safe_dump(cfg))
    with pytest.raises(UserError, match=r"cf.yaml: options.toxicity_scorer: unknown scorer 'no-such-scorer'"):
        load_suite(str(path))
    cfg["options"]["toxicity_scorer"] = None  # null turns it off: nothing to check
    path.write_text(yaml.safe_dump(cfg))
    assert load_suite(str(path)).scorer_refs() == [("sentiment_scorer", "sentiment", None)]


@pytest.mark.parametrize(("kind", "option", "key"), [
    ("citations", {"reference": "../elsewhere/ref.yml"}, "options.reference"),
    ("counterfactual", {"groups": "../elsewhere/ref.yml"}, "options.groups"),
])
def test_other_files_a_suite_reads_obey_the_same_rule(kind: str, option: dict[str, str], key: str, tmp_path: Path) -> None:
    """Group lists and reference lists are suite data too: outside the folder is exit 2, naming the option."""
    outside = tmp_path / "elsewhere" / "ref.yml"
    outside.parent.mkdir(parents=True)
    outside.write_text("{}\n")
    folder = tmp_path / "suites"
    folder.mkdir()
    (folder / "p.jsonl").write_text(json.dumps({"id": "a", "prompt": "Cite a case about {person}."}) + "\n")
    path = folder / "s.yaml"
    path.write_text(yaml.safe_dump({"name": "s", "kind": kind, "data": "p.jsonl", "options": option}))
    with pytest.raises(UserError, match=rf"{key}.*resolves to {outside.resolve()}, outside"):
        load_suite(str(path))
