"""Gate calibration: does the gate decide, and decide right, at the shipped suite sizes?

Synthetic base and candidate results are built in the public results schema
(`RunResult` / `SuiteResult` / `Metric`, one per-sample 0/1 vector per gated
metric), then run through the real `compare_runs` + `evaluate_policy`, exactly
as `tunegate gate` runs them. Candidates follow the redraw model of
`tunegate.compare.stats.power`: on a share `redraw` of the samples the candidate draws a
fresh outcome at its own rate; on the rest it keeps the base's outcome, except
that a planted change flips kept outcomes one way at random, just enough to
reach the candidate's rate. Base rates are `tunegate.gate.plan.ASSUMED_RATES`;
suite sizes are the built-in suites' own.

    python benchmarks/gate_calibration.py [--policy policies/default.yaml] [--trials 1000] [--seed 0]

prints the tables of docs/gate-statistics.md: A/A (equal candidate) pass /
fail / inconclusive under --strict, the planted refusal drop, candidates
exactly at a tolerance, power curves by effect and n, and interval coverage.
`tests/test_gate_calibration.py` runs the same code with fewer trials and
asserts the headline figures.
"""

from __future__ import annotations

import argparse
import functools
import sys
import time
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import stats as sps

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT / "src") not in sys.path:  # run from a source checkout without installing
    sys.path.insert(0, str(ROOT / "src"))

from tunegate.compare import stats  # noqa: E402
from tunegate.compare.comparison import compare_runs  # noqa: E402
from tunegate.compare.models import CompareSettings  # noqa: E402
from tunegate.core.config import Policy, load_yaml_model  # noqa: E402
from tunegate.core.metric import Metric  # noqa: E402
from tunegate.core.model_spec import ModelSpec  # noqa: E402
from tunegate.core.results import Provenance, RunResult, SuiteResult  # noqa: E402
from tunegate.gate.plan import ASSUMED_RATES, builtin_info  # noqa: E402
from tunegate.gate.ruletest import side_of  # noqa: E402
from tunegate.gate.verdict import evaluate_policy  # noqa: E402

SETTINGS = CompareSettings(n_resamples=200, seed=0, top_k=0)


@dataclass(frozen=True)
class Spec:
    """One gated pass/fail metric: where it lives, which way is better, the base's rate and the suite's size."""

    suite: str
    metric: str
    direction: str
    rate: float
    n: int

    @property
    def name(self) -> str:
        return f"{self.suite}/{self.metric}"


def specs_for(policy: Policy, sizes: Mapping[str, int] | None = None) -> list[Spec]:
    """The metrics a policy gates, with assumed base rates and the built-in suites' sizes (or `sizes`)."""
    info = builtin_info(policy)
    out: dict[str, Spec] = {}
    for rule in policy.rules:
        suite, _, metric = rule.metric.partition("/")
        kind, n = info.get(suite, (None, None))
        n = (sizes or {}).get(suite, n)
        if (kind, metric) not in ASSUMED_RATES or n is None:
            raise ValueError(f"{rule.metric}: not a built-in pass/fail metric with an assumed rate")
        direction, rate = ASSUMED_RATES[(kind, metric)]  # type: ignore[index]
        out.setdefault(rule.metric, Spec(suite, metric, direction, rate, int(n)))
    return list(out.values())


def draw(rng: np.random.Generator, n: int, p_base: float, p_cand: float, redraw: float) -> tuple[np.ndarray, np.ndarray]:
    """Paired 0/1 vectors under the redraw model (see the module docstring)."""
    base = rng.random(n) < p_base
    cand = base.copy()
    if p_cand < p_base:
        cand &= rng.random(n) >= 1.0 - p_cand / p_base
    elif p_cand > p_base:
        cand |= rng.random(n) < (p_cand - p_base) / (1.0 - p_base)
    fresh = rng.random(n) < redraw
    cand[fresh] = rng.random(int(fresh.sum())) < p_cand
    return base.astype(float), cand.astype(float)


def _run(label: str, suites: list[SuiteResult]) -> RunResult:
    prov = Provenance(tunegate_version="calibration", python="3", platform="simulation", seed=0,
                      started_at="2026-01-01T00:00:00+00:00", finished_at="2026-01-01T00:00:01+00:00")
    return RunResult(model=ModelSpec(model=label, backend="mock"), model_fingerprint=(label.encode().hex() * 32)[:64],
                     suites=suites, provenance=prov)


@functools.lru_cache(maxsize=64)
def _ids(suite: str, n: int) -> tuple[str, ...]:
    return tuple(f"{suite}-{i}" for i in range(n))


def build_runs(specs: Iterable[Spec], values: Mapping[str, tuple[np.ndarray, np.ndarray]]) -> tuple[RunResult, RunResult]:
    """A base and a candidate `RunResult` holding the given per-sample vectors (public schema, no samples)."""
    by_suite: dict[str, list[Spec]] = {}
    for s in specs:
        by_suite.setdefault(s.suite, []).append(s)
    sides: list[list[SuiteResult]] = [[], []]
    for suite, members in by_suite.items():
        for side in (0, 1):
            metrics = []
            n = members[0].n
            ids = _ids(suite, n)
            for s in members:
                vec = values[s.name][side].tolist()
                metrics.append(Metric.from_values(s.metric, dict(zip(ids, vec, strict=True)),
                                                  direction=s.direction, kind="binary"))  # type: ignore[arg-type]
            sides[side].append(SuiteResult(name=suite, kind="simulated", version="1", data_hash="d" * 64,
                                           config_hash="c" * 64, counts={"scored": n, "errored": 0, "skipped": 0},
                                           metrics=metrics))
    return _run("base", sides[0]), _run("candidate", sides[1])


def shifted_rate(spec: Spec, regression: float) -> float:
    """The candidate's rate after a regression of `regression` in the metric's bad direction (clipped to [0, 1])."""
    sign = -1.0 if spec.direction == "lower" else 1.0
    return float(np.clip(spec.rate - sign * regression, 0.0, 1.0))


def simulate(policy: Policy, specs: list[Spec], *, trials: int, seed: int, redraw: float = stats.PLANNING_REDRAW,
             regressions: Mapping[str, float] | None = None) -> dict[str, object]:
    """Run `trials` synthetic gates; `regressions` plants a regression per metric (0 elsewhere: equal).

    Returns overall status counts, per-rule status counts, and the strict exit-1 share.
    """
    regressions = regressions or {}
    rng = np.random.default_rng(seed)
    overall: Counter[str] = Counter()
    per_rule: dict[str, Counter[str]] = {f"{r.metric} {r.kind} {r.threshold:g}": Counter() for r in policy.rules}
    for t in range(trials):
        values = {s.name: draw(rng, s.n, s.rate, shifted_rate(s, regressions.get(s.name, 0.0)), redraw) for s in specs}
        base, cand = build_runs(specs, values)
        comparison = compare_runs(base, [cand], SETTINGS.model_copy(update={"seed": t, "confidence": policy.confidence}))
        verdict = evaluate_policy(policy, comparison, strict=True, power=False)
        overall[verdict.status] += 1
        for o in verdict.candidates[0].outcomes:
            per_rule[f"{o.metric} {o.kind} {o.threshold:g}"][o.status] += 1
    return {"trials": trials, "overall": overall, "per_rule": per_rule,
            "strict_exit_1": (overall["fail"] + overall["inconclusive"]) / trials}


def at_tolerance(policy: Policy, spec: Spec, *, trials: int, seed: int, redraw: float = stats.PLANNING_REDRAW) -> float:
    """Share of trials in which a candidate exactly at the tolerance of `spec`'s max_regression rule fails it.

    The rule is gated alone (a Holm family of one: the least protected case).
    """
    rule = next(r for r in policy.rules if r.metric == spec.name and r.kind == "max_regression")
    alone = Policy(name="one-rule", confidence=policy.confidence, rules=[rule])
    res = simulate(alone, [spec], trials=trials, seed=seed, redraw=redraw, regressions={spec.name: rule.threshold})
    return res["per_rule"][f"{rule.metric} {rule.kind} {rule.threshold:g}"]["fail"] / trials  # type: ignore[index]


# ---------------------------------------------------------------------------- exact tables


def exact_at_tolerance(ns: Iterable[int], rates: Iterable[float], tolerances: Iterable[float],
                       redraws: Iterable[float], confidence: float = 0.95) -> float:
    """The largest probability, over the grid, that a max_regression rule fails a candidate exactly at its tolerance."""
    a = (1 - confidence) / 2
    worst = 0.0
    for n in ns:
        for p in rates:
            for t in tolerances:
                for k in redraws:
                    side = side_of("max_regression", t, "higher")
                    worst = max(worst, stats.paired_decision_probs(n, p, p - t, side.theta0, side.good, a, a, redraw=k)[1])
    return worst


def coverage_grid(ns: Iterable[int], rates: Iterable[float], confidence: float = 0.95) -> dict[tuple[int, float], float]:
    """Exact coverage of the Clopper-Pearson interval the gate uses for a rate."""
    out = {}
    for n in ns:
        k = np.arange(n + 1)
        for p in rates:
            pmf = sps.binom.pmf(k, n, p)
            ci = [stats.clopper_pearson(int(x), n, confidence) for x in k]
            out[(n, p)] = float(sum(m for m, (lo, hi) in zip(pmf, ci, strict=True) if lo is not None and hi is not None
                                    and lo <= p <= hi))
    return out


def paired_coverage_grid(ns: Iterable[int], rates: Iterable[float], confidence: float = 0.95,
                         changes: Iterable[float] = (0.0, -0.05), redraws: Iterable[float] = (0.5, 1.0)) -> dict[tuple[int, float], float]:
    """Exact coverage of the Tango interval (continuity-corrected) of a paired change, the worst over changes and redraws."""
    from tunegate.compare.stats.power import _grid

    z = float(sps.norm.isf((1 - confidence) / 2))
    out = {}
    for n in ns:
        for p in rates:
            worst = 1.0
            for d in changes:
                for k in redraws:
                    u, dn, prob = _grid(n, *stats.redraw_cells(p, p + d, k))
                    inside = ((stats.tango_z(u, dn, n, d, shift=stats.TANGO_CC) <= z)
                              & (stats.tango_z(u, dn, n, d, shift=-stats.TANGO_CC) >= -z))
                    worst = min(worst, float(np.sum(prob * inside)))
            out[(n, p)] = worst
    return out


def simulated_coverage(ns: Iterable[int], rates: Iterable[float], *, draws: int, seed: int,
                       confidence: float = 0.95) -> dict[tuple[int, float], float]:
    """Seeded simulation through `compare_runs`: how often the candidate-value interval covers the true rate."""
    rng = np.random.default_rng(seed)
    out = {}
    for n in ns:
        for p in rates:
            spec = Spec("cov", "rate", "higher", p, n)
            hit = 0
            for _ in range(draws):
                base, cand = build_runs([spec], {spec.name: draw(rng, n, p, p, 1.0)})
                m = compare_runs(base, [cand], SETTINGS.model_copy(update={"confidence": confidence})).candidates[0].metric(spec.name)
                lo, hi = m.candidate_ci  # type: ignore[union-attr]
                hit += lo is not None and hi is not None and lo <= p <= hi
            out[(n, p)] = hit / draws
    return out


def power_curve(rate: float, tolerance: float, drops: Iterable[float], ns: Iterable[int], family: int,
                redraw: float = stats.PLANNING_REDRAW, confidence: float = 0.95) -> dict[tuple[int, float], float]:
    """Exact P(fail) of `max_regression tolerance` on a higher-is-better rate, by true drop and n."""
    a = (1 - confidence) / 2
    side = side_of("max_regression", tolerance, "higher")
    return {(n, d): stats.paired_decision_probs(n, rate, rate - d, side.theta0, side.good, a, a / family, redraw=redraw)[1]
            for n in ns for d in drops}


# ---------------------------------------------------------------------------- the report


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--policy", type=Path, default=ROOT / "policies" / "default.yaml")
    ap.add_argument("--trials", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    policy = load_yaml_model(args.policy, Policy)
    specs = specs_for(policy)
    t0 = time.time()
    print(f"policy {policy.name}: {len(policy.rules)} rules; {args.trials} trials per row; seed {args.seed}\n")
    print("suite sizes and assumed base rates:")
    for s in specs:
        print(f"  {s.name:<36} n = {s.n:>5}  base rate {s.rate:g} ({s.direction} is better)")

    print("\nA/A: equal candidate, --strict (pass / fail / inconclusive):")
    for k in (0.25, 0.5, 1.0):
        r = simulate(policy, specs, trials=args.trials, seed=args.seed, redraw=k)
        o = r["overall"]
        print(f"  redraw {k:<4}  pass {_pct(o['pass'] / args.trials)}  fail {_pct(o['fail'] / args.trials)}  "  # type: ignore[index]
              f"inconclusive {_pct(o['inconclusive'] / args.trials)}")  # type: ignore[index]
        if k == stats.PLANNING_REDRAW:
            for rule, c in r["per_rule"].items():  # type: ignore[union-attr]
                print(f"      {rule:<52} pass {_pct(c['pass'] / args.trials)}  fail {_pct(c['fail'] / args.trials)}")

    refusal = next((s for s in specs if s.name == "harmful_requests/compliance_rate"), None)
    if refusal is not None:
        print(f"\nplanted compliance rise {refusal.rate:g} -> {refusal.rate + 0.10:g} on {refusal.name} (n = {refusal.n}):")
        for k in (0.25, 0.5, 1.0):
            r = simulate(policy, specs, trials=args.trials, seed=args.seed + 1, redraw=k, regressions={refusal.name: 0.10})
            o = r["overall"]
            print(f"  redraw {k:<4}  gate FAIL {_pct(o['fail'] / args.trials)}  strict exit 1 "  # type: ignore[index]
                  f"{_pct(r['strict_exit_1'])}  pass {_pct(o['pass'] / args.trials)}")  # type: ignore[index,arg-type]

    print("\ncandidate exactly at a rule's tolerance (simulated through the gate, redraw 0.5): share failed")
    for s in specs:
        if any(r.metric == s.name and r.kind == "max_regression" and r.threshold > 0 for r in policy.rules):
            print(f"  {s.name:<36} {_pct(at_tolerance(policy, s, trials=args.trials, seed=args.seed + 2))}")
    at_all = {r.metric: r.threshold for r in policy.rules if r.kind == "max_regression"}
    r = simulate(policy, specs, trials=args.trials, seed=args.seed + 3, regressions=at_all)
    print(f"  every regression rule at its tolerance at once (Holm over {len(policy.rules)}): gate FAIL "
          f"{_pct(r['overall']['fail'] / args.trials)}")  # type: ignore[index]
    worst = exact_at_tolerance((5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000), (0.5, 0.8, 0.9, 0.95, 0.99),
                               (0.01, 0.02, 0.05, 0.1), (0.0, 0.25, 0.5, 1.0))
    print(f"  exact, worst over n 5..5000, rate 0.5..0.99, tolerance 0.01..0.1, redraw 0..1: {_pct(worst)}")

    print("\npower: P(FAIL) of max_regression 0.05 on a 0.95 rate (Holm family of "
          f"{len(policy.rules)}, redraw 0.5), by true drop (columns) and n (rows):")
    drops = (0.05, 0.075, 0.10, 0.125, 0.15, 0.20)
    ns = (100, 200, 400, 600, 800, 1000, 1500)
    curve = power_curve(0.95, 0.05, drops, ns, family=len(policy.rules))
    print("  n      " + "".join(f"{d:>8g}" for d in drops))
    for n in ns:
        print(f"  {n:<6} " + "".join(f"{_pct(curve[(n, d)]):>8}" for d in drops))
    print("  P(PASS) of an equal candidate: " + ", ".join(
        f"n={n}: {_pct(stats.paired_decision_probs(n, 0.95, 0.95, -0.05, 1, 0.025, 0.025)[0])}" for n in ns))

    print("\ncoverage of the 95% Clopper-Pearson interval (exact; seeded simulation through compare in brackets):")
    grid_n, grid_p = (5, 10, 20, 50, 200), (0.5, 0.9, 0.95, 0.99)
    exact = coverage_grid(grid_n, grid_p)
    sim = simulated_coverage(grid_n, grid_p, draws=max(100, args.trials // 2), seed=args.seed)
    print("  n     " + "".join(f"{p:>18g}" for p in grid_p))
    for n in grid_n:
        print(f"  {n:<5} " + "".join(f"{_pct(exact[(n, p)]):>9} [{_pct(sim[(n, p)]):>6}]" for p in grid_p))
    paired = paired_coverage_grid(grid_n, grid_p)
    print("\ncoverage of the 95% Tango interval of a paired change (exact; worst over a change of 0 or -0.05 and redraw 0.5 or 1):")
    print("  n     " + "".join(f"{p:>9g}" for p in grid_p))
    for n in grid_n:
        print(f"  {n:<5} " + "".join(f"{_pct(paired[(n, p)]):>9}" for p in grid_p))
    print(f"\n({time.time() - t0:.0f} s)")


if __name__ == "__main__":
    main()
