"""The built wheel works on its own: installed into a clean venv outside the repository.

Why: a source checkout hides packaging mistakes (shipped data found through the
source tree). This builds the wheel, installs it with the locked dependencies
into a fresh venv, and from a folder outside the repository runs `tunegate demo`
and an audit whose candidate uses the shipped recipe `sft-lora` by name.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]


def _sh(args: list[str | Path], cwd: Path, env: dict[str, str] | None = None, timeout: int = 600) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False)
    return proc


@pytest.mark.slow
def test_wheel_in_a_clean_venv_runs_the_demo_and_a_shipped_recipe_audit(tmp_path: Path) -> None:
    uv = shutil.which("uv", path=str(Path(sys.executable).parent)) or shutil.which("uv")
    if uv is None:
        pytest.skip("uv (in the dev extra) is needed to install the locked dependencies quickly")
    dist = tmp_path / "dist"
    built = _sh([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", REPO, "-w", dist], cwd=tmp_path)
    assert built.returncode == 0, built.stderr[-2000:]
    wheel = next(dist.glob("tunegate-*.whl"))

    venv = tmp_path / "venv"
    assert _sh([uv, "venv", "-q", "--python", sys.executable, venv], cwd=tmp_path).returncode == 0
    py = venv / "bin" / "python"
    links = ["--find-links", "/opt/wheels"] if Path("/opt/wheels").is_dir() else []
    deps = _sh([uv, "pip", "install", "-q", "--python", py, "--require-hashes", "--no-deps", "-r", REPO / "requirements.lock",
                *links], cwd=tmp_path, timeout=900)
    assert deps.returncode == 0, deps.stderr[-2000:]
    inst = _sh([uv, "pip", "install", "-q", "--python", py, "--no-deps", wheel], cwd=tmp_path)
    assert inst.returncode == 0, inst.stderr[-2000:]

    work = tmp_path / "elsewhere"  # outside the repository: nothing can be found through the source tree
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "TUNEGATE_SUITES_PATH")}
    env.update(HF_HUB_OFFLINE="1", TUNEGATE_CACHE=str(tmp_path / "cache"))
    where = _sh([py, "-c", "import tunegate.core.shipped as s; print(s.shipped_dir('fine_tune'))"], cwd=work, env=env)
    assert where.returncode == 0, where.stderr
    shipped = Path(where.stdout.strip())
    assert shipped.is_relative_to(venv) and (shipped / "sft-lora.yaml").is_file(), shipped

    tunegate = venv / "bin" / "tunegate"
    demo = _sh([tunegate, "demo", "--out", work / "demo"], cwd=work, env=env, timeout=900)
    assert demo.returncode == 0, demo.stdout[-2000:] + demo.stderr[-2000:]
    assert re.search(r"contaminated\S*: FAIL", demo.stdout) and re.search(r"clean\S*: PASS", demo.stdout), demo.stdout
    assert (work / "demo" / "report.html").is_file()

    base_model = yaml.safe_load((work / "demo" / "work" / "audit.yaml").read_text())["base"]["model"]
    (work / "policy.yaml").write_text(yaml.safe_dump({"rules": [
        {"metric": "support_answers/token_f1", "max_regression": 0.5}]}))
    (work / "audit.yaml").write_text(yaml.safe_dump({
        "name": "wheel", "base": {"model": base_model, "label": "base"},
        "candidates": [{"finetune": {"recipe": "sft-lora", "data": str(shipped / "demo" / "clean.jsonl"), "out": "runs/lora",
                                     "label": "lora", "checkpoints": "final",
                                     "overrides": {"epochs": 1, "max_steps": 3}}}],
        "suites": ["support_answers"], "policy": "policy.yaml", "out": "audit-out", "cache": "cache.sqlite"}))
    audit = _sh([tunegate, "audit", work / "audit.yaml"], cwd=work, env=env, timeout=900)
    assert audit.returncode in (0, 1), audit.stdout[-2000:] + audit.stderr[-2000:]  # a gate decision, not a crash
    assert (work / "audit-out" / "report.html").is_file() and (work / "runs" / "lora" / "manifest.json").is_file()
