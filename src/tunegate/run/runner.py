"""The runner: one model over its suites, one batched backend call per request type.

It gathers the requests of every suite, deduplicates them, serves what it can
from the response cache, asks the backend for the rest in length-sorted chunks
(committing each chunk to the cache, so a killed run resumes), then hands the
responses back to each suite to score and aggregate. Every sample ends scored,
errored or skipped with a reason.

No value is invented: every backend answer and every cache hit goes through
`request.checked`, so a missing or non-finite value becomes an error response
(an invalid cache entry, such as the null an old cache stored for NaN, is a
miss and is recomputed; error responses are never cached). Truncation is
recorded per sample (`truncated`, `truncated_tokens`) and counted per suite; a
suite with the option `truncation: error` errors its truncated samples.

Under a data-parallel launch (`tunegate.run.distributed`) every rank gathers the
same requests, rank 0 decides from the cache what is still to compute, each
rank answers its shard, and rank 0 collects the answers from the cache folder,
scores and hands the one result to every rank. Single-process runs take the
same path with one rank.
"""

from __future__ import annotations

import sys
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

from tqdm.auto import tqdm

from tunegate.backends.base import Backend
from tunegate.core import energy, provenance
from tunegate.core.cache import ResponseCache, cache_key
from tunegate.core.errors import IncompleteError
from tunegate.core.request import LoglikelihoodRequest, Request, Response, checked
from tunegate.core.results import RunResult, SampleResult, SuiteResult
from tunegate.core.sample import Sample
from tunegate.run import distributed
from tunegate.suites.base import RunContext, SkipSample, SuiteKind


@dataclass
class RunOptions:
    seed: int = 0
    chunk_size: int = 1024  # requests per backend call; each chunk is committed, so a killed run loses at most one
    progress: bool = True
    config: dict[str, Any] = field(default_factory=dict)


@dataclass
class _Pending:
    suite: SuiteKind
    sample: Sample
    requests: list[Request]
    keys: list[str]
    skip_reason: str | None = None


def _truncated_tokens(responses: list[Response]) -> int:
    """The most input tokens any of a sample's responses lost to the model's window (0: nothing was cut)."""
    return max((r.truncated_tokens for r in responses), default=0)


def _order(req: Request) -> tuple[int, str]:
    """Longest first; log-likelihood requests that share a context sit together (the backend scores a context once)."""
    if isinstance(req, LoglikelihoodRequest):
        return -len(req.context), req.context
    return -len(req.prompt), ""


def _chunks(items: list[tuple[str, Request]], size: int) -> list[list[tuple[str, Request]]]:
    """Chunks of `size` to `2 * size` requests that split a run of requests sharing a context only when it is that long.

    Splitting a question's choices would make the backend run their context
    again; a run longer than a chunk (the empty context of every perplexity or
    CrowS-Pairs request) is split anyway, so a chunk stays bounded.
    """
    def context(r: Request) -> str | None:
        return r.context if isinstance(r, LoglikelihoodRequest) else None

    chunks: list[list[tuple[str, Request]]] = []
    current: list[tuple[str, Request]] = []
    for item in items:
        same = context(item[1]) is not None and context(item[1]) == context(current[-1][1]) if current else False
        if len(current) >= 2 * size or (len(current) >= size and not same):
            chunks.append(current)
            current = []
        current.append(item)
    if current:
        chunks.append(current)
    return chunks


class Runner:
    def __init__(self, backend: Backend, suites: list[SuiteKind], cache: ResponseCache, options: RunOptions | None = None) -> None:
        self.backend = backend
        self.suites = suites
        self.cache = cache
        self.options = options or RunOptions()

    # ---- phase 1: ask ------------------------------------------------------
    def _gather(self, fingerprint: str, settings: dict[str, Any]) -> list[_Pending]:
        pending = []
        for suite in self.suites:
            for sample in suite.samples():
                try:
                    reqs = suite.requests(sample)
                except SkipSample as why:
                    pending.append(_Pending(suite, sample, [], [], skip_reason=str(why)))
                    continue
                unsupported = sorted({r.kind for r in reqs} - set(self.backend.supports))
                if unsupported:
                    reason = f"the {self.backend.name} backend cannot answer {', '.join(unsupported)} requests for this model"
                    reasons = [w for k in unsupported if (w := self.backend.unsupported_reasons.get(k))]
                    reason += f": {'; '.join(reasons)}" if reasons else ""
                    pending.append(_Pending(suite, sample, reqs, [], skip_reason=reason))
                    continue
                keys = [cache_key(fingerprint, settings, r) for r in reqs]
                pending.append(_Pending(suite, sample, reqs, keys))
        return pending

    def _compute(self, todo: dict[str, Request], answers: dict[str, Response]) -> None:
        """Ask the backend for every uncached request, per type, in length-sorted chunks."""
        by_type: dict[str, list[tuple[str, Request]]] = defaultdict(list)
        for k, r in todo.items():
            by_type[r.kind].append((k, r))
        total = sum(len(v) for v in by_type.values())
        show = self.options.progress and total > 0 and sys.stderr.isatty() and distributed.current().is_main
        with tqdm(total=total, desc=f"{self.backend.spec.display_name}", unit="req", disable=not show) as bar:
            for kind, items in by_type.items():
                items.sort(key=lambda kr: _order(kr[1]))
                call = self.backend.loglikelihood if kind == "loglikelihood" else self.backend.generate
                for chunk in _chunks(items, self.options.chunk_size):
                    resps = self._call(call, kind, [r for _, r in chunk])
                    pairs = list(zip((k for k, _ in chunk), resps, strict=True))
                    self.cache.put_many(pairs)
                    answers.update(pairs)
                    bar.update(len(chunk))

    def _call(self, call: Any, kind: str, reqs: list[Any]) -> list[Response]:
        """One backend call; when a chunk fails, retry its requests one by one so only the culprits error."""
        try:
            resps = call(reqs)
            if len(resps) != len(reqs):
                raise RuntimeError(f"backend returned {len(resps)} responses for {len(reqs)} requests")
            return [checked(r) for r in resps]
        except (KeyboardInterrupt, MemoryError):
            raise
        except Exception as exc:  # noqa: BLE001 - infrastructure failure: those samples error, the run goes on
            if len(reqs) > 1:
                return [r for req in reqs for r in self._call(call, kind, [req])]
            msg = f"backend failure: {type(exc).__name__}: {str(exc)[:300]}"
            return [Response(kind=kind, error=msg, finish_reason="error")]  # type: ignore[arg-type]

    # ---- phase 2: score ----------------------------------------------------
    def _score_suite(self, suite: SuiteKind, items: list[_Pending], answers: dict[str, Response]) -> list[SampleResult]:
        name = suite.config.name
        results: dict[str, SampleResult] = {}
        to_score: list[tuple[_Pending, list[Response]]] = []
        truncation_errors = getattr(suite, "truncation", "truncate") == "error"
        for p in items:
            if p.skip_reason is not None:
                results[p.sample.id] = SampleResult(suite=name, sample=p.sample, status="skipped", reason=p.skip_reason,
                                                    requests=p.requests)
                continue
            resps = [answers[k] for k in p.keys]
            failed = next((r.error for r in resps if r.error), None)
            dropped = _truncated_tokens(resps)
            if failed is None and dropped and truncation_errors:
                failed = (f"input truncated to fit the model's window ({dropped} token(s) dropped) and the suite "
                          "sets `truncation: error`")
            if failed:
                results[p.sample.id] = SampleResult(suite=name, sample=p.sample, status="errored", reason=failed,
                                                    requests=p.requests, responses=resps)
            else:
                to_score.append((p, resps))
        if to_score:
            try:
                all_scores = suite.score_batch([p.sample for p, _ in to_score], [r for _, r in to_score])
                if len(all_scores) != len(to_score):
                    raise RuntimeError(f"the suite returned scores for {len(all_scores)} of {len(to_score)} samples")
            except (KeyboardInterrupt, MemoryError):
                raise
            except Exception as exc:  # noqa: BLE001 - a crashing scorer fails closed
                reason = f"scorer failure: {type(exc).__name__}: {str(exc)[:300]}"
                for p, resps in to_score:
                    results[p.sample.id] = SampleResult(suite=name, sample=p.sample, status="errored", reason=reason,
                                                        requests=p.requests, responses=resps)
                to_score, all_scores = [], []
            for (p, resps), scores in zip(to_score, all_scores, strict=True):
                bad = next((s for s in scores if not s.ok), None)
                why: str | None = None
                if bad is not None:
                    why = f"score {bad.name!r}: {bad.error or f'no finite value ({bad.value})'}"
                results[p.sample.id] = SampleResult(
                    suite=name, sample=p.sample, status="errored" if bad is not None else "scored", reason=why,
                    requests=p.requests, responses=resps, scores=scores,
                )
        out = [results[p.sample.id] for p in items]
        for r in out:
            r.truncated_tokens = _truncated_tokens(r.responses)
            r.truncated = r.truncated_tokens > 0
        return out

    # ---- the whole run -----------------------------------------------------
    def run(self) -> RunResult:
        t0 = time.perf_counter()
        fingerprint = self.backend.fingerprint()
        settings = self.backend.cache_settings()
        device = str(settings.get("device", "cpu"))
        prov = provenance.collect(self.options.config, self.options.seed, device)
        if "dtype" in settings:  # the resolved dtype (auto -> bfloat16/float32), which the cache key also holds
            prov = prov.model_copy(update={"dtype": settings["dtype"]})  # an extra field of Provenance
        meter, energy_method = energy.meter_for(device)  # NVML on a GPU, RAPL on a CPU, else "unavailable" with why
        context = RunContext(seed=self.options.seed, device=device, supports=self.backend.supports)
        for suite in self.suites:
            suite.setup(context)
        ranks = distributed.current()
        pending = self._gather(fingerprint, settings)
        # a skipped sample keeps its requests but has no keys (nothing to ask)
        needed = {k: r for p in pending for k, r in zip(p.keys, p.requests, strict=False)}
        answers: dict[str, Response] = {}
        if ranks.is_main:
            if ranks.parallel:
                self.cache.absorb_spools()  # answers that ranks of an interrupted run left behind
            # a cached entry that is not a usable value (e.g. the null an old cache stored for NaN) is a miss
            answers = {k: r for k, r in self.cache.get_many(needed).items() if checked(r).ok}
        hits = len(answers)
        todo_keys = ranks.broadcast([k for k in needed if k not in answers], "agreeing on the requests to compute")
        unknown = distributed.missing_keys(todo_keys, needed)
        if unknown:
            raise IncompleteError(f"data-parallel rank {ranks.rank}: {len(unknown)} of rank 0's requests are not among "
                                  "this rank's; every rank must run the same suites with the same model settings")
        todo = {k: needed[k] for k in todo_keys}
        t1 = time.perf_counter()
        self._compute(distributed.shard(todo, ranks.rank, ranks.world_size, _order), answers)
        if ranks.parallel:
            if not ranks.is_main:
                self.cache.close()  # the spool: committed, and its lock released for rank 0
            ranks.barrier("waiting for every rank to answer its share")
            if ranks.is_main:
                self._collect(todo, answers)
        t2 = time.perf_counter()
        if not ranks.is_main:
            return RunResult.model_validate_json(ranks.broadcast("", "waiting for rank 0's results"))

        by_suite: dict[str, list[_Pending]] = defaultdict(list)
        for p in pending:
            by_suite[p.suite.config.name].append(p)
        suite_results = []
        for suite in self.suites:
            sample_results = self._score_suite(suite, by_suite[suite.config.name], answers)
            counts = Counter(r.status for r in sample_results)
            suite_results.append(
                SuiteResult(
                    name=suite.config.name, kind=suite.config.kind, version=suite.config.version,
                    description=suite.config.description or type(suite).description,
                    source=type(suite).description, content_warning=suite.config.content_warning,
                    data_hash=suite.data_hash, config_hash=suite.config_hash(),
                    data_source=suite.data_source or None,
                    counts={s: counts.get(s, 0) for s in ("scored", "errored", "skipped")},
                    truncated=sum(1 for r in sample_results if r.truncated),
                    metrics=suite.metrics(sample_results), samples=sample_results,
                    scorers=suite.scorers_used(),  # from the configuration: a cached or resumed run records the same
                )
            )
        t3 = time.perf_counter()
        prov.finished_at = provenance.now_iso()
        if ranks.parallel:  # the data-parallel ranks that shared the compute (an extra field of Provenance)
            prov = prov.model_copy(update={"processes": ranks.world_size})
        prov.timings = {"prepare_s": round(t1 - t0, 3), "compute_s": round(t2 - t1, 3), "score_s": round(t3 - t2, 3),
                        "total_s": round(t3 - t0, 3)}
        scope = (f"rank 0's device only, of {ranks.world_size} data-parallel processes" if ranks.parallel
                 else f"this run's device ({device})")
        prov = prov.model_copy(update={  # extra fields of Provenance: energy (measured or why not) and device-hours
            "energy": energy.run_energy(meter.stop(), energy_method, scope=scope),
            "device_hours": round((t3 - t0) * (ranks.world_size if ranks.parallel else 1) / 3600, 6),
            "device_hours_definition": "wall time of the run x processes (one device each)"})
        result = RunResult(
            model=self.backend.spec, model_fingerprint=fingerprint, model_identity=self.backend.identity(),
            suites=suite_results, cache={"hits": hits, "computed": len(todo)}, provenance=prov,
        )
        result.complete = result.counts().get("errored", 0) == 0
        if ranks.parallel:
            ranks.broadcast(result.model_dump_json(), "handing out the results")
        return result

    def _collect(self, todo: dict[str, Request], answers: dict[str, Response]) -> None:
        """Rank 0, after the barrier: the other ranks' answers from the cache folder; anything missing is computed here.

        Failed requests are never cached, so they are missing by design (asked
        again here, as a single process would have them answered). Answers
        missing for any other reason mean the spools are not visible from
        here (a cache folder not shared between machines): the result is
        still complete and right, only slower, and the user is told.
        """
        self.cache.absorb_spools()
        rest = [k for k in todo if k not in answers]
        got = {k: r.model_copy(update={"cached": False}) for k, r in self.cache.get_many(rest).items() if checked(r).ok}
        answers.update(got)
        missing = {k: todo[k] for k in rest if k not in got}
        if missing:
            print(f"warning: {len(missing)} answer(s) of other ranks were not in the cache folder (failed requests are "
                  "never cached; or the folder is not shared between machines): computing them on rank 0",
                  file=sys.stderr)
            self._compute(missing, answers)
