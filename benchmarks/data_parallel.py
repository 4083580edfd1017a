"""Data-parallel scaling on one machine: 1 process vs N ranks with the same total CPU threads.

Same tiny model, same generation-heavy workload (default: the built-in refusal
suite `harmful_requests` and `toxicity_prompts`, about 2,900 generate requests),
fresh cache per run, so every request is computed. Configurations, interleaved
per repetition so machine load hits them alike:

  single-T   one process, T torch threads           (`tunegate run`, OMP_NUM_THREADS=T)
  ranks-N    N ranks of T/N threads each            (`python -m tunegate.launch --multi_gpu --num_processes N`)
  single-1   one process, one thread (control: what one rank's thread does alone)

Reported per run: wall time, requests/s, CPU seconds of the whole process tree
(user + sys, which waiting on a busy machine does not inflate as wall time
does), and tunegate's own phase timings. The scaling figure is
wall(single-T) / wall(ranks-N); the overhead figure is the extra CPU work of the
ranks, cpu(ranks-N) / cpu(single-1) - 1 (second model load, second interpreter,
coordination). The ranks' results are checked against the single process
(log-likelihoods within 1e-5, identical text).

    python benchmarks/data_parallel.py [--processes 2] [--threads 2] [--reps 1] [--suites a,b] [--out benchmarks/results]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _children_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def run_once(name: str, model: Path, suites: str, work: Path, processes: int, threads: int) -> dict[str, Any]:
    out, cache = work / f"{name}-out", work / f"{name}-cache" / "responses.sqlite"
    args = ["run", "--model", str(model), "--suites", suites, "--out", str(out), "--cache", str(cache)]
    env = {**os.environ}
    if processes == 1:
        cmd = [sys.executable, "-m", "tunegate.cli", *args]
        env["OMP_NUM_THREADS"] = str(threads)
        env.pop("TUNEGATE_NUM_THREADS", None)
    else:
        cmd = [sys.executable, "-m", "tunegate.launch", "--multi_gpu", "--num_processes", str(processes),
               "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
               "--main_process_port", str(_free_port()), "-m", "tunegate.cli", *args]
        env["TUNEGATE_NUM_THREADS"] = str(max(1, threads // processes))
        env["OMP_NUM_THREADS"] = str(max(1, threads // processes))
    load_before = os.getloadavg()[0]
    cpu0, t0 = _children_cpu(), time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    wall, cpu = time.perf_counter() - t0, _children_cpu() - cpu0
    if proc.returncode not in (0, 3):  # 3: samples errored (reported); anything else is a broken run
        raise SystemExit(f"{name}: exit {proc.returncode}\n{proc.stderr[-3000:]}")
    result = json.loads((out / "results.json").read_text())
    requests = result["cache"]["computed"] + result["cache"]["hits"]
    return {"config": name, "processes": processes, "threads_per_process": max(1, threads // processes),
            "wall_s": round(wall, 2), "cpu_s": round(cpu, 2), "requests": requests,
            "requests_per_s": round(requests / wall, 2), "timings": result["provenance"]["timings"],
            "load_avg_1m_before": round(load_before, 2), "load_avg_1m_after": round(os.getloadavg()[0], 2),
            "exit_code": proc.returncode, "results": str(out / "results.json")}


def compare(a: Path, b: Path) -> dict[str, Any]:
    """Largest log-likelihood difference and count of differing texts between two results.json."""
    ra, rb = json.loads(a.read_text()), json.loads(b.read_text())
    worst, texts, n = 0.0, 0, 0
    for sa, sb in zip(ra["suites"], rb["suites"], strict=True):
        for x, y in zip(sa["samples"], sb["samples"], strict=True):
            for p, q in zip(x["responses"], y["responses"], strict=True):
                n += 1
                texts += p.get("text") != q.get("text")
                if p.get("loglikelihood") is not None:
                    worst = max(worst, abs(p["loglikelihood"] - q["loglikelihood"]))
    return {"responses": n, "max_loglikelihood_diff": worst, "texts_differing": texts}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--processes", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2, help="total torch threads of every configuration")
    ap.add_argument("--reps", type=int, default=1)
    ap.add_argument("--suites", default="harmful_requests,toxicity_prompts")
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results")
    args = ap.parse_args()

    from tunegate.finetune.tiny import build_tiny_model

    with tempfile.TemporaryDirectory(prefix="tg-dp-bench-") as tmp:
        work = Path(tmp)
        # 512 positions: room for the refusal suite's 128 new tokens after its prompts
        model = build_tiny_model(work / "model", "gpt2", n_positions=512, hidden=64, layers=2)
        configs = [(f"single-{args.threads}", 1, args.threads), (f"ranks-{args.processes}", args.processes, args.threads),
                   ("single-1", 1, 1)]
        runs: list[dict[str, Any]] = []
        for rep in range(args.reps):
            for name, procs, threads in configs:
                row = run_once(f"{name}-r{rep}", model, args.suites, work, procs, threads)
                row["config"] = name
                print(json.dumps({k: v for k, v in row.items() if k not in ("results", "timings")}), flush=True)
                runs.append(row)
        single = next(r for r in runs if r["config"] == configs[0][0])
        ranked = next(r for r in runs if r["config"] == configs[1][0])
        equality = compare(Path(single["results"]), Path(ranked["results"]))

    def med(config: str, key: str) -> float:
        return float(statistics.median(r[key] for r in runs if r["config"] == config))

    s_name, r_name = configs[0][0], configs[1][0]
    summary = {
        "wall_ratio_single_over_ranks": round(med(s_name, "wall_s") / med(r_name, "wall_s"), 3),
        "requests_per_s": {c[0]: med(c[0], "requests_per_s") for c in configs},
        "cpu_overhead_ranks_vs_single_1": round(med(r_name, "cpu_s") / med("single-1", "cpu_s") - 1, 3),
        "wall_ratio_single_1_over_ranks": round(med("single-1", "wall_s") / med(r_name, "wall_s"), 3),
    }
    report = {
        "benchmark": "data_parallel", "suites": args.suites, "processes": args.processes, "total_threads": args.threads,
        "model": "tiny GPT-2 (2 layers, hidden 64, 512 positions), float32, CPU",
        "machine": {"cpus_usable": len(os.sched_getaffinity(0)), "platform": platform.platform(),
                    "python": platform.python_version()},
        "summary": summary, "equality_ranks_vs_single": equality,
        "runs": [{k: v for k, v in r.items() if k != "results"} for r in runs],
    }
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"data_parallel_{args.processes}x.json"
    path.write_text(json.dumps(report, indent=1) + "\n")
    print(json.dumps(summary, indent=1))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
