"""Build `RunResult`s directly for compare/gate/report tests: known per-sample values, no model.

`suite_result` takes, per metric, a dict sample id -> value; samples listed in
`errored` end as errored (left out of every metric, counted). Outputs and
prompts can be set per sample, so the report tests can plant hostile text.
"""

from __future__ import annotations

from typing import Any

from tunegate.core.metric import Metric
from tunegate.core.model_spec import ModelSpec
from tunegate.core.request import GenerateRequest, Response
from tunegate.core.results import Provenance, RunResult, SampleResult, ScorerRecord, SuiteResult
from tunegate.core.sample import Sample
from tunegate.core.score import Score


def suite_result(
    name: str,
    metrics: dict[str, dict[str, float]],
    *,
    kinds: dict[str, tuple[str, str, str]] | None = None,
    outputs: dict[str, str] | None = None,
    prompts: dict[str, str] | None = None,
    errored: set[str] | frozenset[str] = frozenset(),
    content_warning: bool = False,
    version: str = "1",
    description: str = "A test suite.",
    weights: dict[str, dict[str, float]] | None = None,
    scorers: tuple[ScorerRecord, ...] | None = (),
) -> SuiteResult:
    """`kinds[metric] = (kind, direction, aggregation)`; default ("continuous", "higher", "mean").

    `scorers`: the suite's scorer records; default [] (a generation suite uses no scorer plugin), None for a
    suite as a schema 1 file loads it (scorers not recorded)."""
    kinds = kinds or {}
    outputs = outputs or {}
    prompts = prompts or {}
    ids = (list(dict.fromkeys(i for vals in metrics.values() for i in vals))
           + [e for e in errored if not any(e in v for v in metrics.values())])
    samples = []
    for i in ids:
        sample = Sample(id=i, input=prompts.get(i, f"prompt {i}"), target="t")
        req = GenerateRequest(prompt=sample.input)
        resp = Response(kind="generate", text=outputs.get(i, f"output {i}"), finish_reason="eos")
        if i in errored:
            samples.append(SampleResult(suite=name, sample=sample, status="errored", reason="backend failure: test",
                                        requests=[req], responses=[resp]))
        else:
            scores = [Score(name=m, value=vals[i]) for m, vals in metrics.items() if i in vals]
            samples.append(SampleResult(suite=name, sample=sample, status="scored", requests=[req], responses=[resp], scores=scores))
    mets = []
    for m, vals in metrics.items():
        kind, direction, agg = kinds.get(m, ("continuous", "higher", "mean"))
        kept = {i: v for i, v in vals.items() if i not in errored}
        w = {i: weights[m][i] for i in kept} if weights and m in weights else None
        mets.append(Metric.from_values(m, kept, kind=kind, direction=direction, aggregation=agg,  # type: ignore[arg-type]
                                       description=f"{m} of {name}", weights=w, errored=len(errored)))
    n_err = len(errored)
    return SuiteResult(
        name=name, kind="generation", version=version, description=description, source="test kind",
        content_warning=content_warning, data_hash="d" * 64, config_hash="c" * 64,
        counts={"scored": len(ids) - n_err, "errored": n_err, "skipped": 0}, metrics=mets, samples=samples,
        scorers=None if scorers is None else list(scorers),
    )


def run_result(label: str, suites: list[SuiteResult], *, fingerprint: str | None = None,
               finetune: dict[str, Any] | None = None, seed: int = 0) -> RunResult:
    identity: dict[str, Any] = {"backend": "mock", "model": label}
    if finetune is not None:
        identity["finetune"] = finetune
    prov = Provenance(tunegate_version="0.1.0", python="3.11", platform="test", libraries={"numpy": "2"},
                      seed=seed, config={"model": label}, config_hash="e" * 64, started_at="2026-01-01T00:00:00+00:00",
                      finished_at="2026-01-01T00:01:00+00:00", timings={"total_s": 1.5})
    run = RunResult(model=ModelSpec(model=label, backend="mock"), model_fingerprint=fingerprint or (label.encode().hex() * 8)[:64],
                    model_identity=identity, suites=suites, provenance=prov)
    run.complete = run.counts().get("errored", 0) == 0
    return run


def binary(pattern: str, prefix: str = "s") -> dict[str, float]:
    """'1101' -> {'s0': 1.0, 's1': 1.0, 's2': 0.0, 's3': 1.0}."""
    return {f"{prefix}{i}": float(ch) for i, ch in enumerate(pattern)}
