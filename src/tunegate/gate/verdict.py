"""Gate: evaluate a `Policy` over a `Comparison` and decide a `Verdict` per candidate.

Every rule is a pair of one-sided tests against its bound (`tunegate.gate.ruletest`):

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

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from tunegate.compare import stats
from tunegate.compare.models import CandidateComparison, Comparison, MetricComparison
from tunegate.core.config import GateRule, Policy, load_yaml_model
from tunegate.core.errors import ExitCode, UserError
from tunegate.core.format import fmt
from tunegate.core.format import pct as _pct
from tunegate.core.status import Status, worst
from tunegate.core.verdict import CandidateVerdict, RuleOutcome, Verdict
from tunegate.gate.ruletest import Side, alpha_half, detectable, side_of_rule


def check_metric_names(policy: Policy, known: Iterable[str], source: str = "policy") -> None:
    """Refuse a rule on a metric the runs do not have (exit 2). The gate command calls it on the runs' metric names
    before the comparison's bootstrap; `check_policy` calls it again on the comparison's."""
    names = sorted(set(known))
    for i, rule in enumerate(policy.rules):
        if rule.metric not in names:
            raise UserError(
                f"{source}: rules.{i}.metric: unknown metric {rule.metric!r}; valid names: {', '.join(names) or '(none)'}"
            )


def check_policy(policy: Policy, comparison: Comparison, source: str = "policy") -> None:
    """Refuse unknown metric names and impossible rules before deciding anything (exit 2)."""
    check_metric_names(policy, comparison.metric_names(), source)
    for i, rule in enumerate(policy.rules):
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
    budget: list[str] = []
    suites = dict.fromkeys(r.metric.split("/", 1)[0] for r in policy.rules)
    for name in suites:
        s = cand.suite(name)
        if s is None:
            continue
        for side in ("base", "candidate"):
            rate = s.error_rate(side)
            if rate > policy.max_error_rate:
                counts = s.counts_base if side == "base" else s.counts_candidate
                budget.append(
                    f"suite {name}: {counts.get('errored', 0)} of {counts.get('scored', 0) + counts.get('errored', 0)} samples errored "
                    f"in the {side} run ({_pct(rate)}), above the allowed {_pct(policy.max_error_rate)}"
                )
    incomplete = budget + [f"{o.metric}: {o.reason}" for o in outcomes if o.status == "incomplete"]
    status: Status = "incomplete" if incomplete else worst(o.status for o in outcomes)
    return CandidateVerdict(candidate=cand.model.label, status=status, outcomes=outcomes, incomplete=incomplete,
                            error_budget=budget)


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
                    power: bool = True, policy_path: str = "", policy_sha256: str = "") -> Verdict:
    """Check the policy against the comparison, decide every candidate, and record both in the comparison.

    `power=False` skips the detectable-regression figures (the calibration simulation's fast path);
    `policy_path`/`policy_sha256` name the policy file in the verdict (provenance).
    """
    check_policy(policy, comparison, source)
    verdicts = [evaluate_candidate(policy, c, power=power) for c in comparison.candidates]
    status = worst(v.status for v in verdicts)
    verdict = Verdict(status=status, strict=strict, exit_code=exit_code_for(status, strict),
                      policy_name=policy.name, policy_path=policy_path, policy_sha256=policy_sha256,
                      multiplicity=multiplicity_statement(policy, comparison), candidates=verdicts)
    comparison.policy = policy
    comparison.verdict = verdict
    return verdict


def load_policy(path: Path) -> tuple[Policy, str]:
    """Read and validate a policy file; returns it with the SHA-256 of its bytes (provenance)."""
    policy = load_yaml_model(Path(path), Policy)
    return policy, hashlib.sha256(Path(path).read_bytes()).hexdigest()
