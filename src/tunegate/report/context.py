"""The report's view model: every number, label and chart coordinate, computed in Python.

The HTML template only places what this module hands it, so all text stays
subject to autoescaping and no markup is ever built from model or data text.
Run results referenced by the comparison are read back (when present) for the
per-example explorer: prompts, both outputs and their scores.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tunegate.compare.models import Comparison, ModelInfo
from tunegate.core.config import Policy
from tunegate.core.format import fmt
from tunegate.core.results import RunResult, SampleResult
from tunegate.core.status import Status, severity, worst
from tunegate.core.verdict import RuleOutcome, Verdict
from tunegate.report.pairwise import pairwise_rows
from tunegate.report.scorers import not_recorded_text, scorers_used

PROMPT_CHARS = 700
OUTPUT_CHARS = 1500
EXPLORER_ROWS = 250

STATISTICS_LIMITATIONS = [
    "Intervals are percentile intervals of a paired bootstrap; with few samples (roughly under 30) they are too narrow "
    "and should be read as optimistic.",
    "Holm's correction covers the tested rules of one gate for one candidate; the p-values in the per-suite tables are uncorrected, "
    "and nothing corrects across candidates.",
    "Intervals used by min/max rules are not adjusted for multiplicity.",
    "Samples that errored or were skipped in either run are left out of every pair; if failures correlate with difficulty, "
    "deltas are biased.",
    "A passing gate shows that no regression beyond tolerance was detected on these samples; "
    "it does not show the candidate is safe on other data.",
    "Corpus-level metrics (e.g. corpus BLEU) cannot be resampled per sample: they get no interval and no test.",
]


def excerpt(text: str | None, limit: int) -> str:
    """At most `limit` characters, marked when cut (escaping happens in the template)."""
    if text is None:
        return ""
    return text if len(text) <= limit else text[:limit] + f" … [{len(text) - limit} more characters]"


def response_text(sr: SampleResult | None) -> str:
    """What the model answered, readable: generated text, or log-likelihoods for scoring requests."""
    if sr is None:
        return ""
    parts = []
    # a skipped sample keeps its requests but has no responses, so the lengths may differ
    for req, resp in zip(sr.requests, sr.responses, strict=False):
        if resp.error:
            parts.append(f"[error: {resp.error}]")
        elif resp.kind == "generate":
            parts.append(resp.text or "")
        else:
            cont = getattr(req, "continuation", "")
            greedy = ", greedy" if resp.is_greedy else ""
            parts.append(f"log P({excerpt(cont.strip(), 80)!r}) = {fmt(resp.loglikelihood)} over {resp.n_tokens} tokens{greedy}")
    if sr.status != "scored" and sr.reason:
        parts.append(f"[{sr.status}: {sr.reason}]")
    return "\n".join(parts)


def scores_text(sr: SampleResult | None) -> str:
    if sr is None:
        return ""
    return ", ".join(f"{s.name}={fmt(s.value)}" if s.ok else f"{s.name}=error" for s in sr.scores)


def _index(run: RunResult | None) -> dict[tuple[str, str], SampleResult]:
    if run is None:
        return {}
    return {(s.name, r.id): r for s in run.suites for r in s.samples}


# ---------------------------------------------------------------------------
# charts: geometry only; the template draws rects and lines with these numbers

MINI_W, MINI_ROW, MINI_PAD = 230, 13, 6


def _domain(values: list[float]) -> tuple[float, float]:
    lo, hi = min([0.0, *values]), max([0.0, *values])
    if lo >= 0.0 and hi <= 1.0 and hi > 0.05:
        return 0.0, 1.0
    if hi == lo:
        hi = lo + 1.0
    pad = 0.05 * (hi - lo)
    return lo - (pad if lo < 0 else 0.0), hi + pad


def bar_chart(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """A small chart for one metric: a bar per model (base first) from zero to its value, with its interval as a whisker.

    rows: label, value, lo, hi, role ("base" or "candidate"). The axis domain is
    [0, 1] for rates, else the data range padded, always including zero.
    """
    nums = [x for r in rows for x in (r["value"], r["lo"], r["hi"]) if x is not None]
    if not nums:
        return {"rows": [], "height": 0, "width": MINI_W}
    d0, d1 = _domain(nums)
    span = MINI_W - 2 * MINI_PAD

    def x(v: float) -> float:
        return round(MINI_PAD + (v - d0) / (d1 - d0) * span, 2)

    zero = x(0.0)
    out = []
    for i, r in enumerate(rows):
        y = 3 + i * MINI_ROW
        v = r["value"]
        g: dict[str, Any] = {"label": r["label"], "role": r["role"], "y": y, "mid": y + 4.5, "text": fmt(v)}
        if v is not None:
            g.update(bx=min(zero, x(v)), bw=max(1.0, abs(x(v) - zero)))
        if r["lo"] is not None and r["hi"] is not None:
            g.update(wx1=x(r["lo"]), wx2=x(r["hi"]))
            g["text"] += f" [{fmt(r['lo'])}, {fmt(r['hi'])}]"
        out.append(g)
    height = 6 + len(rows) * MINI_ROW
    return {"rows": out, "height": height + 11, "axis_y": height + 9, "width": MINI_W, "zero": zero,
            "d0": fmt(d0, 3), "d1": fmt(d1, 3), "x0": MINI_PAD, "x1": MINI_W - MINI_PAD}


def trend_chart(metric: str, base_value: float | None, points: list[dict[str, Any]]) -> dict[str, Any]:
    """Metric against training step: candidates as points with whiskers, the base as a dashed line."""
    w, h, ml, mr, mt, mb = 420, 200, 56, 16, 14, 34
    ys = [v for p in points for v in (p["value"], p["lo"], p["hi"]) if v is not None]
    if base_value is not None:
        ys.append(base_value)
    steps = [p["step"] for p in points]
    y0, y1 = min(ys), max(ys)
    if y1 == y0:
        y0, y1 = y0 - 0.5, y1 + 0.5
    pad = 0.08 * (y1 - y0)
    y0, y1 = y0 - pad, y1 + pad
    s0, s1 = min(steps), max(steps)
    s1 = s1 if s1 > s0 else s0 + 1

    def X(s: float) -> float:
        inset = 16  # keep the first and last checkpoint off the axes
        return round(ml + inset + (s - s0) / (s1 - s0) * (w - ml - mr - 2 * inset), 2)

    def Y(v: float) -> float:
        return round(mt + (y1 - v) / (y1 - y0) * (h - mt - mb), 2)

    pts = []
    for p in points:
        g = {"cx": X(p["step"]), "cy": Y(p["value"]), "label": p["label"], "step": p["step"], "text": fmt(p["value"])}
        if p["lo"] is not None and p["hi"] is not None:
            g.update(y1=Y(p["hi"]), y2=Y(p["lo"]))
        pts.append(g)
    return {
        "metric": metric, "width": w, "height": h, "points": pts,
        "line": " ".join(f"{p['cx']},{p['cy']}" for p in pts),
        "base_y": Y(base_value) if base_value is not None else None, "base_text": fmt(base_value),
        "ml": ml, "xr": w - mr, "yb": h - mb, "yt": mt,
        "ticks_x": [{"x": X(s), "text": str(s)} for s in sorted(set(steps))],
        "ticks_y": [{"y": Y(v), "text": fmt(v, 3)} for v in (y0 + pad, (y0 + y1) / 2, y1 - pad)],
    }


# ---------------------------------------------------------------------------


@dataclass
class ReportContext:
    comparison: Comparison
    verdict: Verdict | None
    policy: Policy | None
    models: list[dict[str, Any]]
    suites: list[dict[str, Any]]
    trends: list[dict[str, Any]]
    explorer: list[dict[str, Any]]
    explorer_total: int
    runs_found: bool
    methods_metrics: list[dict[str, Any]]
    limitations: list[dict[str, str]]
    rule_rows: list[dict[str, Any]] = field(default_factory=list)
    # suites compared although their config hash, data hash or version differ (--allow-suite-mismatch): shown in red
    mismatches: list[str] = field(default_factory=list)
    # the executive summary (tunegate.report.summary): worst regressions, scorer validity, compute, io logs
    regressions: list[dict[str, Any]] = field(default_factory=list)
    validity: list[dict[str, Any]] = field(default_factory=list)
    # suites whose results do not record their scorers (schema 1 files): the validity card says so instead of guessing
    scorers_unrecorded: list[str] = field(default_factory=list)
    compute: list[dict[str, Any]] = field(default_factory=list)
    io_logs: list[dict[str, Any]] = field(default_factory=list)
    # compliance files beside the report (model_card.md, technical_documentation.html/.md) that exist: name -> href
    records: list[str] = field(default_factory=list)


FINETUNE_ORDER = ("step", "epoch", "final", "method", "base", "base_fingerprint", "data_sha256", "data_path",
                  "eval_data_sha256", "recipe", "recipe_hash", "train_loss", "eval_loss", "created_at")
FINETUNE_HIDDEN = {"schema_version", "kind", "manifest"}


def finetune_rows(ft: dict[str, Any]) -> list[tuple[str, str]]:
    """The fine-tune origin of a checkpoint (its `tunegate_checkpoint.json`), known keys first, empty ones dropped."""
    keys = [k for k in FINETUNE_ORDER if k in ft] + sorted(k for k in ft if k not in FINETUNE_ORDER and k not in FINETUNE_HIDDEN)
    rows = []
    for k in keys:
        v = ft[k]
        if v is None or isinstance(v, (dict, list)):
            continue
        rows.append((k, fmt(v) if isinstance(v, float) else str(v)))
    return rows


def _run_key(info: ModelInfo) -> tuple[str, ...]:
    """Checkpoints of one training run share base, data and recipe."""
    ft = info.finetune or {}
    return tuple(str(ft.get(k, "")) for k in ("base_fingerprint", "base", "data_sha256", "recipe_hash", "recipe"))


def _model_row(info: ModelInfo, role: str) -> dict[str, Any]:
    ft = finetune_rows(info.finetune or {})
    prov = info.provenance
    return {
        "role": role, "label": info.label, "model": info.model, "backend": info.backend,
        "fingerprint": info.fingerprint, "revision": info.revision, "adapter": info.adapter,
        "complete": info.complete, "counts": info.counts, "finetune": ft, "results_path": info.results_path,
        "step": info.step, "identity": {k: v for k, v in info.identity.items() if isinstance(v, (str, int, float, bool))},
        "prov": {
            "tunegate": prov.get("tunegate_version"), "git": prov.get("git_commit"), "python": prov.get("python"),
            "platform": prov.get("platform"), "device": prov.get("device"), "seed": prov.get("seed"),
            "config_hash": prov.get("config_hash"), "started": prov.get("started_at"), "finished": prov.get("finished_at"),
            "run_id": prov.get("run_id"),
            "timings": prov.get("timings") or {}, "libraries": prov.get("libraries") or {},
        },
    }


def _status_of(outcomes: list[RuleOutcome], metric: str) -> Status | None:
    found = [o.status for o in outcomes if o.metric == metric]
    return worst(found) if found else None


def is_subgroup(metric: str) -> bool:
    """Per-group breakdowns (`stereotype_rate/age`, `refusal_rate.drugs`) fold away under their headline metric."""
    return "/" in metric or "." in metric


def _suite_cards(comparison: Comparison, verdict: Verdict | None) -> list[dict[str, Any]]:
    """One card per suite: a row per metric with a mini chart (base and candidates) and, per candidate, the delta."""
    outcomes = {cv.candidate: cv.outcomes for cv in (verdict.candidates if verdict else [])}
    alpha = 1 - comparison.settings.confidence
    cards = []
    for s in comparison.candidates[0].suites:
        per_cand = [(c, c.suite(s.name)) for c in comparison.candidates]
        headline: list[dict[str, Any]] = []
        subgroups: list[dict[str, Any]] = []
        for m in s.metrics:
            chart_rows = [{"label": comparison.base.label, "value": m.base_value if m.base_value is not None else m.base_reported,
                           "lo": m.base_ci[0], "hi": m.base_ci[1], "role": "base"}]
            cand_rows = []
            for c, cs in per_cand:
                cm = cs.metric(m.metric) if cs else None
                if cm is None:
                    continue
                chart_rows.append({"label": c.model.label,
                                   "value": cm.candidate_value if cm.candidate_value is not None else cm.candidate_reported,
                                   "lo": cm.candidate_ci[0], "hi": cm.candidate_ci[1], "role": "candidate"})
                gain = None if cm.delta is None else cm.delta * cm.sign
                tone = "neutral" if gain is None or gain == 0 or cm.direction == "neutral" else ("bad" if gain < 0 else "good")
                cand_rows.append({"label": c.model.label, "m": cm, "tone": tone,
                                  "significant": cm.p_value is not None and cm.p_value < alpha,
                                  "gate": _status_of(outcomes.get(c.model.label, []), m.name)})
            row = {"m": m, "chart": bar_chart(chart_rows), "cands": cand_rows,
                   "gated": any(r["gate"] for r in cand_rows), "failing": any(r["gate"] in ("fail", "incomplete") for r in cand_rows)}
            (subgroups if is_subgroup(m.metric) else headline).append(row)
        cards.append({
            "s": s, "metrics": headline, "subgroups": subgroups,
            "subgroups_open": any(r["failing"] for r in subgroups),
            "warnings": sorted({w for _, cs in per_cand if cs for w in cs.warnings}),
            "mismatch": [(c.model.label, "; ".join(cs.mismatch)) for c, cs in per_cand if cs and cs.mismatch],
            "counts": [(comparison.base.label, s.counts_base)] + [(c.model.label, cs.counts_candidate) for c, cs in per_cand if cs],
            "pairwise": pairwise_rows(per_cand),
        })
    return cards


def _trends(comparison: Comparison, policy: Policy | None) -> list[dict[str, Any]]:
    groups: dict[tuple[str, ...], list[Any]] = {}
    for c in comparison.candidates:
        if c.model.step is not None:
            groups.setdefault(_run_key(c.model), []).append(c)
    # the training run with the most distinct checkpoints (a trend across runs would mix data and recipes)
    stepped = max(groups.values(), key=lambda g: len({c.model.step for c in g}), default=[])
    if len({c.model.step for c in stepped}) < 2:
        return []
    names = [r.metric for r in policy.rules] if policy else []
    names += [m.name for s in comparison.candidates[0].suites for m in s.metrics if m.direction != "neutral" and not is_subgroup(m.metric)]
    charts = []
    for name in list(dict.fromkeys(names))[:8]:
        points, base_value = [], None
        for c in sorted(stepped, key=lambda c: c.model.step or 0):
            m = c.metric(name)
            if m is None or m.candidate_value is None:
                continue
            base_value = m.base_value
            points.append({"step": c.model.step, "value": m.candidate_value, "lo": m.candidate_ci[0], "hi": m.candidate_ci[1],
                           "label": c.model.label})
        if len(points) >= 2:
            charts.append(trend_chart(name, base_value, points))
    return charts


def _explorer(comparison: Comparison, runs: Mapping[str, RunResult | None],
              verdict: Verdict | None = None) -> tuple[list[dict[str, Any]], int]:
    """Example rows, regressions first; those behind the most severe rule (incomplete, fail, then inconclusive) lead."""
    base_idx = _index(runs.get(comparison.base.label))
    priority: dict[tuple[str, str], int] = {}
    for cv in (verdict.candidates if verdict else []):
        for o in cv.outcomes:
            if o.status != "pass":
                rule_key = (cv.candidate, o.metric)
                priority[rule_key] = min(priority.get(rule_key, 9), -severity(o.status))
    ordered = sorted(((c, s, m) for c in comparison.candidates for s in c.suites for m in s.metrics),
                     key=lambda csm: priority.get((csm[0].model.label, f"{csm[1].name}/{csm[2].metric}"), 9))
    rows: list[dict[str, Any]] = []
    seen: set[tuple[str, str, str]] = set()
    cand_idx_of = {c.model.label: _index(runs.get(c.model.label)) for c in comparison.candidates}
    for c, s, m in ordered:
        cand_idx = cand_idx_of[c.model.label]
        for change, examples in (("regressed", m.regressed), ("improved", m.improved)):
            for rank, ex in enumerate(examples):
                key = (c.model.label, s.name, ex.sample_id)
                if key in seen:
                    continue
                seen.add(key)
                b, k = base_idx.get((s.name, ex.sample_id)), cand_idx.get((s.name, ex.sample_id))
                either = b or k
                rows.append({
                    "candidate": c.model.label, "suite": s.name, "metric": m.metric, "sample_id": ex.sample_id,
                    "change": change, "rank": rank, "base": fmt(ex.base), "cand": fmt(ex.candidate),
                    "delta": fmt(ex.delta), "gain": ex.delta * m.sign,
                    "prompt": excerpt(either.sample.input if either else "", PROMPT_CHARS),
                    "base_out": excerpt(response_text(b), OUTPUT_CHARS),
                    "cand_out": excerpt(response_text(k), OUTPUT_CHARS),
                    "base_scores": scores_text(b), "cand_scores": scores_text(k),
                    "cw": s.content_warning,
                })
    # regressions first (failing rules' metrics leading, as ordered above), worst first within a metric
    rows = [r for r in rows if r["change"] == "regressed"] + [r for r in rows if r["change"] != "regressed"]
    return rows[:EXPLORER_ROWS], len(rows)


def collect_limitations(comparison: Comparison, runs: Mapping[str, RunResult | None]) -> list[dict[str, str]]:
    """Known weaknesses of the suite kinds and scorers that produced these results, then of the statistics."""
    from tunegate.core import plugins

    kinds = sorted({s.kind for c in comparison.candidates for s in c.suites})
    recorded = scorers_used(runs)
    used = recorded.names
    measured = {v.scorer for v in comparison.scorer_validations}
    out = []
    for group, names in (("suites", kinds), ("scorers", used)):
        for name in names:
            try:
                cls = plugins.load(group, name)
            except Exception:  # noqa: BLE001 - an unimportable plugin did not produce these results
                continue
            text = getattr(cls, "limitations", "") or ""
            if isinstance(text, str) and text.strip():
                out.append({"source": f"{group[:-1]} {name}", "text": text.strip()})
            if group == "scorers":
                for v in comparison.scorer_validations:
                    if v.scorer == name:
                        out.append({"source": f"scorer {name}, measured", "text": v.sentence()})
                if name not in measured:
                    out.append({"source": f"scorer {name}, measured", "text": (
                        "No validation of this scorer is attached to this report: its agreement with human labels on "
                        "data like yours is unmeasured here (measure it with `tunegate validate-scorer " + name
                        + " --labels FILE.jsonl --out V.json` and attach V.json with `scorer_validations:` in audit.yaml "
                        "or `tunegate report DIR --scorer-validation V.json`).")})
    for v in comparison.scorer_validations:
        if v.scorer not in used:
            out.append({"source": f"scorer {v.scorer}, measured", "text": f"Attached ({v.source}) but no result in this "
                        "report was produced by this scorer: " + v.sentence()})
    if recorded.unrecorded:
        out.append({"source": "scorers", "text": not_recorded_text(recorded.unrecorded)})
    out += [{"source": "statistics", "text": t} for t in STATISTICS_LIMITATIONS]
    return out


RECORD_FILES = ("model_card.md", "technical_documentation.html", "technical_documentation.md")


def build_context(comparison: Comparison, runs: Mapping[str, RunResult | None], folder: Path | None = None) -> ReportContext:
    """Everything the template places. `folder` is where report.html goes: links to the io logs and the
    compliance files are made relative to it (and only to files that exist there)."""
    from tunegate.report.summary import compute_rows, io_log_links, largest_regressions, scorer_validity

    verdict, policy = comparison.verdict, comparison.policy
    models = [_model_row(comparison.base, "base")] + [_model_row(c.model, "candidate") for c in comparison.candidates]
    methods: dict[str, dict[str, Any]] = {}
    for c in comparison.candidates:
        for s in c.suites:
            for m in s.metrics:
                methods.setdefault(m.name, {"m": m, "suite": s})
    explorer, total = _explorer(comparison, runs, verdict)
    rule_rows = []
    if verdict:
        for cv in verdict.candidates:
            rule_rows += [{"candidate": cv.candidate, "o": o} for o in cv.outcomes]
    return ReportContext(
        comparison=comparison, verdict=verdict, policy=policy, models=models,
        suites=_suite_cards(comparison, verdict), trends=_trends(comparison, policy),
        explorer=explorer, explorer_total=total, runs_found=all(runs.get(m["label"]) is not None for m in models),
        methods_metrics=list(methods.values()), limitations=collect_limitations(comparison, runs), rule_rows=rule_rows,
        mismatches=comparison.suite_mismatches(),
        regressions=largest_regressions(comparison, verdict), validity=scorer_validity(comparison, runs),
        scorers_unrecorded=scorers_used(runs).unrecorded,
        compute=compute_rows(comparison), io_logs=io_log_links(comparison, folder),
        records=[n for n in RECORD_FILES if folder is not None and (Path(folder) / n).is_file()],
    )
