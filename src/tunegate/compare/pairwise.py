"""Pairwise judging: base's and candidate's answers to each prompt of a `pairwise` suite, compared by a judge.

Why here: a suite runs on one model, and only the comparison holds both runs.
The answers come from the two runs' results (the cached responses every suite
uses); the judge is the `judge` scorer with a pairwise rubric, built from the
record the suite kind wrote (`SuiteResult.scorers`), so `tunegate compare`,
`tunegate gate` and `tunegate audit` judge the same way, and the judge's
response cache makes a second comparison free.

Position bias: each pair is asked twice, (A = base, B = candidate) and
(A = candidate, B = base). Both orders agreeing gives a win, a loss or a tie; a
verdict that changes with the order is a tie (`flipped`); an error or an
unparseable verdict in either order makes the pair errored, never a default.

The verdicts become per-sample vectors for both sides, so the comparison's
usual paired statistics apply (`tunegate.compare.comparison.compare_metric`):

| metric | candidate per pair | base per pair | kind |
|---|---|---|---|
| `win_rate` | 1 win, else 0 | 1 loss, else 0 | binary: Clopper-Pearson, sign test (McNemar), Tango delta |
| `tie_rate` | 1 tie | 1 tie | binary, neutral |
| `win_rate_ties_split` | 1 / 0.5 / 0 | 1 minus that | continuous: paired bootstrap |
| `win_rate_length_matched` | as above, pairs of similar length only | | continuous |
| `win_rate/<category>`, `win_rate_ties_split/<category>` | per category | | |

So the base column of `win_rate` is the base's own win rate against this
candidate (the candidate's loss rate) and a `min: 0.5` rule tests the
candidate's win rate with the exact binomial test.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tunegate.compare import stats
from tunegate.compare.pairwise_models import LengthBucket, OutcomeCounts, PairOutcome, PairwiseSummary, Side
from tunegate.core.metric import Metric
from tunegate.core.results import RunResult, SampleResult, SuiteResult

PAIRWISE_KIND = "pairwise"
#: answers whose lengths differ by at most this share of the longer one are "similar" (the length-matched win rate)
LENGTH_TOLERANCE = 0.2
#: fewer pairs than this give no bootstrap interval for the ties-split rate (as for every continuous metric)
MIN_PAIRS_BOOTSTRAP = 20
HEADLINE = ("win_rate", "tie_rate", "win_rate_ties_split", "win_rate_length_matched")
PER_CATEGORY = ("win_rate", "win_rate_ties_split")

DESCRIPTIONS = {
    "win_rate": "Share of judged pairs the candidate's answer wins in both orders (ties and flips count as non-wins); "
                "the base column is the base's own win rate against it. Exact Clopper-Pearson interval.",
    "tie_rate": "Share of judged pairs that are ties: the judge said tie in both orders, or its verdict flipped with "
                "the order (position bias).",
    "win_rate_ties_split": "Candidate's preference score: 1 per win, 1/2 per tie, 0 per loss, averaged (0.5 = no "
                           "preference); paired bootstrap interval.",
    "win_rate_length_matched": "The ties-split win rate over the pairs whose answers are of similar length (within "
                               "20% of the longer), since judges favour longer answers.",
}


def is_pairwise(suite: SuiteResult) -> bool:
    return suite.kind == PAIRWISE_KIND


def _category(r: SampleResult) -> str | None:
    cat = r.sample.metadata.get("category")
    return str(cat) if isinstance(cat, str) and cat else None


def metric_names(run: RunResult) -> list[str]:
    """The `suite/metric` names the comparison adds for the run's pairwise suites (what a policy may name)."""
    out = []
    for s in run.suites:
        if is_pairwise(s):
            cats = sorted({c for r in s.samples if (c := _category(r)) is not None})
            out += [f"{s.name}/{m}" for m in HEADLINE]
            out += [f"{s.name}/{m}/{c}" for c in cats for m in PER_CATEGORY]
    return out


def length_bucket(base_chars: int, cand_chars: int, tolerance: float = LENGTH_TOLERANCE) -> LengthBucket:
    """The candidate's answer against the base's: `similar` within `tolerance` of the longer one, else shorter/longer."""
    longer = max(base_chars, cand_chars, 1)
    d = (cand_chars - base_chars) / longer
    if abs(d) <= tolerance:
        return "similar"
    return "longer" if d > 0 else "shorter"


def combine(first: Side | None, second: Side | None) -> tuple[str, bool]:
    """The pair's outcome from the two orders' verdicts (each the model favoured); (outcome, flipped)."""
    if first is None or second is None:
        return "errored", False
    if first != second:
        return "tie", True
    return {"candidate": "win", "base": "loss", "tie": "tie"}[first], False


_FIRST: dict[str, Side] = {"a": "base", "b": "candidate", "tie": "tie"}  # A = base, B = candidate
_SECOND: dict[str, Side] = {"a": "candidate", "b": "base", "tie": "tie"}  # A = candidate, B = base


def answer_text(r: SampleResult | None) -> tuple[str | None, str | None]:
    """A sample's generated text, or why there is none."""
    if r is None:
        return None, "no such sample"
    if r.status != "scored":
        return None, f"{r.status}: {r.reason or 'no reason recorded'}"
    if len(r.responses) != 1 or r.responses[0].text is None:
        return None, "no generated text"
    return r.responses[0].text, None


_JUDGES: dict[str, Any] = {}


def judge_from_record(suite: SuiteResult) -> Any:
    """The pairwise judge the suite's results name (one instance per options per process); raises on a bad record."""
    from tunegate.scorers.pairwise_judge import PairwiseJudge

    rec = next((s for s in suite.scorers or [] if s.name == "judge"), None)
    if rec is None:
        raise ValueError(f"suite {suite.name}: the results record no judge (scorer 'judge' in the suite's scorers)")
    key = json.dumps(rec.options, sort_keys=True, default=str)
    if key not in _JUDGES:
        if "[redacted]" in key:
            raise ValueError(f"suite {suite.name}: the judge's recorded options were redacted (a credential-like value); "
                             "point the judge at its key with an environment variable name (api_key_env)")
        judge = PairwiseJudge(**rec.options)
        judge.load()
        _JUDGES[key] = judge
    return _JUDGES[key]


@dataclass
class PairwiseResult:
    """What the comparison adds for one pairwise suite of one candidate."""

    base_metrics: list[Metric]
    candidate_metrics: list[Metric]
    summary: PairwiseSummary
    judge_errored: int = 0
    warnings: list[str] = field(default_factory=list)


def judge_outcomes(bs: SuiteResult, cs: SuiteResult, judge: Any) -> list[PairOutcome]:
    """Every sample's outcome: both answers judged in both orders (pairs lacking an answer are errored)."""
    cand = {r.id: r for r in cs.samples}
    todo: list[PairOutcome] = []
    asks: list[tuple[str | None, str, str]] = []
    out: list[PairOutcome] = []
    for r in bs.samples:
        b_text, b_why = answer_text(r)
        c_text, c_why = answer_text(cand.get(r.id))
        o = PairOutcome(sample_id=r.id, category=_category(r), outcome="errored")
        if b_text is None or c_text is None:
            o.reason = "; ".join(x for x in (b_why and f"base: {b_why}", c_why and f"candidate: {c_why}") if x)
            o.error_stage = "answer"
        else:
            o.base_chars, o.candidate_chars = len(b_text.strip()), len(c_text.strip())
            o.length_bucket = length_bucket(o.base_chars, o.candidate_chars)
            todo.append(o)
            asks += [(r.sample.input, b_text, c_text), (r.sample.input, c_text, b_text)]
        out.append(o)
    if todo:
        verdicts = judge.judge_pairs(asks)
        for i, o in enumerate(todo):
            v1, v2 = verdicts[2 * i], verdicts[2 * i + 1]
            o.first = _FIRST[v1.label] if v1.label else None
            o.second = _SECOND[v2.label] if v2.label else None
            outcome, o.flipped = combine(o.first, o.second)
            o.outcome = outcome  # type: ignore[assignment]
            if outcome == "errored":
                o.error_stage = "judge"
                o.reason = "; ".join(f"{which}: {v.error}" for which, v in (("A=base", v1), ("A=candidate", v2)) if v.error)
    return out


def failed_outcomes(bs: SuiteResult, why: str) -> list[PairOutcome]:
    """Every pair errored with `why` (no judge could be built): fail closed."""
    return [PairOutcome(sample_id=r.id, category=_category(r), outcome="errored", reason=why, error_stage="judge")
            for r in bs.samples]


def count(outcomes: Iterable[PairOutcome], confidence: float = 0.95, seed: int = 0,
          n_resamples: int = stats.DEFAULT_RESAMPLES) -> OutcomeCounts:
    """Wins, ties, losses and the rates with their intervals (see `OutcomeCounts`)."""
    outs = list(outcomes)
    judged = [o for o in outs if o.outcome != "errored"]
    c = OutcomeCounts(n=len(judged), wins=sum(o.outcome == "win" for o in judged), ties=sum(o.outcome == "tie" for o in judged),
                      losses=sum(o.outcome == "loss" for o in judged), errored=len(outs) - len(judged),
                      flipped=sum(o.flipped for o in judged))
    if c.n:
        c.win_rate, c.tie_rate, c.loss_rate = c.wins / c.n, c.ties / c.n, c.losses / c.n
        c.win_rate_ties_split = (c.wins + 0.5 * c.ties) / c.n
        c.win_ci = stats.clopper_pearson(c.wins, c.n, confidence)
        c.tie_ci = stats.clopper_pearson(c.ties, c.n, confidence)
        if c.n >= MIN_PAIRS_BOOTSTRAP:
            v = np.array([o.value for o in judged], dtype=float)
            boot = stats.paired_bootstrap(1.0 - v, v, "mean", n_resamples=n_resamples, seed=[seed, 7919])
            if not boot.degenerate("candidate"):
                c.ties_split_ci = boot.candidate_interval(confidence)
    return c


def outcome_metrics(outcomes: list[PairOutcome]) -> tuple[list[Metric], list[Metric]]:
    """(base side, candidate side) metrics with per-sample vectors over the judged pairs; errored pairs counted."""
    judged = [o for o in outcomes if o.outcome != "errored"]
    errored = len(outcomes) - len(judged)
    base: list[Metric] = []
    cand: list[Metric] = []

    def add(name: str, pick: list[PairOutcome], c_val: Any, b_val: Any, kind: str, direction: str, err: int) -> None:
        desc = DESCRIPTIONS.get(name.split("/", 1)[0], "")
        if "/" in name:
            desc = f"{desc} Category {name.split('/', 1)[1]} only."
        for side, fn in ((cand, c_val), (base, b_val)):
            side.append(Metric.from_values(name, {o.sample_id: float(fn(o)) for o in pick}, kind=kind,  # type: ignore[arg-type]
                                           direction=direction, description=desc, errored=err))  # type: ignore[arg-type]

    def metrics_for(prefix: str, pick: list[PairOutcome], err: int) -> None:
        add(f"win_rate{prefix}", pick, lambda o: o.outcome == "win", lambda o: o.outcome == "loss", "binary", "higher", err)
        if not prefix:
            add("tie_rate", pick, lambda o: o.outcome == "tie", lambda o: o.outcome == "tie", "binary", "neutral", err)
        add(f"win_rate_ties_split{prefix}", pick, lambda o: o.value, lambda o: 1.0 - o.value, "continuous", "higher", err)
        if not prefix:
            similar = [o for o in pick if o.length_bucket == "similar"]
            add("win_rate_length_matched", similar, lambda o: o.value, lambda o: 1.0 - o.value, "continuous", "higher", err)

    metrics_for("", judged, errored)
    for cat in sorted({o.category for o in outcomes if o.category}):
        in_cat = [o for o in outcomes if o.category == cat]
        metrics_for(f"/{cat}", [o for o in in_cat if o.outcome != "errored"], sum(o.outcome == "errored" for o in in_cat))
    return base, cand


def summarise(outcomes: list[PairOutcome], confidence: float, seed: int, n_resamples: int) -> PairwiseSummary:
    """Counts overall, per category and per length bucket, with the pairs themselves."""
    def cnt(pick: Iterable[PairOutcome]) -> OutcomeCounts:
        return count(pick, confidence, seed, n_resamples)

    cats = sorted({o.category for o in outcomes if o.category})
    return PairwiseSummary(
        length_tolerance=LENGTH_TOLERANCE, counts=cnt(outcomes),
        by_category={c: cnt(o for o in outcomes if o.category == c) for c in cats},
        by_length={b: cnt(o for o in outcomes if o.length_bucket == b) for b in ("shorter", "similar", "longer")},
        outcomes=outcomes,
    )


def judge_suite(bs: SuiteResult, cs: SuiteResult, *, confidence: float = 0.95, seed: int = 0,
                n_resamples: int = stats.DEFAULT_RESAMPLES, judge: Any = None) -> PairwiseResult:
    """Judge one pairwise suite of one candidate; never raises on data or judge failure (errored pairs instead)."""
    error = None
    try:
        judge = judge if judge is not None else judge_from_record(bs)
    except Exception as exc:  # noqa: BLE001 - a judge that cannot be built or loaded fails closed: every pair errors
        error = f"the judge could not be loaded: {getattr(exc, 'message', None) or f'{type(exc).__name__}: {exc}'}"
        judge = None
    if judge is not None:
        try:
            outcomes = judge_outcomes(bs, cs, judge)
        except Exception as exc:  # noqa: BLE001 - a backend failure mid-way errors every pair, never a partial verdict
            error = f"the judge failed: {type(exc).__name__}: {exc}"
    if error is not None:
        outcomes = failed_outcomes(bs, error)
    base_m, cand_m = outcome_metrics(outcomes)
    summary = summarise(outcomes, confidence, seed, n_resamples)
    summary.error = error
    if judge is not None:
        summary.judge, summary.rubric = judge.judge_identity() or {}, dict(judge.rubric_record)
    judge_err = [o for o in outcomes if o.error_stage == "judge"]
    warnings = []
    if judge_err:
        warnings.append(f"{len(judge_err)} pair(s) could not be judged and count as errored samples of the candidate "
                        f"(first: {judge_err[0].sample_id}: {judge_err[0].reason})")
    return PairwiseResult(base_m, cand_m, summary, judge_errored=len(judge_err), warnings=warnings)
