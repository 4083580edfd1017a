"""Command-line layer: parse arguments, call the public API, map errors to exit codes.

Every command is thin. A `TunegateError` becomes one line on stderr and its
documented exit code (0 pass, 1 gate failed, 2 bad input, 3 incomplete).
Anything else is a failure of the tool, never a gate decision: it exits 3
with a one-line summary, and the traceback goes to a log file (printed too
under `--debug` or TUNEGATE_DEBUG=1). Only a gate decision exits 1.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

import click
from pydantic import ValidationError

from tunegate.core.errors import ExitCode, TunegateError, UserError
from tunegate.core.io import check_output_folder


def _parse_kv(pairs: tuple[str, ...], what: str) -> dict[str, Any]:
    """`key=value` pairs; values are parsed as YAML scalars (numbers, booleans)."""
    import yaml

    out: dict[str, Any] = {}
    for item in pairs:
        if "=" not in item:
            raise UserError(f"{what}: expected key=value, got {item!r}")
        k, v = item.split("=", 1)
        out[k.strip()] = yaml.safe_load(v) if v else ""
    return out


_DEBUG = {"on": os.environ.get("TUNEGATE_DEBUG", "") not in ("", "0")}


def _set_debug(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    if value:
        _DEBUG["on"] = True


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="tunegate")
@click.option("--debug", is_flag=True, expose_value=False, is_eager=True, callback=_set_debug,
              help="Print the traceback of an unexpected failure (it is always written to a log file).")
def cli() -> None:
    """tunegate: evaluate, compare and gate fine-tuned language models."""


@cli.command()
@click.option("--model", required=True, help="Hub id or local folder of the model.")
@click.option("--suites", "suite_refs", required=True, help="Comma-separated suite names or YAML paths.")
@click.option("--out", type=click.Path(path_type=Path), required=True, help="Output folder for results.json.")
@click.option("--backend", default="hf", show_default=True, help="Backend plugin name.")
@click.option("--revision", default=None)
@click.option("--adapter", default=None, help="PEFT adapter folder applied on the model.")
@click.option("--dtype", type=click.Choice(["auto", "float32", "bfloat16", "float16"]), default="auto", show_default=True)
@click.option("--device", default=None, help="cpu, cuda, cuda:1 ... (default: CUDA when present)")
@click.option("--batch-size", type=int, default=32, show_default=True)
@click.option("--max-length", type=int, default=None)
@click.option("--label", default=None, help="Display name in reports.")
@click.option("--chat-template/--no-chat-template", default=False, help="Wrap generation prompts in the tokenizer's chat template.")
@click.option("--trust-remote-code", is_flag=True, help="Allow the model repo's own Python code (off by default).")
@click.option("--allow-pickle", is_flag=True, help="Allow non-safetensors weights for this model.")
@click.option("--option", "backend_options", multiple=True, help="Backend option key=value (repeatable).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--cache", "cache_path", type=click.Path(path_type=Path), default=None,
              help="Response cache file (default ~/.cache/tunegate).")
@click.option("--no-cache", is_flag=True, help="Do not read or write the response cache.")
@click.option("--redact", is_flag=True,
              help="Drop raw text (prompts, outputs, references) of sensitive suites from OUT/io_log.jsonl.gz; "
                   "sensitive: suites with a content warning and those named by --sensitive-suite.")
@click.option("--sensitive-suite", "sensitive", multiple=True, help="Treat this suite as sensitive under --redact (repeatable).")
def run(model: str, suite_refs: str, out: Path, backend: str, revision: str | None, adapter: str | None, dtype: str,
        device: str | None, batch_size: int, max_length: int | None, label: str | None, chat_template: bool,
        trust_remote_code: bool, allow_pickle: bool, backend_options: tuple[str, ...], seed: int,
        cache_path: Path | None, no_cache: bool, redact: bool, sensitive: tuple[str, ...]) -> None:
    """Evaluate one model on suites and write OUT/results.json and OUT/io_log.jsonl.gz."""
    from tunegate.core.model_spec import ModelSpec
    from tunegate.run.evaluate import evaluate, is_main_process
    from tunegate.run.runner import RunOptions
    from tunegate.run.suite_loader import load_suites

    refs = [r.strip() for r in suite_refs.split(",") if r.strip()]
    if not refs:
        raise UserError("--suites: give at least one suite name or path (see `tunegate suites`)")
    check_output_folder(out)
    suites = load_suites(refs)  # validates every data row before the model loads
    unknown = sorted(set(sensitive) - {su.config.name for su in suites})
    if unknown:
        raise UserError(f"--sensitive-suite {', '.join(unknown)}: not among the suites of this run "
                        f"({', '.join(su.config.name for su in suites)})")
    spec = ModelSpec(model=model, backend=backend, revision=revision, adapter=adapter, dtype=dtype, device=device,  # type: ignore[arg-type]
                     batch_size=batch_size, max_length=max_length, label=label, chat_template=chat_template,
                     trust_remote_code=trust_remote_code, allow_pickle=allow_pickle,
                     options=_parse_kv(backend_options, "--option"))
    cache: Path | None | bool = None if no_cache else (cache_path or True)
    result = evaluate(spec, suites, cache_path=cache, options=RunOptions(seed=seed))
    if not is_main_process():  # a data-parallel rank other than 0: it computed its share; rank 0 writes and reports
        return
    out.mkdir(parents=True, exist_ok=True)
    result.save(out / "results.json")
    from tunegate.run.io_log import IO_LOG_NAME, write_io_log

    write_io_log(result, out / IO_LOG_NAME, redact=redact, sensitive=sensitive)
    counts = result.counts()
    click.echo(f"wrote {out / 'results.json'}, {IO_LOG_NAME}")
    for s in result.suites:
        shown = ", ".join(f"{m.name}={m.value:.4g}" for m in s.metrics[:4] if m.value is not None)
        c = s.counts
        click.echo(f"  {s.name}: {c.get('scored', 0)} scored, {c.get('errored', 0)} errored, {c.get('skipped', 0)} skipped; {shown}")
    click.echo(f"  responses: {result.cache['hits']} from cache, {result.cache['computed']} computed")
    if counts.get("errored", 0):
        click.echo(f"error: run incomplete: {counts['errored']} sample(s) errored (reasons are in results.json)", err=True)
        sys.exit(ExitCode.INCOMPLETE)


@cli.command("suites")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list of {name, kind, samples, description}.")
def list_suites(as_json: bool) -> None:
    """List the built-in suites."""
    from tunegate.core.config import SuiteConfig, load_yaml_model
    from tunegate.core.errors import MissingDependencyError
    from tunegate.run.suite_loader import builtin_groups, builtin_suites, load_group, load_suite, suite_size

    rows: list[dict[str, Any]] = []
    for name, path in sorted(builtin_suites().items()):
        try:
            suite = load_suite(str(path), read_data=False)
            size = suite_size(suite)
        except MissingDependencyError as exc:  # a built-in of an optional kind (lm_eval): listed, not counted
            config = load_yaml_model(path, SuiteConfig)
            rows.append({"name": name, "kind": config.kind, "samples": None,
                         "description": f"(unavailable: {exc}) {config.description.strip()}"})
            continue
        rows.append({"name": name, "kind": suite.config.kind, "samples": size,
                     "description": suite.config.description.strip()})
    for name, path in sorted(builtin_groups().items()):
        group = load_group(path)
        rows.append({"name": name, "kind": "group", "samples": None, "suites": group.suites,
                     "description": f"= {' + '.join(group.suites)}. {group.description.strip()}"})
    if as_json:
        click.echo(json.dumps(rows, indent=1))
        return
    width = max((len(r["name"]) for r in rows), default=4)
    for r in rows:
        first = r["description"].splitlines()[0] if r["description"] else ""
        first = first if len(first) <= 90 else first[:89].rstrip() + "…"
        click.echo(f"{r['name']:<{width}}  {r['kind']:<16} {r['samples'] if r['samples'] is not None else '-':>5}  {first}")


@cli.command()
def plugins() -> None:
    """List installed backends, suite kinds and scorers."""
    from tunegate.core import plugins as registry

    for group in registry.GROUPS:
        click.echo(f"{group}:")
        for row in registry.describe(group):
            click.echo(f"  {row['name']:<20} {row['target']}  [{row['package']}]")


@cli.command()
@click.argument("config", type=click.Path(path_type=Path))
@click.option("--out", type=click.Path(path_type=Path), default=None, help="Override the audit's output folder.")
@click.option("--strict/--no-strict", default=None, help="Treat inconclusive rules as failures (overrides audit.yaml).")
@click.option("--allow-underpowered", is_flag=True, default=None,
              help="Run even if a policy rule cannot decide at the suites' sizes (warn instead of exit 2).")
def audit(config: Path, out: Path | None, strict: bool | None, allow_underpowered: bool | None) -> None:
    """Run a whole audit from audit.yaml and exit with the gate's code."""
    from tunegate.pipeline.audit import run_audit

    outcome = run_audit(config, out=out, strict=strict, allow_underpowered=allow_underpowered, echo=click.echo)
    if not outcome.main_process or outcome.verdict is None:  # a data-parallel rank other than 0: rank 0 gates and reports
        return
    for line in outcome.verdict.describe():
        click.echo(line)
    rec = outcome.recommendation
    click.echo(f"recommended: {(rec.candidate if rec else None) or 'none'} ({rec.reason if rec else ''})")
    click.echo(f"report: {outcome.out / 'report.html'}")
    sys.exit(outcome.exit_code)


@cli.command("card")
@click.argument("folder", type=click.Path(path_type=Path))
@click.option("--out", type=click.Path(path_type=Path), required=True, help="Folder for model_card.md and technical_documentation.*.")
@click.option("--candidate", default=None, help="The candidate the model card describes (default: the recommended one).")
def card_cmd(folder: Path, out: Path, candidate: str | None) -> None:
    """Write a model card and a technical documentation (EU AI Act Annex IV / XI headings) from an audit folder."""
    from tunegate.pipeline.commands import card_from_folder

    check_output_folder(out)
    paths = card_from_folder(folder, out, candidate)
    click.echo("wrote " + ", ".join(str(p) for p in paths.values()))


@cli.group("rate")
def rate_group() -> None:
    """Human preference ratings of an audit's pairwise suites (blinded sheet out, ratings in)."""


@rate_group.command("export")
@click.argument("folder", type=click.Path(path_type=Path))
@click.option("--out", type=click.Path(path_type=Path), required=True, help="Folder for rating_sheet.html, sheet.csv, key.json.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the pair order and the A/B assignment.")
def rate_export(folder: Path, out: Path, seed: int) -> None:
    """Write a blinded, offline HTML rating sheet (and a CSV) of FOLDER's pairwise answer pairs; key.json unblinds."""
    from tunegate.pipeline.rate import export_sheet

    paths = export_sheet(folder, out, seed=seed)
    click.echo("wrote " + ", ".join(str(p) for p in paths.values()) + " (keep key.json away from the raters)")


@rate_group.command("import")
@click.argument("ratings", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--key", "key_path", type=click.Path(path_type=Path), default=None,
              help="key.json from `tunegate rate export` (default: beside the first ratings file).")
@click.option("--audit", "audit_dir", type=click.Path(path_type=Path), default=None,
              help="Audit folder to attach the figures to and re-render (default: the one the key names).")
@click.option("--out", type=click.Path(path_type=Path), default=None, help="Where to write human_ratings.json (default: beside the key).")
def rate_import(ratings: tuple[Path, ...], key_path: Path | None, audit_dir: Path | None, out: Path | None) -> None:
    """Turn rating files (JSONL from the sheet, or the CSV filled in) into pairwise metrics with agreement figures."""
    from tunegate.core.format import fmt
    from tunegate.pipeline.rate import import_ratings

    report = import_ratings(list(ratings), key_path=key_path, audit_dir=audit_dir, out=out)
    for g in report["groups"]:
        h, c = g["human"], g["human"]["counts"]
        kappa = f", {h['kappa_method']} kappa {fmt(h['kappa'])}" if h["kappa_method"] else ""
        judge = f", judge agreement {fmt(h['judge_agreement'])}" if h["judge_pairs"] else ""
        click.echo(f"{g['candidate']} / {g['suite']}: {c['n']} pairs, win rate {fmt(c['win_rate'])} "
                   f"[{fmt(c['win_ci'][0])}, {fmt(c['win_ci'][1])}], tie rate {fmt(c['tie_rate'])}{kappa}{judge}")
    click.echo(f"wrote {report['written']}" + (f"; report re-rendered in {report['report']}" if "report" in report else ""))


@cli.command()
@click.option("--out", type=click.Path(path_type=Path), default=Path("reports/demo"), show_default=True)
def demo(out: Path) -> None:
    """Offline demo: build a tiny assistant, fine-tune a clean and a contaminated candidate, audit both."""
    from tunegate.pipeline.demo import run_demo, summary_lines

    check_output_folder(out)
    result = run_demo(out, echo=click.echo)
    click.echo("")
    for line in summary_lines(result):
        click.echo(line)


_stats_options = [
    click.option("--out", type=click.Path(path_type=Path), required=True,
                 help="Folder for report.html, comparison.json, junit.xml, summary.md."),
    click.option("--resamples", type=click.IntRange(min=100), default=2000, show_default=True, help="Bootstrap/permutation resamples."),
    click.option("--seed", type=int, default=0, show_default=True, help="Seed of the resampling."),
]


_ALLOW_MISMATCH_HELP = ("Compare suites whose config hash, data hash or version differ between the runs "
                        "(refused by default); the report shows each mismatch in red.")


def _with_stats_options(fn: Any) -> Any:
    for opt in reversed(_stats_options):
        fn = opt(fn)
    return fn


@cli.command()
@click.argument("base", type=click.Path(path_type=Path))
@click.argument("candidates", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--confidence", type=click.FloatRange(0.5, 1.0, min_open=True, max_open=True), default=0.95, show_default=True)
@click.option("--allow-suite-mismatch", is_flag=True, help=_ALLOW_MISMATCH_HELP)
@_with_stats_options
def compare(base: Path, candidates: tuple[Path, ...], confidence: float, allow_suite_mismatch: bool, out: Path, resamples: int,
            seed: int) -> None:
    """Compare BASE results.json with one or more CANDIDATE results.json (paired statistics, no verdict)."""
    from tunegate.compare.models import CompareSettings
    from tunegate.pipeline.commands import compare_and_write

    check_output_folder(out)
    compare_and_write(base, list(candidates), out, CompareSettings(confidence=confidence, n_resamples=resamples, seed=seed,
                                                                   allow_suite_mismatch=allow_suite_mismatch))
    click.echo(f"wrote {out / 'report.html'}, comparison.json, junit.xml, summary.md")


@cli.command()
@click.option("--policy", "policy_path", type=click.Path(path_type=Path), required=True, help="Gate policy YAML.")
@click.option("--strict", is_flag=True, help="Treat inconclusive rules as failures (exit 1).")
@click.option("--allow-suite-mismatch", is_flag=True, help=_ALLOW_MISMATCH_HELP)
@click.argument("base", type=click.Path(path_type=Path))
@click.argument("candidates", nargs=-1, required=True, type=click.Path(path_type=Path))
@_with_stats_options
def gate(policy_path: Path, strict: bool, allow_suite_mismatch: bool, base: Path, candidates: tuple[Path, ...], out: Path,
         resamples: int, seed: int) -> None:
    """Gate CANDIDATE runs against BASE with a policy: exit 0 pass, 1 fail, 2 bad input, 3 incomplete."""
    from tunegate.compare.models import CompareSettings
    from tunegate.pipeline.commands import gate_and_write

    check_output_folder(out)
    _, verdict = gate_and_write(policy_path, base, list(candidates), out, strict=strict,
                                settings=CompareSettings(n_resamples=resamples, seed=seed, allow_suite_mismatch=allow_suite_mismatch))
    click.echo(f"wrote {out / 'report.html'}, comparison.json, junit.xml, summary.md")
    click.echo("\n".join(verdict.describe()))
    if verdict.status == "inconclusive" and not strict:
        click.echo("warning: inconclusive is not a pass; exiting 0 because --strict was not given", err=True)
    sys.exit(verdict.exit_code)


@cli.command()
@click.argument("folder", type=click.Path(path_type=Path))
@click.option("--scorer-validation", "validations", multiple=True, type=click.Path(path_type=Path),
              help="A `tunegate validate-scorer --out` file to attach (repeatable; replaces those attached before): "
                   "the Limitations section then states the scorer's measured agreement.")
def report(folder: Path, validations: tuple[Path, ...]) -> None:
    """Re-render FOLDER's report.html, junit.xml and summary.md from its comparison.json (exit 2 if the set is incomplete)."""
    from tunegate.pipeline.commands import rerender

    _, paths = rerender(folder, list(validations))
    click.echo(f"wrote {', '.join(str(p) for p in paths.values())}")


@cli.command()
@click.argument("name")
@click.option("--input", "input_path", type=click.Path(path_type=Path), required=True, help="JSONL with a 'text' field per line.")
@click.option("--output", "output_path", type=click.Path(path_type=Path), required=True, help="JSONL to write: input fields + scores.")
@click.option("--option", "scorer_options", multiple=True, help="Scorer option key=value (repeatable).")
@click.option("--text-field", default="text", show_default=True)
@click.option("--device", default="cpu", show_default=True, help="Device for classifier scorers (cpu, cuda).")
def score(name: str, input_path: Path, output_path: Path, scorer_options: tuple[str, ...], text_field: str, device: str) -> None:
    """Score every line of a JSONL file with scorer NAME (toxicity, refusal...)."""
    from tunegate.pipeline.score_file import score_file

    counts = score_file(name, input_path, output_path, _parse_kv(scorer_options, "--option"),
                        text_field=text_field, device=device)
    click.echo(f"wrote {output_path}: {counts['scored']} of {counts['lines']} line(s) scored by {name}")


@cli.command("validate-scorer")
@click.argument("name")
@click.option("--labels", "labels_path", type=click.Path(path_type=Path), required=True,
              help="Labelled JSONL: a text and a label per line (class name, or 1/0 / toxic/non-toxic for continuous scorers).")
@click.option("--option", "scorer_options", multiple=True, help="Scorer option key=value (repeatable).")
@click.option("--out", type=click.Path(path_type=Path), default=None, help="Write the figures as JSON here.")
@click.option("--text-field", default="text", show_default=True)
@click.option("--label-field", default="label", show_default=True)
@click.option("--score", "score_name", default=None, help="Which of the scorer's scores (default: its first).")
@click.option("--threshold", type=float, default=0.5, show_default=True, help="Continuous scorers: score >= threshold is positive.")
@click.option("--negative-class", default=None, help="Categorical scorers: also report this class vs all others (e.g. complied).")
@click.option("--resamples", type=click.IntRange(min=100), default=1000, show_default=True, help="Bootstrap resamples.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--device", default="cpu", show_default=True, help="Device for classifier scorers (cpu, cuda).")
def validate_scorer_cmd(name: str, labels_path: Path, scorer_options: tuple[str, ...], out: Path | None, text_field: str,
                        label_field: str, score_name: str | None, threshold: float, negative_class: str | None,
                        resamples: int, seed: int, device: str) -> None:
    """Measure scorer NAME against a labelled JSONL file: agreement, precision/recall, kappa, AUROC with intervals."""
    from tunegate.pipeline.validate_scorer import format_report, raise_if_incomplete, run_validation

    rep = run_validation(name, labels_path, _parse_kv(scorer_options, "--option"), out, text_field=text_field,
                         label_field=label_field, score_name=score_name, threshold=threshold,
                         negative_class=negative_class, resamples=resamples, seed=seed, device=device)
    click.echo(format_report(rep))
    if out is not None:
        click.echo(f"wrote {out}")
    raise_if_incomplete(rep)


@cli.command("finetune", context_settings={"ignore_unknown_options": True})
@click.argument("recipe", type=click.Path(path_type=Path))
@click.option("--base", required=True, help="Base model: local folder (safetensors) or Hub id.")
@click.option("--data", "data_path", type=click.Path(path_type=Path), default=None,
              help="Training JSONL (prompt/completion or messages; prompt/chosen/rejected for dpo recipes).")
@click.option("--eval", "eval_path", type=click.Path(path_type=Path), default=None, help="Eval JSONL (same format as --data).")
@click.option("--out", type=click.Path(path_type=Path), required=True, help="Output folder: checkpoint-<step>/, final/, manifest.json.")
@click.option("--resume", is_flag=True, help="Continue an interrupted run in --out from its last checkpoint.")
@click.option("--no-progress", is_flag=True, help="Hide the progress bar.")
@click.argument("overrides", nargs=-1, type=click.UNPROCESSED)
def finetune_cmd(recipe: Path, base: str, data_path: Path | None, eval_path: Path | None, out: Path, resume: bool,
                 no_progress: bool, overrides: tuple[str, ...]) -> None:
    """Fine-tune BASE by RECIPE into candidate checkpoints; trailing key=value pairs override recipe keys."""
    from tunegate.finetune import finetune

    result = finetune(recipe, base=base, data=data_path, eval_data=eval_path, out=out, overrides=list(overrides),
                      resume=resume, progress=not no_progress)
    m = result.manifest
    if result.main_process:  # under accelerate launch only the main process prints
        last_eval = m["final"].get("eval_loss")
        click.echo(f"wrote {result.out}: {len(result.checkpoints)} checkpoint(s) + final/ after {m['steps']['completed']} "
                   f"step(s); eval loss {'n/a' if last_eval is None else f'{last_eval:.4f}'}; manifest {result.out / 'manifest.json'}")


@cli.command("plan")
@click.option("--policy", "policy_path", type=click.Path(path_type=Path), required=True, help="Gate policy YAML.")
@click.option("--base", "base_path", type=click.Path(path_type=Path), default=None,
              help="A base results.json: its observed rates, spreads and suite sizes replace the assumed ones.")
@click.option("--suites", "suite_refs", default=None,
              help="Comma-separated suite names or YAML paths to plan with (default: the built-in suites the policy names).")
@click.option("--audit", "audit_path", type=click.Path(path_type=Path), default=None,
              help="Plan with the suites of this audit.yaml (its suite paths are relative to it).")
@click.option("--size", "sizes", multiple=True, help="Suite size suite=N (repeatable; overrides the suites' own sizes).")
@click.option("--assume", "assumed", multiple=True, help="Assumed base rate suite/metric=RATE for a pass/fail metric (repeatable).")
@click.option("--redraw", type=click.FloatRange(0.0, 1.0), default=None,
              help="Share of samples whose outcome an equal candidate redraws independently (default 0.5; 1 = independence).")
@click.option("--json", "as_json", is_flag=True, help="Print the plan as JSON.")
def plan_cmd(policy_path: Path, base_path: Path | None, suite_refs: str | None, audit_path: Path | None,
             sizes: tuple[str, ...], assumed: tuple[str, ...], redraw: float | None, as_json: bool) -> None:
    """Print per rule the n it needs to pass an equal candidate and to fail a clear regression; flag underpowered rules."""
    from tunegate.compare import stats
    from tunegate.core.results import RunResult
    from tunegate.gate.plan import audit_suite_refs, builtin_info, format_plan, parse_assumptions, parse_sizes, plan_policy, suite_info
    from tunegate.gate.verdict import load_policy
    from tunegate.run.suite_loader import load_suites

    policy, _ = load_policy(policy_path)
    info = builtin_info(policy)
    refs = [r.strip() for r in (suite_refs or "").split(",") if r.strip()] + (audit_suite_refs(audit_path) if audit_path else [])
    if refs:
        info.update(suite_info(load_suites(refs)))
    for name, n in parse_sizes(sizes).items():
        info[name] = (info.get(name, (None, None))[0], n)
    base = RunResult.load(base_path) if base_path else None
    share = stats.PLANNING_REDRAW if redraw is None else redraw
    plans = plan_policy(policy, suites=info, base=base, assume=parse_assumptions(assumed), redraw=share)
    if as_json:
        click.echo(json.dumps([p.as_dict() for p in plans], indent=1))
        return
    click.echo("\n".join(format_plan(plans, policy, share)))


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the CLI and turn user errors into one line and an exit code.

    Under `python -m tunegate.launch` each data-parallel rank also records its
    exit code, because the launcher underneath reports any failure as 1.
    """
    from tunegate.run.distributed import record_exit_code

    try:
        _main(argv)
    except SystemExit as exc:
        record_exit_code(exc.code)
        raise
    record_exit_code(0)


def _main(argv: list[str] | None) -> None:
    try:
        cli.main(args=argv, prog_name="tunegate", standalone_mode=False)
    except TunegateError as exc:
        click.echo(f"error: {exc.message}", err=True)
        sys.exit(int(exc.exit_code))
    except ValidationError as exc:
        from tunegate.core.config import format_validation_error

        click.echo(f"error: {format_validation_error('command line', exc)}", err=True)
        sys.exit(int(ExitCode.BAD_INPUT))
    except click.exceptions.Abort:
        click.echo("error: interrupted; rerun the same command to resume from the cache", err=True)
        sys.exit(int(ExitCode.INCOMPLETE))
    except KeyboardInterrupt:
        click.echo("error: interrupted; rerun the same command to resume from the cache", err=True)
        sys.exit(int(ExitCode.INCOMPLETE))
    except click.exceptions.ClickException as exc:
        exc.show()
        sys.exit(int(ExitCode.BAD_INPUT))
    except SystemExit:
        raise
    except Exception as exc:  # noqa: BLE001 - the exit-code contract: a crash is exit 3, never a gate decision
        sys.exit(_report_crash(exc))


def _report_crash(exc: BaseException) -> int:
    """One line on stderr for an unexpected failure; the traceback to a log file (and stderr under --debug)."""
    text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    log = Path(tempfile.gettempdir()) / f"tunegate-crash-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.log"
    try:
        log.write_text(text)
        where = f"traceback in {log}"
    except OSError:
        where = "rerun with --debug for the traceback"
    first = (str(exc).strip().splitlines() or [""])[0][:300]
    what = f"{type(exc).__name__}: {first}" if first else type(exc).__name__
    if isinstance(exc, OSError):
        summary = f"error: run incomplete: {what}"
    else:
        summary = f"error: internal error (a bug in tunegate, not a gate decision): {what}"
    if _DEBUG["on"]:
        click.echo(text, err=True, nl=False)
    click.echo(f"{summary}; {where}", err=True)
    return int(ExitCode.INCOMPLETE)


if __name__ == "__main__":
    main()
