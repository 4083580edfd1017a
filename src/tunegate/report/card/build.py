"""Lay the audit's records out along the EU AI Act's documentation headings (Annex IV, Annex XI).

Each section lists facts (see `tunegate.report.card.context`): what the audit
recorded, at which key of which file, and what the provider must write by hand.
Headings follow Annex IV (technical documentation of a high-risk system) and
Annex XI section 1 (general-purpose models); the annex points are named on each
section so a reviewer can map them. This is an aid to compiling that
documentation, not a claim that it is complete: the hand-filled fields say so.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tunegate.compare.models import Comparison
from tunegate.core.results import RunResult
from tunegate.report.card.context import CardContext, Fact, Section, _Reader, load_documents, show
from tunegate.report.context import collect_limitations

RECIPE_KEYS = ("method", "epochs", "learning_rate", "batch_size", "gradient_accumulation_steps", "max_length",
               "warmup_ratio", "weight_decay", "seed", "lora")


def subject_of(comparison: Comparison, candidate: str | None = None) -> tuple[str | None, str]:
    """The candidate a model card describes: the one asked for, else the audit's recommendation, else the only one."""
    labels = [c.model.label for c in comparison.candidates]
    if candidate is not None:
        return candidate, "chosen with --candidate"
    rec = comparison.audit.recommendation if comparison.audit else None
    if rec is not None and rec.candidate in labels:
        return rec.candidate, "the candidate this audit recommends"
    if len(labels) == 1:
        return labels[0], "the only candidate of this audit"
    return None, "this audit recommends no candidate; the card lists every candidate's results and describes none"


def _general(r: _Reader, comparison: Comparison, subject: str | None) -> Section:
    s = Section("general", "General description of the model", "Annex IV 1(a)-(d); Annex XI 1.1")
    s.facts += [r.hand("Model name", "model_name"), r.hand("Provider", "provider"), r.hand("License", "license"),
                r.hand("Intended purpose", "intended_purpose"), r.hand("Uses out of scope", "out_of_scope_uses"),
                r.hand("Users and deployment (forms, hardware, interface)", "users_and_deployment"),
                r.hand("Contact", "contact"),
                r.rec("Audit", "comparison.json", "audit", "name"),
                r.rec("Audit description", "comparison.json", "audit", "description"),
                r.rec("Recommended candidate", "comparison.json", "audit", "recommendation", "candidate",
                      note="no candidate passed, or this is not an audit"),
                r.rec("Recommendation reason", "comparison.json", "audit", "recommendation", "reason"),
                r.rec("Base model", "comparison.json", "base", "model"),
                r.rec("Base model revision", "comparison.json", "base", "revision"),
                r.rec("Base model fingerprint (SHA-256 of weights, tokenizer and config files)", "comparison.json", "base", "fingerprint")]
    for i, c in enumerate(comparison.candidates):
        tag = f"Candidate {c.model.label}" + (" (this card's subject)" if c.model.label == subject else "")
        s.facts += [r.rec(f"{tag}: model", "comparison.json", "candidates", i, "model", "model"),
                    r.rec(f"{tag}: adapter", "comparison.json", "candidates", i, "model", "adapter",
                          note="no adapter (full weights)"),
                    r.rec(f"{tag}: fingerprint", "comparison.json", "candidates", i, "model", "fingerprint")]
    return s


def _training(r: _Reader, comparison: Comparison) -> Section:
    s = Section("training", "Development process and training data", "Annex IV 2(a)-(d); Annex XI 1.2(a)-(c)")
    s.facts += [r.hand("Description of the training data (origin, scope, characteristics)", "training_data_description"),
                r.hand("Data governance (collection, labelling, cleaning, bias examination)", "data_governance")]
    for c in comparison.candidates:
        name = f"manifest.json of {c.model.label}"
        if name not in r.documents:
            ft = c.model.finetune
            s.notes.append(f"{c.model.label}: " + ("fine-tuned, but its manifest.json could not be read, so its training "
                                                   "record is missing" if ft else "not fine-tuned by tunegate: no training record"))
            continue
        p = f"{c.model.label}: "
        s.facts += [r.rec(p + "manifest", name, "path"), r.rec(p + "status", name, "status"),
                    r.rec(p + "method", name, "method"),
                    r.rec(p + "base model fingerprint", name, "base", "fingerprint"),
                    r.rec(p + "training data file", name, "data", "path"),
                    r.rec(p + "training data SHA-256", name, "data", "sha256"),
                    r.rec(p + "training data rows", name, "data", "rows"),
                    r.rec(p + "rows used", name, "data", "rows_used"),
                    r.rec(p + "rows dropped for length", name, "data", "rows_dropped_for_length"),
                    r.rec(p + "trained tokens", name, "data", "trained_tokens"),
                    r.rec(p + "evaluation data SHA-256", name, "eval_data", "sha256", note="no evaluation data"),
                    r.rec(p + "recipe SHA-256", name, "recipe_hash"),
                    r.rec(p + "overrides", name, "overrides")]
        s.facts += [r.rec(f"{p}recipe {k}", name, "recipe", k) for k in RECIPE_KEYS if k in (r.documents[name].get("recipe") or {})]
        s.facts += [r.rec(p + "steps completed", name, "steps", "completed"),
                    r.rec(p + "trainable parameters", name, "parameters", "trainable"),
                    r.rec(p + "total parameters", name, "parameters", "total"),
                    r.rec(p + "final train loss", name, "final", "train_loss"),
                    r.rec(p + "libraries", name, "libraries")]
    return s


def _compute(r: _Reader, comparison: Comparison) -> Section:
    s = Section("compute", "Computational resources and energy", "Annex XI 1.2(d)-(e)")
    s.notes.append("Energy is read from counters (NVML on NVIDIA GPUs, RAPL on CPUs where the machine exposes them), "
                   "for evaluation runs and fine-tuning alike, or shown as not measured with the reason; it is never "
                   "estimated. CO2e is not computed without a grid intensity.")
    s.facts.append(r.rec("Grid carbon intensity given by the provider (g CO2e/kWh)", "comparison.json", "audit",
                         "grid_intensity_g_per_kwh"))
    for c in [comparison.base, *(x.model for x in comparison.candidates)]:
        res = f"results.json of {c.label}"
        s.facts += [r.rec(f"{c.label}: evaluation wall time (s)", res, "provenance", "timings", "total_s"),
                    r.rec(f"{c.label}: evaluation device", res, "provenance", "device"),
                    r.rec(f"{c.label}: evaluation device-hours", res, "provenance", "device_hours"),
                    r.rec(f"{c.label}: evaluation energy status", res, "provenance", "energy", "status"),
                    r.rec(f"{c.label}: evaluation energy (kWh)", res, "provenance", "energy", "kwh",
                          note=show((r.documents.get(res, {}).get("provenance") or {}).get("energy", {}).get("reason"))),
                    r.rec(f"{c.label}: evaluation energy method", res, "provenance", "energy", "method")]
        man = f"manifest.json of {c.label}"
        if man in r.documents:
            s.facts += [r.rec(f"{c.label}: fine-tuning wall time (s)", man, "wall_time_s"),
                        r.rec(f"{c.label}: fine-tuning device-hours", man, "device_hours"),
                        r.rec(f"{c.label}: device-hours definition", man, "device_hours_definition"),
                        r.rec(f"{c.label}: fine-tuning devices", man, "devices"),
                        r.rec(f"{c.label}: fine-tuning energy status", man, "energy", "status"),
                        r.rec(f"{c.label}: fine-tuning energy (kWh)", man, "energy", "kwh",
                              note=show(r.documents[man].get("energy", {}).get("reason"))),
                        r.rec(f"{c.label}: energy method", man, "energy", "method")]
    return s


def _evaluation(r: _Reader, comparison: Comparison) -> Section:
    s = Section("evaluation", "Evaluation procedure and results", "Annex IV 2(g), 4; Annex XI 1.2(b)")
    s.facts += [r.rec("Policy", "comparison.json", "verdict", "policy_name", note="a comparison without a gate"),
                r.rec("Policy SHA-256", "comparison.json", "verdict", "policy_sha256"),
                r.rec("Strict (inconclusive counts as failure)", "comparison.json", "verdict", "strict"),
                r.rec("Verdict", "comparison.json", "verdict", "status"),
                r.rec("Exit code", "comparison.json", "verdict", "exit_code"),
                r.rec("Confidence", "comparison.json", "settings", "confidence"),
                r.rec("Bootstrap resamples", "comparison.json", "settings", "n_resamples"),
                r.rec("Resampling seed", "comparison.json", "settings", "seed"),
                r.rec("Multiplicity", "comparison.json", "verdict", "multiplicity")]
    for i in range(len(comparison.verdict.candidates) if comparison.verdict else 0):
        s.facts.append(r.rec(f"Verdict of {show(dig_label(comparison, i))}", "comparison.json", "verdict", "candidates", i, "status"))
    suites = comparison.candidates[0].suites if comparison.candidates else []
    s.tables.append({"title": "Suites (what was tested, on which exact data)",
                     "head": ["Suite", "Kind", "Version", "Samples", "Data SHA-256", "Config SHA-256", "Content warning"],
                     "rows": [[r.rec("suite", "comparison.json", "candidates", 0, "suites", j, k) for k in
                               ("name", "kind", "version", "n_samples", "data_hash", "config_hash", "content_warning")]
                              for j in range(len(suites))]})
    rows = []
    for i, c in enumerate(comparison.candidates):
        for j, su in enumerate(c.suites):
            for k, m in enumerate(su.metrics):
                if "/" in m.metric or "." in m.metric:
                    continue  # per-group breakdowns stay in report.html
                base = ("candidates", i, "suites", j, "metrics", k)
                keys = ("suite", "metric", "direction", "base_value", "candidate_value", "delta", "ci_low", "ci_high",
                        "p_value", "test")
                rows.append([r.rec("candidate", "comparison.json", "candidates", i, "model", "label")]
                            + [r.rec(key, "comparison.json", *base, key) for key in keys])
    s.tables.append({"title": "Results (paired on the samples both runs scored)",
                     "head": ["Candidate", "Suite", "Metric", "Better", "Base", "Candidate value", "Delta", "CI low",
                              "CI high", "p", "Test"],
                     "rows": rows})
    rules = []
    for i, cv in enumerate(comparison.verdict.candidates if comparison.verdict else []):
        for k in range(len(cv.outcomes)):
            where: tuple[str | int, ...] = ("verdict", "candidates", i, "outcomes", k)
            rules.append([r.rec("candidate", "comparison.json", "verdict", "candidates", i, "candidate")]
                         + [r.rec(key, "comparison.json", *where, key) for key in ("metric", "kind", "threshold", "status", "reason")])
    if rules:
        s.tables.append({"title": "Gate rules", "head": ["Candidate", "Metric", "Rule", "Threshold", "Result", "Reason"], "rows": rules})
    return s


def dig_label(comparison: Comparison, i: int) -> Any:
    cands = comparison.verdict.candidates if comparison.verdict else []
    return cands[i].candidate if i < len(cands) else None


def _validity(r: _Reader, comparison: Comparison) -> Section:
    s = Section("validity", "Validity of the measurements (scorer agreement with human labels)", "Annex IV 2(g); Annex XI 1.2(b)")
    for i, v in enumerate(comparison.scorer_validations):
        base = ("scorer_validations", i)
        s.facts += [r.rec(f"{v.scorer}: agreement (95% CI)", "comparison.json", *base, "agreement"),
                    r.rec(f"{v.scorer}: Cohen's kappa (95% CI)", "comparison.json", *base, "cohen_kappa"),
                    r.rec(f"{v.scorer}: labelled rows", "comparison.json", *base, "n"),
                    r.rec(f"{v.scorer}: labels SHA-256", "comparison.json", *base, "labels_sha256"),
                    r.rec(f"{v.scorer}: validation file SHA-256", "comparison.json", *base, "sha256")]
    if not comparison.scorer_validations:
        s.notes.append("No scorer validation is attached to this audit: the agreement of its detectors with human "
                       "labels is not measured here (see the Limitations).")
    return s


def _risks(r: _Reader, comparison: Comparison, runs: Mapping[str, RunResult | None]) -> Section:
    s = Section("risks", "Limitations, foreseeable risks and human oversight", "Annex IV 2(e), 3, 5; Annex XI 1.1(b)")
    s.facts += [r.hand("Foreseeable risks and unintended outcomes", "foreseeable_risks"),
                r.hand("Risk management system", "risk_management"),
                r.hand("Human oversight measures", "human_oversight"),
                r.hand("Accuracy, robustness and cybersecurity measures", "accuracy_robustness_cybersecurity"),
                r.hand("Post-market monitoring plan", "post_market_monitoring")]
    # the limitations the report states: the suite kinds' and scorers' own, measured agreement, the statistics'
    s.notes += [f"{lim['source']}: {lim['text']}" for lim in collect_limitations(comparison, runs)]
    return s


def _logging(r: _Reader, comparison: Comparison) -> Section:
    s = Section("logging", "Record-keeping: input/output logs", "Annex IV 2(g); Article 12")
    for c in [comparison.base, *(x.model for x in comparison.candidates)]:
        name = f"io_log of {c.label}"
        if name not in r.documents:
            s.facts.append(Fact(f"{c.label}: io log", None, name, ("path",), "missing", "no io_log.jsonl.gz beside its results"))
            continue
        s.facts += [r.rec(f"{c.label}: io log", name, "path"), r.rec(f"{c.label}: io log SHA-256", name, "file_sha256"),
                    r.rec(f"{c.label}: redacted suites", name, "redacted_suites"),
                    r.rec(f"{c.label}: model fingerprint in the log", name, "model_fingerprint"),
                    r.rec(f"{c.label}: run started", name, "started_at"), r.rec(f"{c.label}: run finished", name, "finished_at")]
    return s


def build_card(comparison: Comparison, runs: Mapping[str, RunResult | None], candidate: str | None = None) -> CardContext:
    """Every section, from the comparison (and the records it points at) and the `card:` block it carries."""
    from tunegate.core.errors import UserError

    labels = [c.model.label for c in comparison.candidates]
    if candidate is not None and candidate not in labels:
        raise UserError(f"--candidate {candidate!r}: not a candidate of this audit ({', '.join(labels)})")
    documents = load_documents(comparison)
    provided = comparison.audit.card.model_dump(mode="json") if comparison.audit else {}
    r = _Reader(documents, provided)
    subject, why = subject_of(comparison, candidate)
    sections = [_general(r, comparison, subject), _training(r, comparison), _compute(r, comparison),
                _evaluation(r, comparison), _validity(r, comparison), _risks(r, comparison, runs), _logging(r, comparison)]
    title = provided.get("model_name") or subject or (comparison.audit.name if comparison.audit else None) or "tunegate audit"
    return CardContext(title=str(title), subject=subject, subject_reason=why, sections=sections,
                       metadata=_metadata(r, comparison, subject), documents=documents)


def _metadata(r: _Reader, comparison: Comparison, subject: str | None) -> dict[str, Any]:
    """The Hugging Face model-card header: only keys whose value was recorded or given."""
    provided = r.provided
    meta: dict[str, Any] = {}
    if provided.get("license"):
        meta["license"] = provided["license"]
    base = comparison.base.model
    if base and not base.startswith(("/", ".", "~")) and ":" not in base:  # a hub id, not a local folder
        meta["base_model"] = base
    meta["tags"] = ["tunegate", "tunegate-audit", *[str(t) for t in provided.get("tags") or []]]
    cand = next((c for c in comparison.candidates if c.model.label == subject), None)
    if cand is not None:
        results = []
        for su in cand.suites:
            metrics = [{"type": m.metric, "name": m.metric, "value": m.candidate_value}
                       for m in su.metrics if m.candidate_value is not None and "/" not in m.metric and "." not in m.metric]
            if metrics:
                results.append({"task": {"type": "text-generation"}, "dataset": {"name": su.name, "type": su.name},
                                "metrics": metrics})
        if results:
            meta["model-index"] = [{"name": str(provided.get("model_name") or subject), "results": results}]
    return meta

