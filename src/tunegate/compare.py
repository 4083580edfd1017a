"""`Comparison`: a base `RunResult` against 1..N candidate `RunResult`s on the same samples.

For each suite the two runs must hold the same sample ids (else the numbers
would not be paired and a `UserError` says which ids differ), and the suite's
config hash, data hash and version must be equal (else a `UserError`, unless
`CompareSettings.allow_suite_mismatch`, which records the difference for the
report). Base and candidate must be different runs: one results file or one
`run_id` on both sides is refused; equal weights are only a warning. For each metric
the per-sample vectors are aligned on the ids both runs scored; a sample
errored (or skipped) in either run is left out of the pair and counted. Then:
the value of each side over the paired samples, the delta, their intervals
(pass/fail metrics: exact Clopper-Pearson intervals for each value and Tango's
score interval for the paired delta; continuous metrics: a seeded paired
percentile bootstrap, withheld when degenerate or on fewer than
`MIN_PAIRS_CONTINUOUS` pairs), a p-value of "no difference" (McNemar's exact
test for 0/1 metrics, a paired permutation test on the metric's own
aggregation otherwise) and the examples that regressed and improved most.
`MetricComparison.pvalues` gives the one-sided tests against a bound that the
gate's rules use (docs/gate-statistics.md).

The `Comparison` is the one object every output is rendered from
(report.html, comparison.json, junit.xml, summary.md); `gate` adds a policy and
a verdict to it.
"""

from __future__ import annotations

import json
import os
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
from tunegate.report_marker import REPORT_MARKER, verify_report_set
from tunegate.results import RunResult, SuiteResult
from tunegate.scorer_validation import ScorerValidation

COMPARISON_SCHEMA_VERSION = 1
# a continuous metric with fewer paired samples gives no test: the percentile bootstrap's coverage
# falls well under its nominal level on a handful of samples (docs/gate-statistics.md)
MIN_PAIRS_CONTINUOUS = 20


class CompareSettings(BaseModel):
    """How the statistics were computed (shown in the report's methods section)."""

    model_config = ConfigDict(extra="forbid")

    confidence: float = Field(default=0.95, gt=0.5, lt=1.0)
    n_resamples: int = Field(default=stats.DEFAULT_RESAMPLES, ge=100)
    seed: int = 0
    top_k: int = Field(default=10, ge=0, description="examples kept per metric in each of regressed/improved")
    allow_suite_mismatch: bool = Field(
        default=False, description="compare suites whose config hash, data hash or version differ (recorded and shown in red)")


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
    # how the intervals were computed: "exact" (Clopper-Pearson for each value, Tango's continuity-corrected
    # score interval for the paired delta; pass/fail metrics), "bootstrap" (seeded paired percentile
    # bootstrap; continuous metrics) or "none"
    interval_method: Literal["exact", "bootstrap", "none"] = "none"
    # pass/fail metrics: the paired table {n, base_ones, candidate_ones, up, down} the exact statistics use
    binary_counts: dict[str, int] | None = None
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

    @property
    def counts(self) -> stats.PairedCounts | None:
        """The paired 0/1 table of a pass/fail metric (None for continuous metrics)."""
        return stats.PairedCounts(**self.binary_counts) if self.binary_counts else None

    def delta_interval(self, confidence: float) -> tuple[float | None, float | None]:
        """The delta interval at `confidence` (exact for pass/fail metrics; else from the kept resamples)."""
        if self.counts is not None:
            return stats.tango_interval(self.counts, confidence)
        if self._boot is not None and abs(confidence - self.confidence) > 1e-12:
            return self._boot.delta_interval(confidence)
        return self.ci_low, self.ci_high

    def candidate_interval(self, confidence: float) -> tuple[float | None, float | None]:
        if self.counts is not None:
            return stats.clopper_pearson(self.counts.candidate_ones, self.counts.n, confidence)
        if self._boot is not None and abs(confidence - self.confidence) > 1e-12:
            return self._boot.candidate_interval(confidence)
        return self.candidate_ci

    def undecidable(self, which: Literal["candidate", "delta"]) -> str | None:
        """Why no one-sided test exists for the candidate value or the delta (None when one does)."""
        if self.counts is not None:
            return None
        if self._boot is None:
            return self.note or "no per-sample statistics were kept (re-run compare)"
        if self.n_paired < MIN_PAIRS_CONTINUOUS:
            return (f"only {self.n_paired} paired samples: the bootstrap needs at least {MIN_PAIRS_CONTINUOUS} "
                    "before its interval means anything")
        if self._boot.degenerate(which):
            return "every bootstrap resample gave the same value: a zero-width interval is not evidence"
        return None

    def pvalues(self, which: Literal["candidate", "delta"], theta0: float) -> tuple[float, float] | None:
        """One-sided p-values (above theta0, below theta0) for the candidate value or the delta, consistent
        with the intervals: exact binomial / Tango score for pass/fail metrics, bootstrap for continuous ones."""
        counts = self.counts
        if counts is not None:
            if which == "candidate":
                return stats.binomial_pvalues(counts.candidate_ones, counts.n, theta0)
            return stats.tango_pvalues(counts, theta0)
        if self.undecidable(which) is not None or self._boot is None:
            return None
        return self._boot.pvalues(which, theta0)

    def standard_error(self, which: Literal["base", "candidate", "delta"]) -> float | None:
        """Bootstrap standard error (continuous metrics; None when there are no resamples)."""
        return self._boot.se(which) if self._boot is not None else None


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
    candidate_config_hash: str = ""
    # what differs between the two runs' suite (config hash, data hash, version); only non-empty when
    # the comparison was made with allow_suite_mismatch, otherwise such a pair is refused
    mismatch: list[str] = Field(default_factory=list)
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
    # attached by `audit` (scorer_validations:) or `tunegate report --scorer-validation`: measured agreement of scorers
    scorer_validations: list[ScorerValidation] = Field(default_factory=list)

    def metric_names(self) -> list[str]:
        seen: dict[str, None] = {}
        for c in self.candidates:
            for s in c.suites:
                for m in s.metrics:
                    seen.setdefault(m.name, None)
        return list(seen)

    def suite_mismatches(self) -> list[str]:
        """One line per (candidate, suite) compared although its suite settings differ from the base's."""
        return [f"{c.model.label}, suite '{s.name}': {'; '.join(s.mismatch)}"
                for c in self.candidates for s in c.suites if s.mismatch]

    def to_json(self) -> str:
        """The comparison.json text; NaN/inf are refused (a NaN here is a bug, not a value)."""
        return json.dumps(self.model_dump(mode="json"), indent=1, ensure_ascii=False, allow_nan=False) + "\n"

    def save(self, path: Path) -> None:
        """Atomic write of this one file (`tunegate.report.write_outputs` writes the whole report set)."""
        atomic_write_text(path, self.to_json())

    @classmethod
    def load(cls, path: Path) -> Comparison:
        """Read comparison.json; a report folder is read only when its completion marker vouches for it."""
        path = Path(path)
        if path.is_dir() and ((path / "comparison.json").exists() or (path / REPORT_MARKER).exists()):
            verify_report_set(path)
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
    binary = (bm.kind == "binary" and agg == "mean" and _unit_weights(wb) and _unit_weights(wc)
              and bool(np.all(np.isin(b, (0.0, 1.0))) and np.all(np.isin(c, (0.0, 1.0)))))
    if binary:  # exact and score intervals: never a zero-width interval, coverage at least nominal
        counts = stats.PairedCounts.from_vectors(b, c)
        out.interval_method, out.binary_counts = "exact", dict(vars(counts))
        conf = settings.confidence
        out.ci_low, out.ci_high = stats.tango_interval(counts, conf)
        out.base_ci = stats.clopper_pearson(counts.base_ones, counts.n, conf)
        out.candidate_ci = stats.clopper_pearson(counts.candidate_ones, counts.n, conf)
    else:
        boot = stats.paired_bootstrap(b, c, agg, wb, wc, n_resamples=settings.n_resamples, seed=seed)
        out._boot, out.interval_method = boot, "bootstrap"
        why = out.undecidable("delta")
        if why:
            out.note = f"{why}; no interval is shown"
        else:
            out.ci_low, out.ci_high = boot.delta_interval(settings.confidence)
        if not boot.degenerate("base") and out.n_paired >= MIN_PAIRS_CONTINUOUS:
            out.base_ci = boot.base_interval(settings.confidence)
        if not boot.degenerate("candidate") and out.n_paired >= MIN_PAIRS_CONTINUOUS:
            out.candidate_ci = boot.candidate_interval(settings.confidence)
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


def _unit_weights(w: np.ndarray | None) -> bool:
    return w is None or bool(np.all(w == 1.0))


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


def _short(digest: str) -> str:
    return digest[:12] if digest else "(none)"


def suite_differences(bs: SuiteResult, cs: SuiteResult) -> list[str]:
    """What makes two runs of one suite unlike: its config hash, data hash or version (empty when alike)."""
    out = []
    if bs.config_hash != cs.config_hash:
        out.append(f"config hash differs (base {_short(bs.config_hash)}, candidate {_short(cs.config_hash)})")
    if bs.data_hash != cs.data_hash:
        out.append(f"data hash differs (base {_short(bs.data_hash)}, candidate {_short(cs.data_hash)})")
    if bs.version != cs.version:
        out.append(f"version differs (base {bs.version}, candidate {cs.version})")
    return out


def _check_like_suites(base: RunResult, cand: RunResult, base_name: str, cand_name: str, allow: bool) -> None:
    """Refuse (UserError) suites run with other settings, data or version, unless `allow` (then compare_suite records it)."""
    found = []
    for bs in base.suites:
        cs = cand.suite(bs.name)
        diffs = suite_differences(bs, cs) if cs is not None else []
        if diffs:
            found.append(f"suite '{bs.name}': {', '.join(diffs)}")
    if found and not allow:
        raise UserError(
            f"{cand_name} and {base_name} ran suites with different settings ({'; '.join(found)}); their numbers are not "
            "comparable: rerun both with the same suite definition and data, or pass --allow-suite-mismatch "
            "(allow_suite_mismatch: true in audit.yaml) to compare anyway"
        )


def compare_suite(bs: SuiteResult, cs: SuiteResult, settings: CompareSettings) -> SuiteComparison:
    warnings: list[str] = []
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
        candidate_data_hash=cs.data_hash, config_hash=bs.config_hash, candidate_config_hash=cs.config_hash,
        mismatch=suite_differences(bs, cs), n_samples=len(_sample_ids(bs)),
        # `truncated` rides along with the status counts so the report shows it (never part of a denominator)
        counts_base={**bs.counts, "truncated": bs.truncated}, counts_candidate={**cs.counts, "truncated": cs.truncated},
        metrics=metrics, warnings=warnings,
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


def _results_file(path: Path) -> Path:
    p = Path(path)
    return p / "results.json" if p.is_dir() else p


def _same_file(a: Path, b: Path) -> bool:
    fa, fb = _results_file(a), _results_file(b)
    try:
        if fa.exists() and fb.exists():
            return os.path.samefile(fa, fb)
    except OSError:
        pass
    return fa.resolve() == fb.resolve()


def _check_distinct_runs(base: RunResult, base_path: Path | None, cand: RunResult, cand_path: Path | None,
                         base_label: str, cand_label: str) -> None:
    """Base and candidate must be different runs: not one results file, not one run id (the same weights may be fine)."""
    if base_path is not None and cand_path is not None and _same_file(base_path, cand_path):
        raise UserError(f"candidate {cand_label}: {cand_path} is the base's own results file ({base_path}); "
                        "a run compared with itself proves nothing: give the candidate's results")
    bid, cid = base.provenance.run_id, cand.provenance.run_id
    if bid and bid == cid:
        raise UserError(f"candidate {cand_label} and base {base_label} are the same run (run id {bid}); "
                        "a run compared with itself proves nothing: give the candidate's results")


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
        _check_distinct_runs(base, base_path, run, path, labels[0], label)
        _check_like_suites(base, run, f"base ({labels[0]})", f"candidate ({label})", settings.allow_suite_mismatch)
        pairs = _align_suites(base, run, f"base ({labels[0]})", f"candidate ({label})")
        suites = [compare_suite(bs, cs, settings) for bs, cs in pairs]
        comps.append(CandidateComparison(model=model_info(run, path, label), suites=suites))
        if run.model_fingerprint == base.model_fingerprint:
            warnings.append(f"candidate {label} has the same weights fingerprint as the base")
        warnings += _numeric_setting_warnings(base, run, labels[0], label)
    if not base.complete or any(not r.complete for r in candidates):
        warnings.append("at least one run is incomplete (errored samples); errored samples are left out of every pair")
    return Comparison(created_at=now_iso(), tunegate_version=tunegate_version(), settings=settings,
                      base=base_info, candidates=comps, warnings=warnings)


def _numeric_setting_warnings(base: RunResult, run: RunResult, base_label: str, label: str) -> list[str]:
    """A base and a candidate answered in different dtypes or by different backends differ for that reason too.

    bfloat16 moves log-likelihoods by ~1e-2 nats and flips near-tied greedy tokens (docs/scaling.md has the
    figures), so such a pair is compared, but the report says why part of a delta may not be the fine-tune's.
    """
    out = []
    for key in ("dtype", "backend"):
        a, b = base.model_identity.get(key), run.model_identity.get(key)
        if a is not None and b is not None and a != b:
            out.append(f"base {base_label} ran with {key} {a}, candidate {label} with {key} {b}: part of each delta may "
                       f"come from that, not from the weights; run both the same way")
    return out


def load_runs(base: Path, candidates: list[Path]) -> tuple[RunResult, list[RunResult]]:
    """Read every results file first, so a bad path fails before any statistics run."""
    return RunResult.load(base), [RunResult.load(p) for p in candidates]
