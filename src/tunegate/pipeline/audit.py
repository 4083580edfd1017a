"""`tunegate audit`: the whole job from one `audit.yaml`.

fine-tune (optional) -> one run per model -> comparison -> gate verdict ->
report set. Everything a user can get wrong (the audit file, the suites and
their data, the policy, model folders, training data) is validated before any
model loads or trains. Responses are cached, so re-running an audit reuses the
base model's results (and any finished fine-tuning run) and computes only what
changed. Among the candidates that pass, the one with the largest gain on the
task metric is recommended, and every rejected candidate gets its reasons.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tunegate.compare.models import Comparison
from tunegate.core.config import AuditConfig, FinetuneBlock, FinetuneCandidate, IoLogSettings, load_yaml_model
from tunegate.core.errors import UserError
from tunegate.core.io import atomic_write_text, check_output_folder
from tunegate.core.model_spec import ModelSpec
from tunegate.core.results import RunResult
from tunegate.core.status import worst_first
from tunegate.core.verdict import AuditRecord, Recommendation, Verdict
from tunegate.run.io_log import IO_LOG_NAME, write_io_log
from tunegate.run.runner import RunOptions
from tunegate.suites.base import SuiteKind

TASK_KINDS = ("multiple_choice", "generation", "perplexity")


@dataclass
class Candidate:
    spec: ModelSpec
    label: str
    step: int | None = None


@dataclass
class AuditOutcome:
    exit_code: int
    out: Path
    verdict: Verdict | None
    comparison: Comparison | None
    recommendation: Recommendation | None
    runs: dict[str, Path] = field(default_factory=dict)
    #: False on a data-parallel rank other than 0: it computed its shares of the runs; rank 0 gated and wrote
    main_process: bool = True


BASE_FOLDER = "_base"  # runs/_base: no candidate's folder can be named so (slugs never start with "_" or ".")


def _slug(label: str) -> str:
    """A candidate's folder name under runs/: never empty, never hidden, never `.`/`..`, never the base's."""
    return re.sub(r"[^A-Za-z0-9_.\-]+", "-", label).strip("-_.") or "model"


def check_labels(base_label: str, labels: list[str]) -> None:
    """Refuse (exit 2) two models whose run folders would be one (compared case-insensitively) and reserved names.

    Uniqueness is on the final folder name, not the raw label: `cand one` and
    `cand/one` would share runs/cand-one/, and `base!` would look like the base.
    """
    seen: dict[str, str] = {_slug(base_label).lower(): f"the base's label {base_label!r}"}
    for label in labels:
        key = _slug(label).lower()
        if key == BASE_FOLDER:  # unreachable through _slug; kept so a change to _slug cannot reopen the hole
            raise UserError(f"audit: candidate label {label!r} takes the base's folder runs/{BASE_FOLDER}; choose another label")
        if key in seen:
            raise UserError(f"audit: candidate label {label!r} and {seen[key]} both become the folder name "
                            f"{_slug(label)!r} (compared case-insensitively); set a distinct `label:` on each model")
        seen[key] = f"candidate label {label!r}"


def _resolve(base_dir: Path, ref: str) -> str:
    """A path relative to the audit file when it points at something there (or looks like a path); else as given (hub id)."""
    p = Path(ref).expanduser()
    if p.is_absolute():
        return str(p)
    local = base_dir / p
    if local.exists() or ref.startswith((".", "~")):
        return str(local)
    return ref


def _local(base_dir: Path, ref: str) -> Path:
    """A path that is always local (output folders, the cache): relative to the audit file unless absolute."""
    p = Path(ref).expanduser()
    return p if p.is_absolute() else base_dir / p


def _resolve_spec(base_dir: Path, spec: ModelSpec) -> ModelSpec:
    update: dict[str, Any] = {"model": _resolve(base_dir, spec.model)}
    if spec.adapter:
        update["adapter"] = _resolve(base_dir, spec.adapter)
    return spec.model_copy(update=update)


def _recipe_path(base_dir: Path, ref: str) -> Path:
    from tunegate.finetune.recipe import resolve_recipe

    try:
        return resolve_recipe(ref, base_dir)
    except UserError as exc:
        raise UserError(f"finetune.recipe: {exc.message}") from None


def load_audit(path: Path) -> tuple[AuditConfig, Path]:
    cfg = load_yaml_model(path, AuditConfig)
    return cfg, path.resolve().parent


# ---- fine-tuning --------------------------------------------------------------
AUDIT_INPUTS = "tunegate_audit_inputs.json"


def _finetune_inputs(recipe: Path, block: FinetuneBlock, base: ModelSpec, data: Path, eval_path: Path | None) -> dict[str, Any]:
    """Everything a fine-tuning block's output depends on, so a finished run is reused only for the same inputs."""
    from tunegate.core.fingerprint import fingerprint_folder
    from tunegate.finetune.data import sha256_file

    base_dir = Path(base.model).expanduser()
    return {
        "recipe_sha256": sha256_file(recipe),
        "overrides": json.loads(json.dumps(block.overrides, sort_keys=True, default=str)),
        "data_sha256": sha256_file(data) if data.is_file() else None,
        "eval_sha256": sha256_file(eval_path) if eval_path and eval_path.is_file() else None,
        "base": fingerprint_folder(base_dir) if base_dir.is_dir() else f"{base.model}@{base.revision or 'main'}",
    }

def _finetune_candidates(block: FinetuneBlock, base: ModelSpec, base_dir: Path, echo: Callable[[str], None]) -> list[Candidate]:
    """Run (or reuse, or resume) one fine-tuning block and turn its checkpoints into candidates."""
    from tunegate.finetune import MANIFEST_NAME, finetune

    out = _local(base_dir, block.out)
    data = _local(base_dir, block.data)
    manifest_path = out / MANIFEST_NAME
    manifest: dict[str, Any] | None = json.loads(manifest_path.read_text()) if manifest_path.is_file() else None
    recipe = _recipe_path(base_dir, block.recipe)
    eval_path = _local(base_dir, block.eval) if block.eval else None
    inputs = _finetune_inputs(recipe, block, base, data, eval_path)
    record = out / AUDIT_INPUTS
    started = manifest is not None or (out / "state").is_dir()
    if started:
        previous = json.loads(record.read_text()) if record.is_file() else None
        if previous != inputs:
            changed = sorted(k for k in inputs if (previous or {}).get(k) != inputs[k]) if previous else ["(no record)"]
            raise UserError(f"finetune.out {out}: holds a fine-tuning run built from other inputs "
                            f"({', '.join(changed)} differ); choose another out folder or delete this one")
    if manifest is not None and manifest.get("status") == "complete":
        echo(f"fine-tune {block.label}: reusing the finished run in {out}")
    else:
        echo(f"fine-tune {block.label}: {'resuming' if started else 'training'} into {out}")
        if not started:
            atomic_write_text(record, json.dumps(inputs, indent=1, sort_keys=True))
        result = finetune(recipe, base=base.model, data=data, eval_data=eval_path, out=out,
                          overrides=dict(block.overrides), resume=started)
        manifest = result.manifest
    method = manifest.get("method", "lora")
    final = manifest.get("final") or {"step": None, "path": "final"}
    entries = [dict(e, final=False) for e in manifest.get("checkpoints", [])]
    if block.checkpoints == "final" or not entries or entries[-1].get("step") != final.get("step"):
        entries = ([] if block.checkpoints == "final" else entries) + [dict(final, final=True)]
    cands = []
    for entry in entries:
        folder = out / entry["path"]
        step = entry.get("step")
        label = f"{block.label}@final" if entry["final"] else f"{block.label}@step-{step}"
        if method == "lora":
            spec = base.model_copy(update={"adapter": str(folder), "label": label})
        else:
            spec = base.model_copy(update={"model": str(folder), "adapter": None, "label": label})
        cands.append(Candidate(spec, label, step))
    return cands


# ---- recommendation -----------------------------------------------------------
def default_task_metric(suites: list[SuiteKind], base_run: RunResult) -> str | None:
    """The first metric of the first task suite (multiple choice, generation, perplexity)."""
    for suite in suites:
        if suite.config.kind in TASK_KINDS:
            sr = base_run.suite(suite.config.name)
            if sr and sr.metrics:
                return f"{sr.name}/{sr.metrics[0].name}"
    return None


def recommend(comparison: Comparison, verdict: Verdict, metric: str | None) -> Recommendation:
    """Among passing candidates, the largest gain (in the metric's good direction) on `metric`; reasons for the rest."""
    rejected: dict[str, str] = {}
    passing: list[tuple[float, str]] = []
    for cv, cc in zip(verdict.candidates, comparison.candidates, strict=True):
        if cv.status != "pass":
            bad = worst_first([o for o in cv.outcomes if o.status != "pass"], lambda o: o.status)
            reasons = [f"{o.metric} {o.status}: {o.reason.rstrip('.')}" for o in bad] + list(cv.error_budget)
            rejected[cv.candidate] = "; ".join(reasons[:3]) or f"{cv.status}: see the rules table"
            continue
        m = cc.metric(metric) if metric else None
        gain = (m.delta * m.sign) if (m is not None and m.delta is not None) else float("-inf")
        passing.append((gain, cv.candidate))
    if not passing:
        return Recommendation(candidate=None, metric=metric, reason="no candidate passed the gate", rejected=rejected)
    passing.sort(key=lambda x: -x[0])
    gain, best = passing[0]
    shown = "n/a" if gain == float("-inf") else f"{gain:+.4g}"
    others = {name: f"passed, but a smaller gain on {metric} ({g:+.4g})" if g != float("-inf") else "passed"
              for g, name in passing[1:]}
    return Recommendation(candidate=best, metric=metric, gain=None if gain == float("-inf") else gain,
                          reason=f"passes every rule and has the largest gain on {metric} ({shown})",
                          rejected={**rejected, **others})


# ---- the whole job --------------------------------------------------------------
def _run_model(spec: ModelSpec, suites: list[SuiteKind], cache: Path | bool, seed: int, path: Path,
               echo: Callable[[str], None], io_log: IoLogSettings | None = None) -> RunResult:
    from tunegate.run.evaluate import evaluate as evaluate_model
    from tunegate.run.evaluate import is_main_process, load_backend

    backend = load_backend(spec)
    try:
        result = evaluate_model(spec, suites, cache_path=cache, options=RunOptions(seed=seed), backend=backend)
    finally:
        backend.close()
    if not is_main_process():  # a data-parallel rank other than 0 writes nothing
        return result
    result.save(path)
    io_log = io_log or IoLogSettings()
    write_io_log(result, path.parent / IO_LOG_NAME, redact=io_log.redact, sensitive=io_log.sensitive_suites)
    counts = result.counts()
    echo(f"  {spec.display_name}: {counts.get('scored', 0)} scored, {counts.get('errored', 0)} errored, "
         f"{counts.get('skipped', 0)} skipped; {result.cache['hits']} responses from cache, {result.cache['computed']} computed")
    return result


def _quiet(line: str) -> None:
    """The echo of a data-parallel rank other than 0."""


def run_audit(path: Path, *, out: Path | None = None, strict: bool | None = None,
              allow_underpowered: bool | None = None, echo: Callable[[str], None] = print) -> AuditOutcome:
    from tunegate.backends.base import backend_class
    from tunegate.compare.models import CompareSettings
    from tunegate.compare.scorer_validation import load_scorer_validations
    from tunegate.gate.plan import enforce_power, suite_info
    from tunegate.gate.verdict import load_policy
    from tunegate.pipeline.commands import gate_runs, runs_by_label
    from tunegate.report import write_outputs
    from tunegate.report.card import write_card
    from tunegate.run.evaluate import is_main_process
    from tunegate.run.suite_loader import load_suites

    if not is_main_process():  # data-parallel ranks other than 0 stay quiet; rank 0 tells the story
        echo = _quiet
    cfg, base_dir = load_audit(Path(path))
    # validate everything before a model loads
    suites = load_suites([_resolve(base_dir, s) if s.endswith((".yaml", ".yml")) else s for s in cfg.suites])
    unknown = sorted(set(cfg.io_log.sensitive_suites) - {s.config.name for s in suites})
    if unknown:
        raise UserError(f"io_log.sensitive_suites: {', '.join(unknown)}: not among the audit's suites "
                        f"({', '.join(s.config.name for s in suites)})")
    policy_path = _local(base_dir, cfg.policy)
    policy, policy_sha256 = load_policy(policy_path)
    validations = load_scorer_validations([_local(base_dir, v) for v in cfg.scorer_validations])
    # a rule that cannot decide at these suite sizes is refused before anything trains or loads (exit 2)
    enforce_power(policy, suite_info(suites), echo=echo, source=str(policy_path),
                  allow=cfg.allow_underpowered if allow_underpowered is None else allow_underpowered)
    base = _resolve_spec(base_dir, cfg.base).model_copy(update={"label": cfg.base.label or "base"})
    backend_class(base).check(base)
    explicit = [_resolve_spec(base_dir, c) for c in cfg.candidates if isinstance(c, ModelSpec)]
    for spec in explicit:
        backend_class(spec).check(spec)
    check_labels(base.display_name, [spec.display_name for spec in explicit])  # again below, with the fine-tuned ones
    for c in cfg.candidates:
        if isinstance(c, FinetuneCandidate):
            _recipe_path(base_dir, c.finetune.recipe)
            if not _local(base_dir, c.finetune.data).is_file():
                raise UserError(f"finetune.data: {c.finetune.data}: training data not found")
    out_dir = Path(out) if out else _local(base_dir, cfg.out)
    check_output_folder(out_dir, "--out" if out else "out")
    cache: Path | bool = _local(base_dir, cfg.cache) if cfg.cache else True
    strict = cfg.strict if strict is None else strict

    candidates: list[Candidate] = []
    for c in cfg.candidates:
        if isinstance(c, FinetuneCandidate):
            candidates += _finetune_candidates(c.finetune, base, base_dir, echo)
        else:
            spec = _resolve_spec(base_dir, c)
            candidates.append(Candidate(spec, spec.display_name))
    check_labels(base.display_name, [c.label for c in candidates])

    echo(f"running {len(suites)} suite(s) on the base and {len(candidates)} candidate(s)")
    runs_dir = out_dir / "runs"
    base_path = runs_dir / BASE_FOLDER / "results.json"
    base_run = _run_model(base, suites, cache, cfg.seed, base_path, echo, cfg.io_log)
    cand_paths, cand_runs = [], []
    for cand in candidates:
        p = runs_dir / _slug(cand.label) / "results.json"
        cand_runs.append(_run_model(cand.spec, suites, cache, cfg.seed, p, echo, cfg.io_log))
        cand_paths.append(p)
    if not is_main_process():  # a data-parallel rank other than 0: its shares are computed; rank 0 gates and writes
        return AuditOutcome(0, out_dir, None, None, None, main_process=False)

    settings = CompareSettings(allow_suite_mismatch=cfg.allow_suite_mismatch)
    # the runs are passed in memory: each results.json is written once and not read back
    comparison, verdict = gate_runs(policy, policy_path, policy_sha256, base_run, cand_runs, base_path=base_path,
                                    candidate_paths=cand_paths, strict=strict, settings=settings)
    metric = cfg.recommend_by or default_task_metric(suites, base_run)
    recommendation = recommend(comparison, verdict, metric)
    comparison.audit = AuditRecord(name=cfg.name, description=cfg.description, config=str(Path(path).resolve()),
                                   recommendation=recommendation, card=cfg.card,
                                   grid_intensity_g_per_kwh=cfg.grid_intensity_g_per_kwh)
    comparison.scorer_validations = validations
    # the compliance record first, so the report can link it (both read the same in-memory comparison)
    runs = runs_by_label(comparison, base_run, cand_runs)
    write_card(comparison, out_dir, runs)
    write_outputs(comparison, out_dir, runs)
    return AuditOutcome(verdict.exit_code, out_dir, verdict, comparison, recommendation,
                        {"base": base_path, **{c.label: p for c, p in zip(candidates, cand_paths, strict=True)}})
