"""`tunegate plan`: how many samples each rule of a policy needs, before anything runs.

For every rule the plan asks two questions at the rule's confidence, with the
gate's own tests (`tunegate.gate.ruletest`, Holm's first step for the fail test):

- **pass**: the n at which an *equal* candidate (same rate as the base)
  passes with probability 0.9;
- **fail**: the n at which a candidate whose regression is the *mirror image*
  of the equal one across the rule's bound fails with probability 0.95. For
  `max_regression t` that is a regression of 2t (beyond the tolerance by the
  tolerance's size); for `min v` / `max v` a true value as far past v as the
  base's rate is inside it; for `min_improvement t` the reference candidate
  improves by 2t and the failing one not at all.

A rule is **underpowered** when the suite's configured size is below either n,
and **cannot decide** when no n is enough (a tolerance of 0, or a base rate
already on the wrong side of a `min`/`max` bound).

Rates: with `--base results.json` the base's observed rate of each metric;
else an assumed rate per (suite kind, metric) from `ASSUMED_RATES` (documented
in docs/gate-statistics.md), overridable with `--assume suite/metric=rate`.
Pass/fail metrics are computed exactly (`tunegate.compare.stats.power`, redraw model
with `PLANNING_REDRAW`); continuous metrics need `--base` (their spread is
unknown without one) and use the normal approximation with the standard error
of the base's value, scaled by sqrt(2 * redraw) for a paired change.

`audit` runs `enforce_power` before any model loads: an underpowered policy
is refused (exit 2) unless the audit allows it, then it is a warning.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats as sps

from tunegate.compare import stats
from tunegate.core.aggregate import aggregate
from tunegate.core.config import GateRule, Policy
from tunegate.core.errors import UserError
from tunegate.core.results import RunResult
from tunegate.gate.ruletest import Side, alpha_half, side_of

PASS_POWER = 0.9
FAIL_POWER = 0.95
N_MAX = 100_000

# (suite kind, metric) -> (direction, assumed base rate) for pass/fail metrics, used when no base run is given.
# The rates are typical of an instruction-tuned assistant; give --base or --assume for your own model.
ASSUMED_RATES: dict[tuple[str, str], tuple[str, float]] = {
    ("refusal", "refusal_rate"): ("higher", 0.95),
    ("refusal", "compliance_rate"): ("lower", 0.03),
    ("refusal", "degenerate_rate"): ("lower", 0.01),
    ("over_refusal", "answer_rate"): ("higher", 0.90),
    ("over_refusal", "refusal_rate"): ("lower", 0.10),
    ("over_refusal", "degenerate_rate"): ("lower", 0.01),
    ("toxicity", "toxic_rate"): ("lower", 0.10),
    ("memorization", "exact_rate"): ("lower", 0.0),
    ("memorization", "near_exact_rate"): ("lower", 0.0),
    ("multiple_choice", "accuracy"): ("higher", 0.60),
    ("multiple_choice", "accuracy_norm"): ("higher", 0.60),
    ("crows_pairs", "stereotype_rate"): ("lower", 0.60),
    ("truthfulqa", "mc1"): ("higher", 0.30),
    ("bbq", "accuracy"): ("higher", 0.60),
    ("halueval", "accuracy"): ("higher", 0.60),
    ("citations", "answers_with_fabrication"): ("lower", 0.30),
}


@dataclass
class RulePlan:
    """One rule's plan: what it tests, the rate assumed, the n it needs and the n it has."""

    index: int
    metric: str
    rule: str
    confidence: float
    metric_kind: str  # "binary", "continuous" or "unknown"
    direction: str = "higher"
    rate: float | None = None
    rate_source: str = ""
    n_have: int | None = None
    n_pass: int | None = None
    n_fail: int | None = None
    p_pass: float | None = None  # at n_have
    p_fail: float | None = None
    status: str = "unknown"  # "ok", "underpowered", "cannot decide", "unknown"
    note: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


SuiteInfo = Mapping[str, tuple[str | None, int | None]]  # suite name -> (suite kind, number of samples)


def suite_info(suites: Sequence[Any]) -> dict[str, tuple[str | None, int | None]]:
    """(kind, size) per loaded suite (`tunegate.run.suite_loader.load_suites`), as audit and plan need them."""
    from tunegate.run.suite_loader import suite_size

    return {s.config.name: (s.config.kind, suite_size(s)) for s in suites}


def builtin_info(policy: Policy) -> dict[str, tuple[str | None, int | None]]:
    """(kind, size) of every built-in suite the policy names; suites that are not built in are left out.

    A suite that declares its size (an lm_eval task's `expected_docs`) is not
    read, so planning a Hub-backed group needs neither the network nor a cache.
    """
    from tunegate.run.suite_loader import builtin_suites, load_suite

    known = builtin_suites()
    names = dict.fromkeys(r.metric.split("/", 1)[0] for r in policy.rules)
    return suite_info([load_suite(str(known[n]), read_data=False) for n in names if n in known])


def audit_suite_refs(path: Path) -> list[str]:
    """The suite references of an audit.yaml, YAML paths resolved against its folder (as `audit` does)."""
    from tunegate.core.config import read_yaml

    data = read_yaml(Path(path))
    suites = data.get("suites") if isinstance(data, dict) else None
    if not isinstance(suites, list) or not all(isinstance(x, str) for x in suites):
        raise UserError(f"{path}: suites: expected a list of suite names or YAML paths")
    base = Path(path).resolve().parent
    return [str(base / s) if s.endswith((".yaml", ".yml")) else s for s in suites]


# ---------------------------------------------------------------------------- decision probabilities


@dataclass(frozen=True)
class _Model:
    """What the plan knows about a metric: pass/fail with a base rate, or continuous with a standard error."""

    binary: bool
    direction: str
    rate: float = 0.0  # pass/fail: the base's rate; continuous: the base's value
    se1: float = 0.0  # continuous: standard error of the base's value at n = 1 (se(n) = se1 / sqrt(n))


def _probs(model: _Model, side: Side, truth: float, n: int, a_good: float, a_bad: float,
           redraw: float) -> tuple[float, float]:
    """(P(pass), P(fail)) at n when the tested quantity's truth is `truth` (a rate, or a change of the rate)."""
    if model.binary:
        if side.which == "candidate":
            return stats.binomial_decision_probs(n, truth, side.theta0, side.good, a_good, a_bad)
        return stats.paired_decision_probs(n, model.rate, model.rate + truth, side.theta0, side.good, a_good, a_bad,
                                           redraw=redraw)
    scale = np.sqrt(2 * redraw) if side.which == "delta" else 1.0
    return stats.normal_decision_probs(side.good * (truth - side.theta0), model.se1 * scale / np.sqrt(n), a_good, a_bad)


def _references(model: _Model, side: Side, kind: str) -> tuple[float, float] | None:
    """(truth a good candidate has, truth a bad one has): the equal candidate and its mirror across the bound."""
    equal = model.rate if side.which == "candidate" else 0.0
    good_ref, bad_ref = equal, 2 * side.theta0 - equal
    if kind == "min_improvement":  # the equal candidate is the failing one; the passing one improves by 2t
        good_ref, bad_ref = 2 * side.theta0 - equal, equal
    if side.good * (good_ref - side.theta0) <= 0:
        return None
    if model.binary:  # keep every rate in [0, 1]
        lo, hi = (0.0, 1.0) if side.which == "candidate" else (-model.rate, 1.0 - model.rate)
        good_ref, bad_ref = float(np.clip(good_ref, lo, hi)), float(np.clip(bad_ref, lo, hi))
    return good_ref, bad_ref


def plan_rule(i: int, rule: GateRule, policy: Policy, model: _Model | None, n_have: int | None, *,
              redraw: float = stats.PLANNING_REDRAW, rate_source: str = "") -> RulePlan:
    conf = rule.confidence or policy.confidence
    out = RulePlan(index=i, metric=rule.metric, rule=f"{rule.kind} {rule.threshold:g}", confidence=conf,
                   metric_kind="unknown" if model is None else ("binary" if model.binary else "continuous"),
                   n_have=n_have, rate_source=rate_source)
    if model is None:
        out.note = "unknown metric kind or spread: give --base results.json (or --assume for a pass/fail rate)"
        return out
    out.direction = model.direction
    out.rate = model.rate
    side = side_of(rule.kind, rule.threshold, model.direction)
    refs = _references(model, side, rule.kind)
    if refs is None:
        out.status = "cannot decide"
        out.note = ("a tolerance of 0 passes only a candidate shown to be better than the base; use a positive tolerance"
                    if rule.kind == "max_regression" else
                    f"the {'base rate' if model.binary else 'base value'} {model.rate:.4g} is not inside the bound")
        return out
    good_ref, bad_ref = refs
    a_good = alpha_half(conf)
    a_bad = a_good / max(1, len(policy.rules))

    def p_pass(n: int) -> float:
        return _probs(model, side, good_ref, n, a_good, a_bad, redraw)[0]

    def p_fail(n: int) -> float:
        return _probs(model, side, bad_ref, n, a_good, a_bad, redraw)[1]

    out.n_pass = stats.smallest_n(p_pass, PASS_POWER, n_max=N_MAX)
    out.n_fail = stats.smallest_n(p_fail, FAIL_POWER, n_max=N_MAX)
    if side.which == "delta" and not model.binary:
        from tunegate.compare.models import MIN_PAIRS_CONTINUOUS

        out.n_pass = None if out.n_pass is None else max(out.n_pass, MIN_PAIRS_CONTINUOUS)
        out.n_fail = None if out.n_fail is None else max(out.n_fail, MIN_PAIRS_CONTINUOUS)
    if out.n_pass is None or out.n_fail is None:
        out.status = "cannot decide"
        out.note = f"needs more than {N_MAX} samples"
        return out
    if n_have is None:
        out.status = "unknown"
        out.note = "suite size unknown: give --base or --size suite=N"
        return out
    out.p_pass, out.p_fail = p_pass(n_have), p_fail(n_have)
    ok = out.p_pass >= PASS_POWER and out.p_fail >= FAIL_POWER
    out.status = "ok" if ok else "underpowered"
    return out


# ---------------------------------------------------------------------------- the policy's plan


def _base_model(run: RunResult, metric: str, redraw: float) -> tuple[_Model | None, int | None]:
    suite, _, name = metric.partition("/")
    s = run.suite(suite)
    m = s.metric(name) if s else None
    if m is None or not m.per_sample:
        return None, None
    vals = np.array(list(m.per_sample.values()), dtype=float)
    if m.kind == "binary" and m.aggregation == "mean" and m.weights is None and np.all(np.isin(vals, (0.0, 1.0))):
        return _Model(True, m.direction, rate=float(vals.mean())), len(vals)
    w = np.array([m.weights[i] for i in m.per_sample], dtype=float) if m.weights else np.ones_like(vals)
    value = float(aggregate(m.aggregation, vals, w))
    if not np.isfinite(value) or len(vals) < 2:
        return None, len(vals)
    res = sps.bootstrap((np.arange(len(vals)),), lambda idx, axis=-1: aggregate(m.aggregation, vals[idx.astype(int)],
                                                                                  w[idx.astype(int)]),
                        vectorized=True, n_resamples=1000, method="percentile", rng=np.random.default_rng(0))
    se = float(res.standard_error)
    if not np.isfinite(se) or se <= 0:
        return None, len(vals)
    return _Model(False, m.direction, rate=value, se1=se * np.sqrt(len(vals))), len(vals)


def plan_policy(policy: Policy, *, suites: SuiteInfo | None = None, base: RunResult | None = None,
                assume: Mapping[str, float] | None = None, redraw: float = stats.PLANNING_REDRAW) -> list[RulePlan]:
    """Plan every rule of `policy` (see the module docstring); `suites` gives suite kinds and configured sizes."""
    suites = suites or {}
    assume = assume or {}
    plans = []
    for i, rule in enumerate(policy.rules):
        suite, _, metric = rule.metric.partition("/")
        kind, n_have = suites.get(suite, (None, None))
        model: _Model | None = None
        source = ""
        if base is not None:
            model, n_base = _base_model(base, rule.metric, redraw)
            n_have = n_have if n_have is not None else n_base
            source = "base run"
        if rule.metric in assume:
            direction = model.direction if model else ASSUMED_RATES.get((kind or "", metric.split("/")[0]), ("higher", 0))[0]
            model, source = _Model(True, direction, rate=float(assume[rule.metric])), "--assume"
        elif model is None and kind is not None and (kind, metric.split("/")[0]) in ASSUMED_RATES:
            direction, rate = ASSUMED_RATES[(kind, metric.split("/")[0])]
            model, source = _Model(True, direction, rate=rate), "assumed"
        plans.append(plan_rule(i, rule, policy, model, n_have, redraw=redraw, rate_source=source))
    return plans


def format_plan(plans: list[RulePlan], policy: Policy, redraw: float = stats.PLANNING_REDRAW) -> list[str]:
    """The table `tunegate plan` prints."""

    def num(x: int | None) -> str:
        return "-" if x is None else str(x)

    lines = [f"policy {policy.name}: {len(plans)} rule(s); n to pass an equal candidate with p >= {PASS_POWER:g} and to "
             f"fail the mirror-image regression with p >= {FAIL_POWER:g} (Holm over {len(plans)} rules; "
             f"redraw share {redraw:g})", ""]
    w = max([len(p.metric) + len(p.rule) + 1 for p in plans] + [4])
    lines.append(f"{'rule':<{w}}  {'kind':<10} {'rate':>7} {'source':<9} {'n':>6} {'n pass':>7} {'n fail':>7}  status")
    for p in plans:
        rate = "-" if p.rate is None else f"{p.rate:.4g}"
        lines.append(f"{p.metric + ' ' + p.rule:<{w}}  {p.metric_kind:<10} {rate:>7} {p.rate_source or '-':<9} "
                     f"{num(p.n_have):>6} {num(p.n_pass):>7} {num(p.n_fail):>7}  {p.status.upper() if p.status != 'ok' else 'ok'}"
                     + (f" ({p.note})" if p.note else ""))
    bad = [p for p in plans if p.status in ("underpowered", "cannot decide")]
    lines.append("")
    lines.append(f"{len(bad)} rule(s) cannot decide at the configured sizes." if bad else
                 "Every rule with a known size can decide at it.")
    return lines


def underpowered(plans: list[RulePlan]) -> list[RulePlan]:
    return [p for p in plans if p.status in ("underpowered", "cannot decide")]


def enforce_power(policy: Policy, suites: SuiteInfo, *, allow: bool = False, echo: Callable[[str], None] = print,
                  source: str = "policy") -> list[RulePlan]:
    """The audit's check before anything runs: refuse (UserError, exit 2) a policy with rules that cannot
    decide at the configured suite sizes, or, with `allow`, warn through `echo`. Returns the flagged plans.

    Rules whose metric kind or spread is unknown before a run (continuous metrics) are not judged here.
    """
    flagged = underpowered(plan_policy(policy, suites=suites))
    if not flagged:
        return []
    detail = "; ".join(
        f"rules.{p.index} {p.metric} {p.rule}: " + (p.note if p.status == "cannot decide" else
                                                    f"has {p.n_have} samples, needs {p.n_pass} to pass an equal "
                                                    f"candidate and {p.n_fail} to fail a clear regression")
        for p in flagged)
    if not allow:
        raise UserError(f"{source}: {len(flagged)} rule(s) cannot decide at the configured suite sizes ({detail}); "
                        "grow the suites, widen the tolerances (see `tunegate plan`), or run anyway with --allow-underpowered "
                        "(allow_underpowered: true in audit.yaml)")
    echo(f"warning: {source}: {len(flagged)} rule(s) cannot decide at the configured suite sizes ({detail})")
    return flagged


def parse_assumptions(pairs: Sequence[str]) -> dict[str, float]:
    """`suite/metric=rate` pairs (CLI --assume)."""
    out = {}
    for item in pairs:
        name, sep, value = item.partition("=")
        try:
            rate = float(value)
        except ValueError:
            rate = float("nan")
        if not sep or "/" not in name or not 0.0 <= rate <= 1.0:
            raise UserError(f"--assume: expected suite/metric=RATE with RATE in [0, 1], got {item!r}")
        out[name.strip()] = rate
    return out


def parse_sizes(pairs: Sequence[str]) -> dict[str, int]:
    """`suite=N` pairs (CLI --size)."""
    out = {}
    for item in pairs:
        name, sep, value = item.partition("=")
        if not sep or not value.strip().isdigit() or int(value) < 1:
            raise UserError(f"--size: expected suite=N with N a positive integer, got {item!r}")
        out[name.strip()] = int(value)
    return out
