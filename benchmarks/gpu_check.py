"""One GPU session's checks: the hf backend and fine-tuning on CUDA against the CPU, in one script.

    python benchmarks/gpu_check.py --out DIR

What it measures (all through the real CLI, as a user runs it), on a tiny llama
built on the fly (no download) and the project's built-in suites that need no
extra model (support_mc: log-likelihood; support_answers, memorization_example:
greedy generation):

1. parity: `tunegate run` on cpu/float32 vs cuda/float32 vs cuda with
   `device_map=auto` (float32) vs cuda/auto (bfloat16 where supported): per-request
   log-likelihood max |diff| against the CPU run and the share of identical
   greedy texts; the resolved dtype recorded in each results.json;
2. speed: wall time of each run (the response cache is off);
3. fine-tuning on the GPU: the `sft-lora` recipe (precision auto: bf16 on a GPU
   that supports it) for a few steps from the tiny base, its manifest's
   precision, device, energy (NVML) and timings; then `tunegate run` with the
   adapter.

Writes DIR/gpu_check.json and prints it. Exits non-zero when a check fails
(float32 parity worse than 1e-4 or any greedy text different in float32).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

SUITES = "support_mc,support_answers,memorization_example"
ROOT = Path(__file__).resolve().parents[1]


def tunegate(*args: str) -> float:
    """Run the CLI; its wall time in seconds (raises on a non-zero exit)."""
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "tunegate.cli", *args], capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"tunegate {' '.join(args)} exited {proc.returncode}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return time.perf_counter() - t0


def responses(path: Path) -> dict[tuple[str, str, int], dict[str, Any]]:
    run = json.loads((path / "results.json").read_text())
    out = {}
    for suite in run["suites"]:
        for sample in suite["samples"]:
            for i, resp in enumerate(sample.get("responses") or []):
                out[(suite["name"], sample["sample"]["id"], i)] = resp
    return out


def compare(ref: Path, other: Path) -> dict[str, Any]:
    a, b = responses(ref), responses(other)
    assert a.keys() == b.keys(), "different requests"
    ll = [abs(a[k]["loglikelihood"] - b[k]["loglikelihood"]) for k in a if a[k].get("loglikelihood") is not None]
    texts = [(a[k]["text"], b[k]["text"]) for k in a if a[k].get("text") is not None]
    return {"loglik_requests": len(ll), "loglik_max_abs_diff": max(ll) if ll else None,
            "loglik_mean_abs_diff": sum(ll) / len(ll) if ll else None, "generations": len(texts),
            "identical_text_share": sum(x == y for x, y in texts) / len(texts) if texts else None}


def recorded(path: Path) -> dict[str, Any]:
    run = json.loads((path / "results.json").read_text())
    settings = run.get("model_identity", {})
    prov = run.get("provenance") or {}
    return {"identity": settings, "provenance_dtype": prov.get("dtype"), "provenance_backend": prov.get("backend")}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    import torch

    from tunegate.finetune.tiny import build_tiny_model

    report: dict[str, Any] = {"torch": torch.__version__, "cuda": torch.cuda.is_available(),
                              "device_name": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
                              "bf16_supported": torch.cuda.is_available() and torch.cuda.is_bf16_supported()}
    work = Path(os.environ.get("TMPDIR", "/tmp")) / "tunegate-gpu-check"
    model = build_tiny_model(work / "model", arch="llama", hidden=256, layers=4, heads=4, n_positions=512, vocab_size=2048)
    runs = {"cpu_fp32": ["--device", "cpu", "--dtype", "float32"],
            "cuda_fp32": ["--device", "cuda", "--dtype", "float32"],
            "cuda_device_map_auto_fp32": ["--dtype", "float32", "--option", "device_map=auto"],
            "cuda_auto_dtype": ["--device", "cuda"]}
    if os.environ.get("GPU_CHECK_DRY_RUN"):  # the script's own smoke test on a CPU machine: every run on the CPU
        runs = {k: [("cpu" if a == "cuda" else a) for a in v if a != "device_map=auto" and a != "--option"]
                for k, v in runs.items()}
    report["runs"] = {}
    for name, extra in runs.items():
        folder = work / name
        wall = tunegate("run", "--model", str(model), "--suites", SUITES, "--out", str(folder), "--no-cache",
                        "--batch-size", "32", *extra)
        report["runs"][name] = {"wall_s": round(wall, 2), **recorded(folder)}
    for name in list(runs)[1:]:
        report["runs"][name]["vs_cpu_fp32"] = compare(work / "cpu_fp32", work / name)

    # fine-tuning on the GPU, precision auto, a few steps
    ft = work / "ft"
    wall = tunegate("finetune", "sft-lora", "--base", str(model), "--data", str(ROOT / "fine_tune" / "data" / "support_train.jsonl"),
                    "--out", str(ft), "--no-progress", "epochs=1", "save_every_epoch=false")
    manifest = json.loads((ft / "manifest.json").read_text())
    report["finetune"] = {"wall_s": round(wall, 2), **{k: manifest.get(k) for k in
                          ("precision", "device", "energy", "timings", "hardware", "losses") if k in manifest}}
    report["finetune"]["manifest_keys"] = sorted(manifest)
    wall = tunegate("run", "--model", str(model), "--adapter", str(ft / "final"), "--suites", "support_mc", "--out",
                    str(work / "adapter_run"), "--no-cache", "--device", "cpu" if os.environ.get("GPU_CHECK_DRY_RUN") else "cuda")
    report["adapter_run_wall_s"] = round(wall, 2)

    text = json.dumps(report, indent=1, default=str)
    (out / "gpu_check.json").write_text(text + "\n")
    print(text)
    fp32 = report["runs"]["cuda_fp32"]["vs_cpu_fp32"]
    ok = (fp32["loglik_max_abs_diff"] is not None and fp32["loglik_max_abs_diff"] < 1e-4
          and fp32["identical_text_share"] == 1.0)
    print("float32 parity:", "ok" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
