"""The `lm_eval` suite kind (the bridge) vs lm-evaluation-harness's own run: same model, same task, same numbers?

For each task (a multiple-choice task and a generate-until task, local YAMLs
over templated support data from bench_lm_eval.py), on the same GPT-2-shaped
model folder trained briefly so generations end at different lengths:

  * lm-eval's own run: `HFLM(pretrained=..., batch_size=B)` + `simple_evaluate`;
  * the bridge: a tunegate suite of kind `lm_eval` naming the same task YAML,
    `tunegate.evaluate` with the HF backend (batch size B), no response cache.

Both are timed end to end (model load, task build, requests, scoring), each
in a fresh model load, after one untimed warm-up of each. Reported: wall time
of each, the ratio (lm-eval / bridge: above 1 means the bridge is faster),
and parity: per-document metric values equal (count of documents that differ)
and the aggregate metrics side by side.

    pip install 'tunegate[lm_eval]'
    python benchmarks/lm_eval_bridge.py [--mc 300] [--gen 64] [--out benchmarks/results]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_lm_eval import build_model, make_data  # noqa: E402


def write_tasks(folder: Path, mc: Path, gen: Path, max_tokens: int) -> dict[str, Path]:
    import yaml

    base = {"dataset_path": "json", "test_split": "test", "metadata": {"version": 1.0}}
    mc_task = base | {"task": "tg_bridge_mc", "dataset_kwargs": {"data_files": {"test": str(mc)}},
                      "output_type": "multiple_choice", "doc_to_text": "Question: {{question}}\nAnswer:",
                      "doc_to_choice": "{{choices}}", "doc_to_target": "{{answer}}", "target_delimiter": " ",
                      "metric_list": [{"metric": "acc"}, {"metric": "acc_norm"}]}
    gen_task = base | {"task": "tg_bridge_gen", "dataset_kwargs": {"data_files": {"test": str(gen)}},
                       "output_type": "generate_until", "doc_to_text": "{{prompt}}", "doc_to_target": "{{reference}}",
                       "generation_kwargs": {"until": ["\n\n"], "max_gen_toks": max_tokens, "do_sample": False},
                       "metric_list": [{"metric": "exact_match"}, {"metric": "bleu"}]}
    out = {}
    for key, task in (("mc", mc_task), ("gen", gen_task)):
        (folder / f"{key}_task.yaml").write_text(yaml.safe_dump(task))
        suite = folder / f"bridge_{key}.yaml"
        suite.write_text(yaml.safe_dump({"name": f"bridge_{key}", "kind": "lm_eval",
                                         "options": {"task_yaml": f"{key}_task.yaml"}}))
        out[key] = suite
    return out


def run_lm_eval(model_dir: Path, folder: Path, task: str, batch: int) -> tuple[float, dict[str, Any]]:
    import lm_eval
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    t0 = time.perf_counter()
    lm = HFLM(pretrained=str(model_dir), dtype="float32", batch_size=batch, device="cpu")
    res = lm_eval.simple_evaluate(model=lm, tasks=[task], log_samples=True, bootstrap_iters=0,
                                  task_manager=TaskManager(include_path=str(folder), include_defaults=False))
    return time.perf_counter() - t0, res


def run_bridge(model_dir: Path, suite: Path, batch: int) -> tuple[float, Any]:
    from tunegate.core.model_spec import ModelSpec
    from tunegate.run.evaluate import evaluate

    t0 = time.perf_counter()
    result = evaluate(ModelSpec(model=str(model_dir), dtype="float32", batch_size=batch), [str(suite)],
                      cache_path=None)
    return time.perf_counter() - t0, result.suites[0]


def parity(res: dict[str, Any], task: str, sr: Any) -> dict[str, Any]:
    by_id = {r.id: r for r in sr.samples}
    differ, compared = 0, 0
    for s in res["samples"][task]:
        r = by_id[str(s["doc_id"])]
        for metric in s["metrics"]:
            if isinstance(s[metric], (int, float)):
                compared += 1
                differ += abs((r.score(metric) or 0.0) - float(s[metric])) > 1e-9
    aggregates = {}
    for full, value in res["results"][task].items():
        metric, _, flt = full.partition(",")
        if flt == "none" and isinstance(value, (int, float)):
            mine = sr.metric(metric)
            aggregates[metric] = {"lm_eval": value, "bridge": mine.value if mine else None,
                                  "equal": bool(mine and mine.value is not None and abs(mine.value - value) < 1e-9)}
    return {"documents": len(res["samples"][task]), "per_document_values_compared": compared,
            "per_document_values_differing": differ, "aggregates": aggregates}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mc", type=int, default=300)
    ap.add_argument("--gen", type=int, default=64)
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results")
    args = ap.parse_args()

    import torch

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        mc, gen, corpus = make_data(work, args.mc, args.gen)
        n_params = build_model(work / "model", corpus, args.hidden, args.layers, args.steps, None)
        suites = write_tasks(work, mc, gen, args.max_new_tokens)
        report: dict[str, Any] = {"model_parameters": n_params, "hidden": args.hidden, "layers": args.layers,
                                  "batch_size": args.batch_size, "device": "cpu", "threads": torch.get_num_threads(),
                                  "python": platform.python_version(), "timing": "end to end, after a warm-up run"}
        import lm_eval

        report["lm_eval"] = getattr(lm_eval, "__version__", "")
        for key, task in (("mc", "tg_bridge_mc"), ("gen", "tg_bridge_gen")):
            run_lm_eval(work / "model", work, task, args.batch_size)  # warm-up: imports, dataset caches
            run_bridge(work / "model", suites[key], args.batch_size)
            le_s, res = run_lm_eval(work / "model", work, task, args.batch_size)
            br_s, sr = run_bridge(work / "model", suites[key], args.batch_size)
            report[task] = {"lm_eval_s": round(le_s, 3), "bridge_s": round(br_s, 3),
                            "speedup_lm_eval_over_bridge": round(le_s / br_s, 2), **parity(res, task, sr)}
            print(json.dumps({task: report[task]}, indent=1), flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"lm_eval_bridge_{n_params // 1_000_000}M.json"
    path.write_text(json.dumps(report, indent=1) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
