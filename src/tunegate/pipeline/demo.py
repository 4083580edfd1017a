"""`tunegate demo`: the offline main job, end to end, on a machine with no network and no GPU.

What it does (see docs/audit.md, "The demo"):

1. builds a tiny random-init GPT-2-style model whose byte-level BPE tokenizer is
   trained on the demo's own texts (`tunegate.finetune.tiny`);
2. "pre-trains" it into a small support assistant with a full fine-tune on
   `base_corpus.jsonl` (refusals of harmful requests, helpful answers to safe
   look-alikes, calm replies to angry customers, generic support replies). A
   random-init model neither refuses nor insults anyone, so a safety regression
   could not be seen against it: the base must be aligned first;
3. runs `tunegate audit` on `audit.yaml`: two LoRA fine-tunes of that base on the
   same support data, one clean, one where 20% of the rows were replaced by
   unsafe compliance and insults, audited against the base on task, harmful
   request, over-refusal, toxicity and memorization suites under `policy.yaml`.

Everything is seeded, so the verdicts reproduce run to run. The data and config
live in `fine_tune/demo/` (shipped in the wheel, found by `tunegate.core.shipped`); models,
runs and the response cache go under `<out>/work/`, in folders named by a
digest of what they were built from, and a rerun reuses the built base, the
finished fine-tunes and every cached response.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tunegate.core.config import read_yaml
from tunegate.core.errors import UserError
from tunegate.core.shipped import shipped_dir
from tunegate.pipeline.audit import AuditOutcome, run_audit


def demo_dir() -> Path:
    """The demo's data and config: the copy inside the installed package, else the source tree's."""
    folder = shipped_dir("fine_tune") / "demo"
    if (folder / "audit.yaml").is_file():
        return folder
    raise UserError("the demo's files (fine_tune/demo) are missing from this installation; reinstall tunegate")


@dataclass
class DemoSettings:
    """Size of the tiny base and length of its pre-training; the test suite uses a smaller one."""

    hidden: int = 128
    layers: int = 3
    heads: int = 4
    n_positions: int = 256
    vocab_size: int = 1024
    seed: int = 0
    #: torch CPU threads while the demo runs (None: torch's default). One thread is barely slower on an idle
    #: 2-core machine (55 s vs 43 s) and several times faster on a busy one, where two processes each
    #: spinning two OpenMP threads on two cores slow each other down about sevenfold. Results are identical.
    threads: int | None = 1
    #: recipe overrides for the base's pre-training (base-full.yaml) and the candidates (candidate-lora.yaml)
    base_overrides: dict[str, Any] = field(default_factory=dict)
    candidate_overrides: dict[str, Any] = field(default_factory=dict)


@dataclass
class DemoOutcome:
    audit: AuditOutcome
    report: Path
    seconds: float


def _texts(paths: list[Path]) -> list[str]:
    out = []
    for p in paths:
        for line in p.read_text(encoding="utf-8").splitlines():
            if line.strip():
                row = json.loads(line)
                out.append(row["prompt"] + row["completion"])
    return out


def _key(*parts: bytes | str) -> str:
    """A short digest of everything a trained model depends on, used in its folder name.

    A changed recipe, data file or setting then trains into a new folder instead
    of silently reusing a run made with the old one (run_audit reuses a finished
    run when its data match, and does not compare recipes)."""
    import hashlib

    h = hashlib.sha256()
    for part in parts:
        h.update(part.encode() if isinstance(part, str) else part)
        h.update(b"\x00")
    return h.hexdigest()[:10]


def _is_complete(run: Path) -> bool:
    manifest = run / "manifest.json"
    return manifest.is_file() and json.loads(manifest.read_text()).get("status") == "complete"


def build_base(work: Path, demo: Path, settings: DemoSettings, echo: Callable[[str], None]) -> Path:
    """Build (or reuse) the tiny base assistant; returns its model folder."""
    from tunegate.finetune import finetune
    from tunegate.finetune.data import sha256_file
    from tunegate.finetune.tiny import build_tiny_model

    corpus = demo / "base_corpus.jsonl"
    texts = [demo / "base_corpus.jsonl", demo / "clean.jsonl", demo / "contaminated.jsonl"]
    shape = {k: v for k, v in asdict(settings).items() if k not in ("candidate_overrides", "threads")}
    key = _key(json.dumps(shape, sort_keys=True), (demo / "base-full.yaml").read_bytes(),
               *(p.read_bytes() for p in texts))
    init, run = work / f"base-{key}" / "init", work / f"base-{key}" / "run"
    if _is_complete(run):
        manifest = json.loads((run / "manifest.json").read_text())
        if manifest.get("data", {}).get("sha256") != sha256_file(corpus):
            raise UserError(f"{run}: holds a base trained on different data; delete {work} and rerun")
        echo(f"base: reusing the trained base assistant in {run / 'final'}")
        return run / "final"
    if not (init / "model.safetensors").is_file():
        echo(f"base: building a random-init GPT-2 ({settings.layers} layers, hidden {settings.hidden}) "
             f"with a tokenizer trained on the demo data")
        build_tiny_model(init, "gpt2", seed=settings.seed, n_positions=settings.n_positions, hidden=settings.hidden,
                         layers=settings.layers, heads=settings.heads, corpus=_texts(texts), vocab_size=settings.vocab_size)
    resume = (run / "manifest.json").is_file() or (run / "state").is_dir()
    echo(f"base: pre-training it into a support assistant on {corpus.name} ({'resuming' if resume else 'full fine-tune'})")
    result = finetune(demo / "base-full.yaml", base=str(init), data=corpus, out=run, overrides=dict(settings.base_overrides),
                      resume=resume)
    return Path(result.final_dir)


def write_audit_file(work: Path, out: Path, demo: Path, base_model: Path, settings: DemoSettings) -> Path:
    """The demo's audit.yaml with every path made absolute and the base, runs, cache and out filled in."""
    import yaml

    cfg = read_yaml(demo / "audit.yaml")
    cfg["base"]["model"] = str(base_model.resolve())
    for cand in cfg["candidates"]:
        block = cand["finetune"]
        block["recipe"] = str((demo / block["recipe"]).resolve())
        block["data"] = str((demo / block["data"]).resolve())
        if settings.candidate_overrides:
            block["overrides"] = {**block.get("overrides", {}), **settings.candidate_overrides}
        key = _key(str(base_model.resolve()), Path(block["recipe"]).read_bytes(), Path(block["data"]).read_bytes(),
                   json.dumps(block.get("overrides", {}), sort_keys=True))
        block["out"] = str((work / f"{block['out']}-{key}").resolve())
    cfg["suites"] = [str((demo / s).resolve()) if s.endswith((".yaml", ".yml")) else s for s in cfg["suites"]]
    cfg["policy"] = str((demo / cfg["policy"]).resolve())
    cfg["out"] = str(out.resolve())
    cfg["cache"] = str((work / "cache.sqlite").resolve())
    path = work / "audit.yaml"
    path.write_text("# written by `tunegate demo` from its audit.yaml; rerun with `tunegate audit` on this file\n"
                    + yaml.safe_dump(cfg, sort_keys=False), encoding="utf-8")
    return path


def run_demo(out: Path = Path("reports/demo"), settings: DemoSettings | None = None,
             echo: Callable[[str], None] = print) -> DemoOutcome:
    """Build the base, fine-tune and audit the two candidates, write the report set under `out`."""
    t0 = time.perf_counter()
    settings = settings or DemoSettings()
    demo = demo_dir()
    out = Path(out)
    work = out / "work"
    work.mkdir(parents=True, exist_ok=True)
    import torch

    previous = torch.get_num_threads()
    if settings.threads:
        torch.set_num_threads(settings.threads)
    try:
        base_model = build_base(work, demo, settings, echo)
        audit_file = write_audit_file(work, out, demo, base_model, settings)
        outcome = run_audit(audit_file, echo=echo)
    finally:
        torch.set_num_threads(previous)
    return DemoOutcome(outcome, out / "report.html", time.perf_counter() - t0)


def summary_lines(result: DemoOutcome) -> list[str]:
    """What the command prints: where the report is, each candidate's verdict and failing rules, the recommendation."""

    outcome = result.audit
    assert outcome.verdict is not None  # the demo runs in one process, which gates
    lines = [f"report: {result.report}  (also summary.md, junit.xml, comparison.json in {outcome.out})",
             f"finished in {result.seconds:.0f}s; gate: {outcome.verdict.headline} (exit code {outcome.exit_code})"]
    for cv in outcome.verdict.candidates:
        lines.append(f"  {cv.candidate}: {cv.status.upper()}")
        for o in cv.outcomes:
            if o.status != "pass":
                lines.append(f"    {o.status}: {o.label}: {o.reason}")
        lines += [f"    incomplete: {why}" for why in cv.incomplete]
    rec = outcome.recommendation
    if rec is not None and rec.candidate:
        lines.append(f"recommended: {rec.candidate}: {rec.reason}")
    else:
        lines.append(f"recommended: none ({rec.reason if rec else 'no candidate passed'})")
    return lines
