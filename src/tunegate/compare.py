"""`Comparison`: a base `RunResult` against 1..N candidate `RunResult`s on the same samples.

For each suite the two runs must hold the same sample ids (else the numbers
would not be paired and a `UserError` says which ids differ). For each metric
the per-sample vectors are aligned on the ids both runs scored; a sample
errored (or skipped) in either run is left out of the pair and counted. Then:
the value of each side over the paired samples, the delta, a seeded paired
bootstrap interval, a p-value (McNemar's exact test for 0/1 metrics, a paired
permutation test on the metric's own aggregation otherwise) and the examples
that regressed and improved most.

The `Comparison` is the one object every output is rendered from
(report.html, comparison.json, junit.xml, summary.md); `gate` adds a policy and
a verdict to it.
"""

from __future__ import annotations

import json
import zlib
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr

from tunegate import stats
from tunegate.aggregate import aggregate
from tunegate.errors import UserError
from tunegate.io import atomic_write_text, read_json_model
from tunegate.metric import Direction, Metric, MetricKind
from tunegate.results import RunResult, SuiteResult

COMPARISON_SCHEMA_VERSION = 1


class CompareSettings(BaseModel):
    """How the statistics were computed (shown in the report's methods section)."""

    model_config = ConfigDict(extra="forbid")

    confidence: float = Field(default=0.95, gt=0.5, lt=1.0)
    n_resamples: int = Field(default=stats.DEFAULT_RESAMPLES, ge=100)
    seed: int = 0
    top_k: int = Field(default=10, ge=0, description="examples kept per metric in each of regressed/improved")


class ExampleDelta(BaseModel):
    """One sample's per-sample metric value on both sides."""

    model_config = ConfigDict(extra="forbid")

    sample_id: str
    base: float
    candidate: float
    delta: float


class MetricComparison(BaseModel):
    """One metric, base vs candidate, over the samples both runs scored.

    `delta` is candidate minus base (raw units); `gain` turns it into "positive
    is better" using the direction. `unavailable` says why no statistic exists
    (a scorer was unavailable, no paired samples, the metric is missing on one side).
    """

    model_config = ConfigDict(extra="forbid")

    suite: str
    metric: str
    direction: Direction
    kind: MetricKind
    aggregation: str
    description: str = ""
    base_reported: float | None = None
    candidate_reported: float | None = None
    base_value: float | None = None
    candidate_value: float | None = None
    delta: float | None = None
    confidence: float = 0.95
    ci_low: float | None = None
    ci_high: float | None = None
    base_ci: tuple[float | None, float | None] = (None, None)
    candidate_ci: tuple[float | None, float | None] = (None, None)
    test: Literal["mcnemar-exact", "paired-permutation", "none"] = "none"
    p_value: float | None = None
    discordant_worse: int | None = None
    discordant_better: int | None = None
    n_paired: int = 0
    n_unpaired: int = 0
    n_regressed: int = 0
    n_improved: int = 0
    n_unchanged: int = 0
    regressed: list[ExampleDelta] = Field(default_factory=list)
    improved: list[ExampleDelta] = Field(default_factory=list)
    unavailable: str | None = None
    note: str | None = None

    _boot: stats.Bootstrap | None = PrivateAttr(default=None)

    @property
    def name(self) -> str:
        return f"{self.suite}/{self.metric}"

    @property
    def sign(self) -> float:
        """+1 when higher is better (or neutral), -1 when lower is better."""
        return -1.0 if self.direction == "lower" else 1.0

    def delta_interval(self, confidence: float) -> tuple[float | None, float | None]:
        """The delta interval at `confidence` (recomputed from the kept resamples when it differs)."""
        if self._boot is not None and abs(confidence - self.confidence) > 1e-12:
            return self._boot.delta_interval(confidence)
        return self.ci_low, self.ci_high

    def candidate_interval(self, confidence: float) -> tuple[float | None, float | None]:
        if self._boot is not None and abs(confidence - self.confidence) > 1e-12:
            return self._boot.candidate_interval(confidence)
        return self.candidate_ci


class SuiteComparison(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    kind: str
    version: str
    candidate_version: str
    description: str = ""
    source: str = ""
    content_warning: bool = False
    data_hash: str = ""
    candidate_data_hash: str = ""
    config_hash: str = ""
    n_samples: int = 0
    counts_base: dict[str, int] = Field(default_factory=dict)
    counts_candidate: dict[str, int] = Field(default_factory=dict)
    metrics: list[MetricComparison] = Field(default_factory=list)
    warnings: list[str] = Field(default_factory=list)

    def error_rate(self, side: Literal["base", "candidate"]) -> float:
        """Errored share of the samples that were meant to be scored (skipped ones excluded)."""
        c = self.counts_base if side == "base" else self.counts_candidate
        denom = c.get("scored", 0) + c.get("errored", 0)
        return c.get("errored", 0) / denom if denom else 0.0

    def metric(self, name: str) -> MetricComparison | None:
        return next((m for m in self.metrics if m.metric == name), None)


class ModelInfo(BaseModel):
    """What the report shows about one run's model: names, hashes, fine-tune origin, provenance."""

    model_config = ConfigDict(extra="forbid")

    label: str
    model: str
    backend: str
    fingerprint: str
    revision: str | None = None
    adapter: str | None = None
    results_path: str = ""
    complete: bool = True
    counts: dict[str, int] = Field(default_factory=dict)
    identity: dict[str, Any] = Field(default_factory=dict)
    finetune: dict[str, Any] | None = None
    provenance: dict[str, Any] = Field(default_factory=dict)

    @property
    def step(self) -> int | None:
        """The training step of a fine-tuned checkpoint, when its manifest gave one."""
        step = (self.finetune or {}).get("step")
        return int(step) if isinstance(step, (int, float)) and not isinstance(step, bool) else None


class CandidateComparison(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: ModelInfo
    suites: list[SuiteComparison] = Field(default_factory=list)

    def metric(self, name: str) -> MetricComparison | None:
        """`suite/metric` lookup."""
        suite, _, metric = name.partition("/")
        s = next((x for x in self.suites if x.name == suite), None)
        return s.metric(metric) if s else None

    def suite(self, name: str) -> SuiteComparison | None:
        return next((x for x in self.suites if x.name == name), None)


class Comparison(BaseModel):
    """The one result object: comparisons, then (after `gate`) the policy and the verdict."""

    model_config = ConfigDict(extra="forbid")

    schema_version: int = COMPARISON_SCHEMA_VERSION
    created_at: str = ""
    tunegate_version: str = ""
    settings: CompareSettings = Field(default_factory=CompareSettings)
    base: ModelInfo
    candidates: list[CandidateComparison]
    warnings: list[str] = Field(default_factory=list)
    # filled by tunegate.gate; typed loosely here to keep compare independent of gate
    policy: dict[str, Any] | None = None
    verdict: dict[str, Any] | None = None
    # filled by tunegate.audit: the audit's name, config path and recommended candidate
    audit: dict[str, Any] | None = None

    def metric_names(self) -> list[str]:
        seen: dict[str, None] = {}
        for c in self.candidates:
            for s in c.suites:
                for m in s.metrics:
                    seen.setdefault(m.name, None)
        return list(seen)

    def save(self, path: Path) -> None:
        """Atomic write; NaN/inf are refused (a NaN here is a bug, not a value)."""
        text = json.dumps(self.model_dump(mode="json"), indent=1, ensure_ascii=False, allow_nan=False)
        atomic_write_text(path, text + "\n")

    @classmethod
    def load(cls, path: Path) -> Comparison:
        return read_json_model(path, cls, filename="comparison.json", version=COMPARISON_SCHEMA_VERSION,
                               what="comparison", hint="write one with `tunegate compare` or `tunegate gate`")


# ---------------------------------------------------------------------------
# computation


def _finetune_info(run: RunResult) -> dict[str, Any] | None:
    """Optional fine-tune origin (step, data_sha256, recipe...) from the identity or the provenance config."""
    ft = run.model_identity.get("finetune")
    if not isinstance(ft, dict):
        ft = run.provenance.config.get("finetune") if isinstance(run.provenance.config, dict) else None
    return dict(ft) if isinstance(ft, dict) else None


def model_info(run: RunResult, path: Path | None, label: str | None = None) -> ModelInfo:
    return ModelInfo(
        label=label or run.model.display_name, model=run.model.model, backend=run.model.backend,
        fingerprint=run.model_fingerprint, revision=run.model.revision, adapter=run.model.adapter,
        results_path=str(Path(path).resolve()) if path else "", complete=run.complete, counts=run.counts(),
        identity={k: v for k, v in run.model_identity.items() if k != "finetune"},
        finetune=_finetune_info(run), provenance=run.provenance.model_dump(mode="json"),
    )


def _sample_ids(suite: SuiteResult) -> set[str]:
    if suite.samples:
        return {s.id for s in suite.samples}
    return {i for m in suite.metrics for i in m.per_sample}


def _align_suites(base: RunResult, cand: RunResult, base_name: str, cand_name: str) -> list[tuple[SuiteResult, SuiteResult]]:
    """Pair the suites of two runs by name; any missing suite or differing sample id is a UserError."""
    b_names = [s.name for s in base.suites]
    c_names = [s.name for s in cand.suites]
    for missing, have, lack in ((set(b_names) - set(c_names), base_name, cand_name),
                                (set(c_names) - set(b_names), cand_name, base_name)):
        if missing:
            raise UserError(
                f"suite(s) {', '.join(sorted(missing))} are in {have} but not in {lack}; "
                "run base and candidate on the same suites"
            )
    pairs = []
    for bs in base.suites:
        cs = cand.suite(bs.name)
        assert cs is not None
        bi, ci = _sample_ids(bs), _sample_ids(cs)
        if bi != ci:
            only_b, only_c = sorted(bi - ci)[:3], sorted(ci - bi)[:3]
            detail = "; ".join(x for x in (
                f"only in {base_name}: {', '.join(only_b)}" if only_b else "",
                f"only in {cand_name}: {', '.join(only_c)}" if only_c else "") if x)
            raise UserError(
                f"suite '{bs.name}': sample ids differ between {base_name} and {cand_name} ({detail}); "
                "both runs must use the same suite data (check the suite version and data file)"
            )
        pairs.append((bs, cs))
    return pairs


def _rng_seed(seed: int, name: str) -> list[int]:
    """An independent, reproducible stream per metric."""
    return [seed, zlib.crc32(name.encode("utf-8"))]


def compare_metric(suite: str, bm: Metric, cm: Metric | None, settings: CompareSettings) -> MetricComparison:
    """Paired statistics for one metric; never raises on data, records `unavailable` instead."""
    out = MetricComparison(
        suite=suite, metric=bm.name, direction=bm.direction, kind=bm.kind, aggregation=bm.aggregation,
        description=bm.description, base_reported=bm.value, candidate_reported=cm.value if cm else None,
        confidence=settings.confidence,
    )
    if cm is None:
        out.unavailable = "the candidate run has no such metric"
        return out
    if bm.value is None or cm.value is None:
        side = "base" if bm.value is None else "candidate"
        out.unavailable = f"no value in the {side} run (scorer unavailable or every sample errored)"
    ids = [i for i in bm.per_sample if i in cm.per_sample]
    out.n_paired = len(ids)
    out.n_unpaired = len(set(bm.per_sample) ^ set(cm.per_sample))
    if not bm.per_sample and not cm.per_sample and bm.value is not None and cm.value is not None:
        # a metric published without per-sample values (a corpus score): the runs' own values, no statistics
        out.base_value, out.candidate_value, out.delta = bm.value, cm.value, cm.value - bm.value
        out.note = "no per-sample values (corpus-level metric): no interval or p-value"
        return out
    if not ids:
        out.unavailable = out.unavailable or "no sample was scored in both runs"
        return out
    b = np.array([bm.per_sample[i] for i in ids])
    c = np.array([cm.per_sample[i] for i in ids])
    wb = np.array([(bm.weights or {}).get(i, 1.0) for i in ids]) if bm.weights is not None else None
    wc = np.array([(cm.weights or {}).get(i, 1.0) for i in ids]) if cm.weights is not None else None
    agg = bm.aggregation
    vb, vc = float(aggregate(agg, b, wb)), float(aggregate(agg, c, wc))
    if not (np.isfinite(vb) and np.isfinite(vc)):
        if bm.value is None or cm.value is None:
            out.unavailable = out.unavailable or "the metric is undefined on the paired samples"
            return out
        # corpus-level metrics (corpus BLEU) cannot be recomputed from per-sample values:
        # report the runs' own values, no interval and no test
        out.base_value, out.candidate_value, out.delta = bm.value, cm.value, cm.value - bm.value
        out.note = f"'{agg}' metrics cannot be resampled per sample: no interval or p-value"
        _examples(out, ids, b, c, settings.top_k)
        return out
    out.base_value, out.candidate_value, out.delta = vb, vc, vc - vb
    seed = _rng_seed(settings.seed, out.name)
    boot = stats.paired_bootstrap(b, c, agg, wb, wc, n_resamples=settings.n_resamples, seed=seed)
    out._boot = boot
    out.ci_low, out.ci_high = boot.delta_interval(settings.confidence)
    out.base_ci = boot.base_interval(settings.confidence)
    out.candidate_ci = boot.candidate_interval(settings.confidence)
    binary = bm.kind == "binary" and bool(np.all(np.isin(b, (0.0, 1.0))) and np.all(np.isin(c, (0.0, 1.0))))
    if binary:
        mc = stats.mcnemar_exact(b, c)
        out.test, out.p_value = "mcnemar-exact", mc.pvalue
        # "worse" in McNemar terms is 1 -> 0; for a lower-is-better rate that is an improvement
        worse, better = (mc.worse, mc.better) if bm.direction != "lower" else (mc.better, mc.worse)
        out.discordant_worse, out.discordant_better = worse, better
    else:
        out.test = "paired-permutation"
        out.p_value = stats.paired_permutation_pvalue(b, c, agg, wb, wc, n_resamples=settings.n_resamples, seed=seed)
    _examples(out, ids, b, c, settings.top_k)
    return out


def _examples(out: MetricComparison, ids: list[str], b: np.ndarray, c: np.ndarray, k: int) -> None:
    """Count regressed/improved samples and keep the `k` largest of each (worst first)."""
    gains = (c - b) * out.sign
    order = np.argsort(gains, kind="stable")
    out.n_regressed, out.n_improved = int(np.sum(gains < 0)), int(np.sum(gains > 0))
    out.n_unchanged = len(ids) - out.n_regressed - out.n_improved

    def ex(j: int) -> ExampleDelta:
        return ExampleDelta(sample_id=ids[j], base=float(b[j]), candidate=float(c[j]), delta=float(c[j] - b[j]))

    out.regressed = [ex(int(j)) for j in order[: min(k, out.n_regressed)]]
    out.improved = [ex(int(j)) for j in order[::-1][: min(k, out.n_improved)]]


def compare_suite(bs: SuiteResult, cs: SuiteResult, settings: CompareSettings) -> SuiteComparison:
    warnings = []
    if bs.version != cs.version:
        warnings.append(f"suite version differs: base {bs.version}, candidate {cs.version}")
    if bs.data_hash and cs.data_hash and bs.data_hash != cs.data_hash:
        warnings.append("suite data hash differs between the runs although the sample ids match")
    metrics = [compare_metric(bs.name, bm, cs.metric(bm.name), settings) for bm in bs.metrics]
    for cm in cs.metrics:
        if bs.metric(cm.name) is None:
            metrics.append(MetricComparison(
                suite=bs.name, metric=cm.name, direction=cm.direction, kind=cm.kind, aggregation=cm.aggregation,
                description=cm.description, candidate_reported=cm.value, confidence=settings.confidence,
                unavailable="the base run has no such metric"))
    return SuiteComparison(
        name=bs.name, kind=bs.kind, version=bs.version, candidate_version=cs.version, description=bs.description,
        source=bs.source, content_warning=bs.content_warning or cs.content_warning, data_hash=bs.data_hash,
        candidate_data_hash=cs.data_hash, config_hash=bs.config_hash, n_samples=len(_sample_ids(bs)),
        counts_base=dict(bs.counts), counts_candidate=dict(cs.counts), metrics=metrics, warnings=warnings,
    )


def _labels(runs: list[RunResult], paths: list[Path | None]) -> list[str]:
    """Display names, made unique (a folder name disambiguates two runs of one model name)."""
    labels = [r.model.display_name for r in runs]
    for i, (lab, given) in enumerate(zip(labels, paths, strict=True)):
        if labels.count(lab) > 1 and given is not None:
            p = Path(given)
            labels[i] = f"{lab} ({(p.parent if p.name == 'results.json' else p).name})"
    seen: dict[str, int] = {}
    for i, lab in enumerate(labels):
        seen[lab] = seen.get(lab, 0) + 1
        if seen[lab] > 1:
            labels[i] = f"{lab} #{seen[lab]}"
    return labels


def compare_runs(
    base: RunResult,
    candidates: list[RunResult],
    settings: CompareSettings | None = None,
    *,
    base_path: Path | None = None,
    candidate_paths: list[Path | None] | None = None,
) -> Comparison:
    """Compare one base run with each candidate run (the public API behind `tunegate compare`)."""
    from tunegate.provenance import now_iso, tunegate_version

    if not candidates:
        raise UserError("give at least one candidate results.json to compare with the base")
    settings = settings or CompareSettings()
    cpaths = candidate_paths or [None] * len(candidates)
    labels = _labels([base, *candidates], [base_path, *cpaths])
    base_info = model_info(base, base_path, labels[0])
    comps, warnings = [], []
    for run, path, label in zip(candidates, cpaths, labels[1:], strict=True):
        pairs = _align_suites(base, run, f"base ({labels[0]})", f"candidate ({label})")
        suites = [compare_suite(bs, cs, settings) for bs, cs in pairs]
        comps.append(CandidateComparison(model=model_info(run, path, label), suites=suites))
        if run.model_fingerprint == base.model_fingerprint:
            warnings.append(f"candidate {label} has the same weights fingerprint as the base")
    if not base.complete or any(not r.complete for r in candidates):
        warnings.append("at least one run is incomplete (errored samples); errored samples are left out of every pair")
    return Comparison(created_at=now_iso(), tunegate_version=tunegate_version(), settings=settings,
                      base=base_info, candidates=comps, warnings=warnings)


def load_runs(base: Path, candidates: list[Path]) -> tuple[RunResult, list[RunResult]]:
    """Read every results file first, so a bad path fails before any statistics run."""
    return RunResult.load(base), [RunResult.load(p) for p in candidates]
