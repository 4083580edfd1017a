"""Gate: evaluate a `Policy` over a `Comparison` and decide a `Verdict` per candidate.

Each rule ends pass, fail or inconclusive with a one-sentence reason
(or incomplete when the evidence is missing). The decision rules, with `gain`
the delta turned so that positive is better and [lo, hi] its two-sided
interval at the rule's confidence:

- max_regression t: pass if lo >= -t; fail if the change is significant
  (Holm-adjusted p < 1 - confidence) and gain < -t; else inconclusive.
- min_improvement t: pass if lo >= t and the change is significant;
  fail if hi < t; else inconclusive.
- min v / max v on the candidate's value: pass if the whole interval clears
  the bound; fail if the whole interval is beyond it; else inconclusive.

Holm's correction runs across the rules of one gate that carry a test
(max_regression and min_improvement), per candidate. Exit codes: 3 when any
candidate is incomplete (errored samples above the allowed share, a metric
without a value), else 1 when any rule fails (or, with `strict`, is
inconclusive), else 0.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from tunegate import stats
from tunegate.compare import CandidateComparison, CompareSettings, Comparison, MetricComparison
from tunegate.config import GateRule, Policy, load_yaml_model
from tunegate.errors import ExitCode, UserError

Status = Literal["pass", "fail", "inconclusive", "incomplete"]
_RANK: dict[str, int] = {"pass": 0, "inconclusive": 1, "fail": 2, "incomplete": 3}


class RuleOutcome(BaseModel):
    """One rule on one candidate: the numbers it was decided on and why."""

    model_config = ConfigDict(extra="forbid")

    metric: str
    kind: str
    threshold: float
    confidence: float
    description: str = ""
    status: Status
    reason: str
    value: float | None = None
    delta: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    p_value: float | None = None
    p_holm: float | None = None

    @property
    def label(self) -> str:
        return f"{self.metric} {self.kind} {fmt(self.threshold)}"


class CandidateVerdict(BaseModel):
    model_config = ConfigDict(extra="forbid")

    candidate: str
    status: Status
    outcomes: list[RuleOutcome] = Field(default_factory=list)
    incomplete: list[str] = Field(default_factory=list)


class Verdict(BaseModel):
    """The gate's decision over every candidate, with its exit code."""

    model_config = ConfigDict(extra="forbid")

    status: Status
    strict: bool = False
    exit_code: int
    policy_name: str = ""
    policy_path: str = ""
    policy_sha256: str = ""
    candidates: list[CandidateVerdict] = Field(default_factory=list)

    @property
    def explanation(self) -> str:
        """One sentence on what the overall status means."""
        return {
            "pass": "Every rule holds for every candidate at its stated confidence.",
            "fail": "At least one rule fails for at least one candidate.",
            "inconclusive": "No rule fails, but at least one could not be shown to hold on these samples.",
            "incomplete": "The evidence is incomplete (errored samples above the allowed share, or a metric without a value).",
        }[self.status]

    @property
    def headline(self) -> str:
        word = {"pass": "PASS", "fail": "FAIL", "inconclusive": "INCONCLUSIVE", "incomplete": "INCOMPLETE"}[self.status]
        if self.status == "inconclusive":
            tail = "strict mode: treated as a failure" if self.strict else "not strict: exit 0, but nothing was shown to hold"
            return f"{word} ({tail})"
        return word


def fmt(x: float | None, digits: int = 4) -> str:
    """Short human number: 4 significant digits, n/a for None."""
    if x is None:
        return "n/a"
    return f"{x + 0.0 if x != 0 else 0.0:.{digits}g}"  # never print "-0"


def _pct(x: float) -> str:
    return f"{100 * x:.3g}%"


def verdict_of(comparison: Comparison) -> Verdict | None:
    """The verdict stored in a comparison (None for a plain `compare`)."""
    return Verdict.model_validate(comparison.verdict) if comparison.verdict else None


def policy_of(comparison: Comparison) -> Policy | None:
    return Policy.model_validate(comparison.policy) if comparison.policy else None


def check_policy(policy: Policy, comparison: Comparison, source: str = "policy") -> None:
    """Refuse unknown metric names and impossible rules before deciding anything (exit 2)."""
    known = comparison.metric_names()
    for i, rule in enumerate(policy.rules):
        if rule.metric not in known:
            raise UserError(
                f"{source}: rules.{i}.metric: unknown metric {rule.metric!r}; valid names: {', '.join(known) or '(none)'}"
            )
        m = next(mc for c in comparison.candidates if (mc := c.metric(rule.metric)) is not None)
        if rule.kind in ("max_regression", "min_improvement") and m.direction == "neutral":
            raise UserError(
                f"{source}: rules.{i}: metric {rule.metric!r} has no better direction (neutral); use min or max instead of {rule.kind}"
            )


def decide(rule: GateRule, m: MetricComparison | None, conf: float, p_holm: float | None) -> RuleOutcome:
    """Apply one rule to one metric comparison (see the module docstring for the table)."""
    t = rule.threshold
    alpha = 1.0 - conf
    out = RuleOutcome(metric=rule.metric, kind=rule.kind, threshold=t, confidence=conf, description=rule.description,
                      status="inconclusive", reason="")
    if m is None or m.unavailable:
        out.status = "incomplete"
        out.reason = f"{rule.metric} has no value to judge: {m.unavailable if m else 'missing for this candidate'}."
        return out
    out.value, out.delta = m.candidate_value, m.delta
    if rule.kind in ("max_regression", "min_improvement"):
        out.p_value, out.p_holm = m.p_value, p_holm
    cl = f"{_pct(conf)}"
    if rule.kind in ("min", "max"):
        lo, hi = m.candidate_interval(conf)
        out.ci_low, out.ci_high = lo, hi
        v = m.candidate_value
        if lo is None or hi is None:
            out.reason = (f"value {fmt(v)} has no confidence interval ({m.note or 'no resampling possible'}), "
                          f"so the bound {fmt(t)} cannot be established.")
            return out
        inside = lo >= t if rule.kind == "min" else hi <= t
        beyond = hi < t if rule.kind == "min" else lo > t
        word = "at least" if rule.kind == "min" else "at most"
        if inside:
            out.status = "pass"
            out.reason = f"value {fmt(v)} is {word} {fmt(t)} over its whole {cl} interval [{fmt(lo)}, {fmt(hi)}]."
        elif beyond:
            out.status = "fail"
            out.reason = f"value {fmt(v)} misses the bound ({word} {fmt(t)}) over its whole {cl} interval [{fmt(lo)}, {fmt(hi)}]."
        else:
            out.reason = (f"value {fmt(v)} has a {cl} interval [{fmt(lo)}, {fmt(hi)}] that straddles the bound {fmt(t)}; "
                          "more samples are needed.")
        return out
    lo_d, hi_d = m.delta_interval(conf)
    out.ci_low, out.ci_high = lo_d, hi_d
    if lo_d is None or hi_d is None or m.delta is None:
        out.reason = (f"delta {fmt(m.delta)} has no confidence interval ({m.note or 'no resampling possible'}), "
                      "so the rule cannot be established.")
        return out
    # gain: positive is better; its interval flips with the direction
    gain = m.delta * m.sign
    g_lo, g_hi = (lo_d, hi_d) if m.sign > 0 else (-hi_d, -lo_d)
    significant = p_holm is not None and p_holm < alpha
    ptxt = f"Holm-adjusted p = {fmt(p_holm, 3)}"
    if rule.kind == "max_regression":
        if g_lo >= 0:
            out.status = "pass"
            out.reason = (f"at {cl} confidence the candidate is no worse than the base (gain interval [{fmt(g_lo)}, {fmt(g_hi)}]), "
                          f"within the tolerance {fmt(t)}.")
        elif g_lo >= -t:
            out.status = "pass"
            out.reason = f"at {cl} confidence the candidate is at most {fmt(-g_lo)} worse than the base, within the tolerance {fmt(t)}."
        elif significant and gain < -t:
            out.status = "fail"
            out.reason = (f"the candidate is {fmt(-gain)} worse than the base, beyond the tolerance {fmt(t)}, "
                          f"and the change is significant ({ptxt} < {fmt(alpha, 3)}).")
        elif gain < -t:
            out.reason = (f"the candidate is {fmt(-gain)} worse than the base, beyond the tolerance {fmt(t)}, "
                          f"but the change is not significant ({ptxt}).")
        else:
            out.reason = (f"the point change ({fmt(gain)} in the good direction) is within the tolerance {fmt(t)}, "
                          f"but the {cl} interval allows a regression of {fmt(-g_lo)}.")
        return out
    # min_improvement
    if g_lo >= t and significant:
        out.status = "pass"
        out.reason = (f"at {cl} confidence the candidate improves by at least {fmt(g_lo)} (required {fmt(t)}), "
                      f"and the change is significant ({ptxt}).")
    elif g_hi < t:
        out.status = "fail"
        out.reason = f"at {cl} confidence the improvement is at most {fmt(g_hi)}, short of the required {fmt(t)}."
    elif g_lo >= t:
        out.reason = f"the interval clears the required improvement {fmt(t)}, but the change is not significant after correction ({ptxt})."
    else:
        out.reason = f"the improvement {fmt(gain)} has a {cl} interval [{fmt(g_lo)}, {fmt(g_hi)}] that straddles the required {fmt(t)}."
    return out


def evaluate_candidate(policy: Policy, cand: CandidateComparison) -> CandidateVerdict:
    """Every rule on one candidate, Holm-corrected across its tested rules."""
    metrics = [cand.metric(r.metric) for r in policy.rules]
    tested = [i for i, (r, m) in enumerate(zip(policy.rules, metrics, strict=True))
              if r.kind in ("max_regression", "min_improvement") and m is not None and m.p_value is not None and not m.unavailable]
    adjusted = dict(zip(tested, stats.holm([metrics[i].p_value for i in tested]), strict=True))  # type: ignore[union-attr,misc]
    outcomes = [decide(r, m, r.confidence or policy.confidence, adjusted.get(i))
                for i, (r, m) in enumerate(zip(policy.rules, metrics, strict=True))]
    incomplete: list[str] = []
    suites = dict.fromkeys(r.metric.split("/", 1)[0] for r in policy.rules)
    for name in suites:
        s = cand.suite(name)
        if s is None:
            continue
        for side in ("base", "candidate"):
            rate = s.error_rate(side)
            if rate > policy.max_error_rate:
                counts = s.counts_base if side == "base" else s.counts_candidate
                incomplete.append(
                    f"suite {name}: {counts.get('errored', 0)} of {counts.get('scored', 0) + counts.get('errored', 0)} samples errored "
                    f"in the {side} run ({_pct(rate)}), above the allowed {_pct(policy.max_error_rate)}"
                )
    incomplete += [f"{o.metric}: {o.reason}" for o in outcomes if o.status == "incomplete"]
    status: Status = "incomplete" if incomplete else max((o.status for o in outcomes), key=_RANK.__getitem__, default="pass")
    return CandidateVerdict(candidate=cand.model.label, status=status, outcomes=outcomes, incomplete=incomplete)


def exit_code_for(status: Status, strict: bool) -> int:
    if status == "incomplete":
        return int(ExitCode.INCOMPLETE)
    if status == "fail" or (status == "inconclusive" and strict):
        return int(ExitCode.GATE_FAILED)
    return int(ExitCode.PASS)


def evaluate_policy(policy: Policy, comparison: Comparison, *, strict: bool = False, source: str = "policy") -> Verdict:
    """Check the policy against the comparison, decide every candidate, and record both in the comparison."""
    check_policy(policy, comparison, source)
    verdicts = [evaluate_candidate(policy, c) for c in comparison.candidates]
    status: Status = max((v.status for v in verdicts), key=_RANK.__getitem__)
    verdict = Verdict(status=status, strict=strict, exit_code=exit_code_for(status, strict),
                      policy_name=policy.name, candidates=verdicts)
    comparison.policy = policy.model_dump(mode="json")
    comparison.verdict = verdict.model_dump(mode="json")
    return verdict


def load_policy(path: Path) -> tuple[Policy, str]:
    """Read and validate a policy file; returns it with the SHA-256 of its bytes (provenance)."""
    import hashlib

    policy = load_yaml_model(Path(path), Policy)
    return policy, hashlib.sha256(Path(path).read_bytes()).hexdigest()


def gate_files(policy_path: Path, base: Path, candidates: list[Path], *, strict: bool = False,
               settings: CompareSettings | None = None) -> tuple[Comparison, Verdict]:
    """`tunegate gate`: validate the policy and inputs, compare, decide."""
    from tunegate.compare import compare_runs, load_runs

    policy, digest = load_policy(policy_path)  # bad policy: exit 2 before any statistics
    base_run, cand_runs = load_runs(base, candidates)
    known = set(base_run.metric_names()) | {n for r in cand_runs for n in r.metric_names()}
    for i, rule in enumerate(policy.rules):  # unknown names fail fast, before the bootstrap
        if rule.metric not in known:
            raise UserError(f"{policy_path}: rules.{i}.metric: unknown metric {rule.metric!r}; valid names: {', '.join(sorted(known))}")
    # the report's intervals use the policy's confidence; rules with their own level are recomputed from the same resamples
    settings = (settings or CompareSettings()).model_copy(update={"confidence": policy.confidence})
    comparison = compare_runs(base_run, cand_runs, settings, base_path=base, candidate_paths=list(candidates))
    verdict = evaluate_policy(policy, comparison, strict=strict, source=str(policy_path))
    verdict.policy_path, verdict.policy_sha256 = str(policy_path), digest
    comparison.verdict = verdict.model_dump(mode="json")
    return comparison, verdict

