"""Gate: evaluate a `Policy` over a `Comparison` and decide a `Verdict` per candidate.

Every rule is a pair of one-sided tests against its bound (`tunegate.ruletest`):

- PASS when the one-sided (1 - alpha/2) bound of the tested quantity lies on
  the good side of the bound (for `max_regression t`: the regression's upper
  bound is below t; for `min v`: the value's lower bound is above v);
- FAIL when the test "it is on the bad side" rejects at alpha/2 after Holm's
  adjustment across the candidate's rules (for `max_regression t`: the
  regression's lower bound is above t, significantly beyond the tolerance);
- otherwise inconclusive; incomplete when the evidence is missing.

alpha = 1 - confidence (the rule's own or the policy's). Pass/fail metrics use
exact binomial (Clopper-Pearson) and Tango score tests, continuous metrics the
paired bootstrap; a rule with no valid test (a degenerate bootstrap, fewer
than `MIN_PAIRS_CONTINUOUS` pairs, a corpus-level metric) is inconclusive.

Multiplicity: Holm across the FAIL tests of one candidate's rules. PASS needs
every rule of a candidate to pass, an intersection-union test, which holds its
level without adjustment. Across candidates no further adjustment: each
candidate's verdict is a statement about that candidate (see
docs/gate-statistics.md); `Verdict.multiplicity` states this in every report.
Exit codes: 3 when any candidate is incomplete (errored samples above the
allowed share, a metric without a value), else 1 when any rule fails (or, with
`strict`, is inconclusive), else 0.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from tunegate import stats
from tunegate.compare import CandidateComparison, CompareSettings, Comparison, MetricComparison
from tunegate.config import GateRule, Policy, load_yaml_model
from tunegate.errors import ExitCode, UserError
from tunegate.ruletest import Side, alpha_half, detectable, side_of_rule

Status = Literal["pass", "fail", "inconclusive", "incomplete"]
_RANK: dict[str, int] = {"pass": 0, "inconclusive": 1, "fail": 2, "incomplete": 3}


class RuleOutcome(BaseModel):
    """One rule on one candidate: the numbers it was decided on and why.

    `ci_low`/`ci_high`: the two-sided interval at `confidence` of what the rule tests (the candidate's
    value for min/max, the delta for the others); its ends are the one-sided bounds the rule uses.
    `p_value`: the raw one-sided p-value of the FAIL test ("the rule is violated"), `p_holm` the same
    after Holm across the candidate's rules; `p_pass` the one-sided p-value of the PASS test ("the
    rule holds"; no adjustment, see the module docstring). `method`: "exact" (Clopper-Pearson /
    Tango score) or "bootstrap". `n`: the paired samples it was decided on. `detectable_80` /
    `detectable_95`: the smallest regression (metric units, in the metric's bad direction from the
    base's value) this rule would have failed with 80% / 95% probability at that n (None: not even
    the largest possible one); `holm_family`: the number of rules in its Holm family.
    """

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
    p_pass: float | None = None
    method: str = ""
    n: int = 0
    holm_family: int = 0
    detectable_80: float | None = None
    detectable_95: float | None = None

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
    multiplicity: str = ""
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


@dataclass(frozen=True)
class RuleTest:
    """A rule's two one-sided tests on one candidate: p-values of "holds" and "is violated", and the interval."""

    side: Side
    p_good: float | None
    p_bad: float | None
    lo: float | None
    hi: float | None
    why: str | None = None  # why there is no test


def rule_test(rule: GateRule, m: MetricComparison, conf: float) -> RuleTest:
    """The one-sided p-values and the two-sided interval (at `conf`) behind one rule on one metric comparison."""
    side = side_of_rule(rule, m)
    lo, hi = m.candidate_interval(conf) if side.which == "candidate" else m.delta_interval(conf)
    pv = m.pvalues(side.which, side.theta0)
    if pv is None:
        return RuleTest(side, None, None, lo, hi, m.undecidable(side.which) or m.note or "no per-sample values")
    above, below = pv
    good, bad = (above, below) if side.good > 0 else (below, above)
    return RuleTest(side, good, bad, lo, hi)


def decide(rule: GateRule, m: MetricComparison | None, conf: float, p_holm: float | None = None, *,
           test: RuleTest | None = None, family: int = 1, power: bool = False) -> RuleOutcome:
    """Apply one rule to one metric comparison (see the module docstring); `p_holm` defaults to the raw p-value."""
    t = rule.threshold
    a1 = alpha_half(conf)
    out = RuleOutcome(metric=rule.metric, kind=rule.kind, threshold=t, confidence=conf, description=rule.description,
                      status="inconclusive", reason="", holm_family=family)
    if m is None or m.unavailable:
        out.status = "incomplete"
        out.reason = f"{rule.metric} has no value to judge: {m.unavailable if m else 'missing for this candidate'}."
        return out
    rt = test or rule_test(rule, m, conf)
    out.value, out.delta, out.ci_low, out.ci_high = m.candidate_value, m.delta, rt.lo, rt.hi
    out.method, out.n = m.interval_method, m.n_paired
    subject = f"value {fmt(m.candidate_value)}" if rt.side.which == "candidate" else f"delta {fmt(m.delta)}"
    if rt.p_good is None or rt.p_bad is None:
        out.reason = f"{subject} has no one-sided test ({rt.why}), so the rule cannot be established."
        return out
    out.p_pass, out.p_value = rt.p_good, rt.p_bad
    out.p_holm = rt.p_bad if p_holm is None else p_holm
    if power:
        out.detectable_80, out.detectable_95 = detectable(rule, m, conf, family)
    if rt.p_good < a1:
        out.status = "pass"
    elif out.p_holm < a1:
        out.status = "fail"
    out.reason = _reason(rule, m, rt, out, a1)
    return out


def _reason(rule: GateRule, m: MetricComparison, rt: RuleTest, out: RuleOutcome, a1: float) -> str:
    """One sentence on why the rule ended as it did."""
    t, lo, hi = fmt(rule.threshold), rt.lo, rt.hi
    one, cl = _pct(1 - a1), _pct(1 - 2 * a1)
    holm = f"Holm-adjusted p = {fmt(out.p_holm, 3)}"
    blocked = (out.status == "inconclusive" and out.p_value is not None and out.p_value < a1
               and f", but not after Holm's adjustment across {out.holm_family} rules ({holm})")
    if rt.side.which == "candidate":
        v = fmt(m.candidate_value)
        word = "at least" if rt.side.good > 0 else "at most"
        near, far = (lo, hi) if rt.side.good > 0 else (hi, lo)
        near_w, far_w = ("lower", "upper") if rt.side.good > 0 else ("upper", "lower")
        if out.status == "pass":
            return f"value {v} is {word} {t}: its one-sided {one} {near_w} bound is {fmt(near)}."
        if out.status == "fail":
            return f"value {v} misses the bound ({word} {t}): its one-sided {one} {far_w} bound is {fmt(far)} ({holm} < {fmt(a1, 3)})."
        if blocked:
            return f"value {v} misses the bound ({word} {t}) at {one} one-sided confidence{blocked}."
        return f"value {v} has a {cl} interval [{fmt(lo)}, {fmt(hi)}] that reaches past the bound {t}; more samples are needed."
    sign = m.sign
    if rule.kind == "max_regression":
        reg = -sign * (m.delta or 0.0)
        r_lo, r_hi = sorted((-sign * lo, -sign * hi)) if lo is not None and hi is not None else (None, None)
        if out.status == "pass":
            if r_hi is not None and r_hi <= 0:
                return f"at {one} one-sided confidence the candidate is no worse than the base (tolerance {t})."
            return f"at {one} one-sided confidence the candidate is at most {fmt(r_hi)} worse than the base, within the tolerance {t}."
        if out.status == "fail":
            return (f"the candidate is {fmt(reg)} worse than the base, at {one} one-sided confidence at least {fmt(r_lo)}: "
                    f"beyond the tolerance {t} ({holm} < {fmt(a1, 3)}).")
        if blocked:
            return f"the candidate is {fmt(reg)} worse than the base, beyond the tolerance {t} at {one} one-sided confidence{blocked}."
        zero = " (a tolerance of 0 passes only a candidate shown to be better)" if rule.threshold == 0 else ""
        return (f"the regression {fmt(reg)} has a {cl} interval [{fmt(r_lo)}, {fmt(r_hi)}] that reaches past the "
                f"tolerance {t}{zero}; more samples are needed.")
    gain = sign * (m.delta or 0.0)
    g_lo, g_hi = sorted((sign * lo, sign * hi)) if lo is not None and hi is not None else (None, None)
    if out.status == "pass":
        return f"at {one} one-sided confidence the candidate improves by at least {fmt(g_lo)} (required {t})."
    if out.status == "fail":
        return f"at {one} one-sided confidence the improvement is at most {fmt(g_hi)}, short of the required {t} ({holm} < {fmt(a1, 3)})."
    if blocked:
        return f"the improvement {fmt(gain)} falls short of the required {t} at {one} one-sided confidence{blocked}."
    return f"the improvement {fmt(gain)} has a {cl} interval [{fmt(g_lo)}, {fmt(g_hi)}] that straddles the required {t}."


def evaluate_candidate(policy: Policy, cand: CandidateComparison, *, power: bool = True) -> CandidateVerdict:
    """Every rule on one candidate, Holm-corrected across the fail tests of its rules."""
    metrics = [cand.metric(r.metric) for r in policy.rules]
    confs = [r.confidence or policy.confidence for r in policy.rules]
    tests = [rule_test(r, m, c) if m is not None and not m.unavailable else None
             for r, m, c in zip(policy.rules, metrics, confs, strict=True)]
    family = [i for i, rt in enumerate(tests) if rt is not None and rt.p_bad is not None]
    adjusted = dict(zip(family, stats.holm([tests[i].p_bad for i in family]), strict=True))  # type: ignore[union-attr,misc]
    outcomes = [decide(r, m, c, adjusted.get(i), test=tests[i], family=len(family), power=power)
                for i, (r, m, c) in enumerate(zip(policy.rules, metrics, confs, strict=True))]
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


def multiplicity_statement(policy: Policy, comparison: Comparison) -> str:
    """The multiplicity adjustment in one paragraph, for every report."""
    levels = sorted({alpha_half(r.confidence or policy.confidence) for r in policy.rules})
    level = " / ".join(fmt(a, 3) for a in levels)
    n_cand = len(comparison.candidates)
    across = ("" if n_cand <= 1 else
              f" No adjustment across the {n_cand} candidates: each verdict is a statement about one candidate, "
              "and the gate as a whole passes only if every candidate passes.")
    return (f"Each rule runs two one-sided tests at level {level}: it passes when its one-sided bound clears the "
            f"threshold, and fails when the test that it is violated rejects after Holm's step-down adjustment across "
            f"the {len(policy.rules)} rule(s) of the candidate. Passing needs every rule to pass (an intersection-union "
            f"test), which holds its level without adjustment.{across}")


def exit_code_for(status: Status, strict: bool) -> int:
    if status == "incomplete":
        return int(ExitCode.INCOMPLETE)
    if status == "fail" or (status == "inconclusive" and strict):
        return int(ExitCode.GATE_FAILED)
    return int(ExitCode.PASS)


def evaluate_policy(policy: Policy, comparison: Comparison, *, strict: bool = False, source: str = "policy",
                    power: bool = True) -> Verdict:
    """Check the policy against the comparison, decide every candidate, and record both in the comparison.

    `power=False` skips the detectable-regression figures (the calibration simulation's fast path).
    """
    check_policy(policy, comparison, source)
    verdicts = [evaluate_candidate(policy, c, power=power) for c in comparison.candidates]
    status: Status = max((v.status for v in verdicts), key=_RANK.__getitem__)
    verdict = Verdict(status=status, strict=strict, exit_code=exit_code_for(status, strict),
                      policy_name=policy.name, multiplicity=multiplicity_statement(policy, comparison), candidates=verdicts)
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
    # the report's intervals use the policy's confidence; rules with their own level are recomputed (exactly, or from the same resamples)
    settings = (settings or CompareSettings()).model_copy(update={"confidence": policy.confidence})
    comparison = compare_runs(base_run, cand_runs, settings, base_path=base, candidate_paths=list(candidates))
    verdict = evaluate_policy(policy, comparison, strict=strict, source=str(policy_path))
    verdict.policy_path, verdict.policy_sha256 = str(policy_path), digest
    comparison.verdict = verdict.model_dump(mode="json")
    return comparison, verdict

