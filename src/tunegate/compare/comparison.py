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

import os
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from tunegate.compare import stats
from tunegate.compare.models import (
    MIN_PAIRS_CONTINUOUS,
    CandidateComparison,
    CompareSettings,
    Comparison,
    ExampleDelta,
    MetricComparison,
    ModelInfo,
    SuiteComparison,
)
from tunegate.compare.pairwise import is_pairwise, judge_suite
from tunegate.core.aggregate import aggregate
from tunegate.core.errors import UserError
from tunegate.core.metric import Metric
from tunegate.core.results import RunResult, SuiteResult

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
    counts_c = {**cs.counts, "truncated": cs.truncated}
    pairwise = None
    if is_pairwise(bs):  # judged here, where both runs' answers are at hand (tunegate.compare.pairwise)
        pw = judge_suite(bs, cs, confidence=settings.confidence, seed=settings.seed, n_resamples=settings.n_resamples)
        metrics += [compare_metric(bs.name, b, c, settings) for b, c in zip(pw.base_metrics, pw.candidate_metrics, strict=True)]
        warnings += pw.warnings
        pairwise = pw.summary
        if pw.judge_errored:  # an unjudged pair is an errored sample of the candidate: the gate's error budget sees it
            counts_c["errored"] = counts_c.get("errored", 0) + pw.judge_errored
            counts_c["scored"] = max(0, counts_c.get("scored", 0) - pw.judge_errored)
            counts_c["judge_errored"] = pw.judge_errored
    return SuiteComparison(
        name=bs.name, kind=bs.kind, version=bs.version, candidate_version=cs.version, description=bs.description,
        source=bs.source, content_warning=bs.content_warning or cs.content_warning, data_hash=bs.data_hash,
        data_source=bs.data_source,
        candidate_data_hash=cs.data_hash, config_hash=bs.config_hash, candidate_config_hash=cs.config_hash,
        mismatch=suite_differences(bs, cs), n_samples=len(_sample_ids(bs)),
        # `truncated` rides along with the status counts so the report shows it (never part of a denominator)
        counts_base={**bs.counts, "truncated": bs.truncated}, counts_candidate=counts_c,
        metrics=metrics, warnings=warnings, pairwise=pairwise,
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
    from tunegate.core.provenance import now_iso, tunegate_version

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
