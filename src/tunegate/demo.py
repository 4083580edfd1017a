"""`tunegate demo`: the offline main job, runnable on a fresh machine with no network.

It builds a tiny base model on the fly and evaluates it on the built-in task
suites, writing `reports/demo/results.json`. (The full audit demo with
fine-tuned candidates, safety suites and the HTML report builds on this.)
"""

from __future__ import annotations

import time
from pathlib import Path

from tunegate.evaluate import evaluate
from tunegate.model_spec import ModelSpec
from tunegate.results import RunResult
from tunegate.tiny import build_tiny_model

TASK_SUITES = ["support_mc", "support_answers", "summaries", "support_text"]


def run_demo(out: Path = Path("reports/demo")) -> tuple[RunResult, Path, float]:
    t0 = time.perf_counter()
    model_dir = out / "models" / "base"
    if not (model_dir / "model.safetensors").is_file():
        build_tiny_model(model_dir, "gpt2", seed=0, n_positions=256, hidden=64, layers=2, heads=2)
    result = evaluate(ModelSpec(model=str(model_dir), label="tiny-base", batch_size=16), TASK_SUITES,
                      cache_path=out / "cache.sqlite")
    path = out / "results.json"
    result.save(path)
    return result, path, time.perf_counter() - t0
