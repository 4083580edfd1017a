"""`lm_eval`: an lm-evaluation-harness task, asked through tunegate's backends and cache.

Why a bridge and not a re-implementation: a published task (its documents,
few-shot sampling, prompt templates, filters and metric functions) is only
comparable to published numbers when it is lm-eval's own code that builds and
scores it. So lm-eval is used as a library for exactly those parts: the task
builds its documents and `Instance`s (`build_all_requests`), tunegate turns
each instance into a `Request` (log-likelihood, rolling log-likelihood,
generate-until), the runner answers them batched together with every other
suite's requests and caches them, and the answers go back into the instances
for the task's own filters and `process_results`. Per-document values become
per-sample scores, so `compare` and `gate` work on them as on any other suite.

An lm-eval *group* (e.g. `mmlu`, 57 subject tasks) is one suite: its documents
are pooled (sample ids `TASK/DOC_ID`, `limit` applies per task as in lm-eval),
a mean metric is the mean over all pooled documents (lm-eval's size-weighted
group score), and any other aggregation is computed per task
(`TASK/metric`), since a corpus score of pooled tasks means nothing.

lm-eval is an optional dependency (`pip install 'tunegate[lm_eval]'`),
imported only when such a suite loads; constructing the kind (option
validation) never imports it.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections import defaultdict
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from tunegate.core.config import SuiteConfig
from tunegate.core.data import resolve_data_path, rows_digest
from tunegate.core.errors import MissingDependencyError, UserError
from tunegate.core.metric import Metric
from tunegate.core.request import GenerateRequest, LoglikelihoodRequest, Request, Response
from tunegate.core.results import SampleResult
from tunegate.core.sample import Sample
from tunegate.core.score import Score, score_value
from tunegate.suites.base import SkipSample, SuiteKind

#: lm-eval's HF model generates at most this many tokens when a task sets no `max_gen_toks`
DEFAULT_MAX_GEN_TOKS = 256
#: lm-eval's default few-shot sampler seed (`simple_evaluate(fewshot_random_seed=1234)`)
DEFAULT_FEWSHOT_SEED = 1234
#: environment variable: folders (os.pathsep-separated) of lm-eval task YAMLs that `task:` names are looked up in
LM_EVAL_TASKS_ENV = "TUNEGATE_LM_EVAL_TASKS"
#: the score every sample carries: how many lm-eval requests it made (with the items corpus metrics pool)
REQUESTS_SCORE = "lm_eval_requests"


class LMEvalOptions(BaseModel):
    """Which task, and the settings `lm_eval.simple_evaluate` would take for it."""

    model_config = ConfigDict(extra="forbid")

    task: str | None = Field(default=None, description="a task name lm-eval knows (e.g. arc_easy)")
    task_yaml: str | None = Field(default=None, description="a task YAML file, relative to the suite file")
    num_fewshot: int | None = Field(default=None, ge=0, description="None: the task's own default (else 0)")
    limit: int | None = Field(default=None, ge=1, description="only the first N documents (of each task in a group)")
    fewshot_seed: int = DEFAULT_FEWSHOT_SEED
    expected_docs: int | None = Field(
        default=None, ge=1, description="the number of documents the suite asks; a different count is an input "
        "error (the dataset changed), and `tunegate plan` uses it without loading the task")

    @model_validator(mode="after")
    def _one_task(self) -> LMEvalOptions:
        if (self.task is None) == (self.task_yaml is None):
            raise ValueError("give exactly one of 'task' (an lm-eval task name) or 'task_yaml' (a task YAML file)")
        return self


def import_lm_eval() -> Any:
    """The `lm_eval` package, or a MissingDependencyError naming the pip install (exit 2)."""
    try:
        import lm_eval
        import lm_eval.tasks  # noqa: F401 - the TaskManager lives here
    except ImportError as exc:
        if getattr(exc, "name", "") and not str(getattr(exc, "name", "")).startswith("lm_eval"):
            raise  # lm_eval is there but broken: a real failure, not a missing extra
        raise MissingDependencyError("lm_eval", extra="lm_eval", purpose="the lm_eval suite kind") from None
    return lm_eval


def _numeric(value: Any) -> float | None:
    """A per-document metric value as a float, or None when it is an item only a corpus aggregation reads."""
    if isinstance(value, (str, bytes, list, tuple, dict)) or value is None:
        return None
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return out


def _plain(value: Any) -> Any:
    """JSON-safe copy of a corpus item (tuples become lists, numpy scalars floats) for the results file."""
    return json.loads(json.dumps(value, default=lambda v: v.item() if hasattr(v, "item") else str(v)))


#: (include folders, lm-eval's own tasks too?) -> TaskManager; indexing is the slow part of loading a task
_MANAGERS: dict[tuple[tuple[str, ...], bool], Any] = {}


def _manager(manager_cls: Any, include: tuple[str, ...], defaults: bool) -> Any:
    """One TaskManager per set of task folders per process (it only indexes; every load builds new Tasks)."""
    key = (include, defaults)
    if key not in _MANAGERS:
        _MANAGERS[key] = manager_cls(include_path=list(include) or None, include_defaults=defaults)
    return _MANAGERS[key]


class LMEval(SuiteKind):
    """lm-evaluation-harness tasks answered by tunegate's backends and scored by the task's own metrics."""

    name = "lm_eval"
    description = ("An lm-evaluation-harness task run through tunegate: lm-eval builds the documents, few-shot "
                   "contexts and requests (multiple choice and log-likelihood, rolling log-likelihood, generate-until) "
                   "and scores the answers with the task's own filters and metric functions; tunegate answers the "
                   "requests with its backends and cache. Per-document metric values are kept for paired statistics "
                   "(Gao et al., A framework for few-shot language model evaluation, lm-evaluation-harness).")
    Options = LMEvalOptions

    def __init__(self, config: SuiteConfig, base_dir: Path) -> None:
        super().__init__(config, base_dir)
        if config.data is not None:
            raise UserError(f"suite {config.name}: data: an lm_eval suite reads its task's own data; remove data: "
                            "(the task YAML names its dataset)")
        self.tasks: dict[str, Any] = {}
        self._task_of: dict[str, str] = {}
        self._instances: dict[str, list[Any]] = {}
        self._docs: dict[str, Any] = {}
        self._aggregation: dict[str, Any] = {}
        self._higher: dict[str, bool] = {}

    def declared_size(self) -> int | None:
        return self.options.expected_docs

    # ---- data -------------------------------------------------------------
    def _load_tasks(self) -> dict[str, Any]:
        """lm-eval's Task objects for `task` / `task_yaml` (one, or a group's leaves), num_fewshot and seed applied."""
        lm_eval = import_lm_eval()
        from lm_eval.tasks import TaskManager

        opts: LMEvalOptions = self.options
        try:
            if opts.task_yaml is not None:
                path = resolve_data_path(opts.task_yaml, self.base_dir, "options.task_yaml")
                if not path.is_file():
                    raise UserError(f"{path}: lm-eval task YAML not found (options.task_yaml is relative to the suite)")
                loaded = TaskManager(include_defaults=False).load(self._task_config(path))
            else:
                loaded = self._task_manager(TaskManager, str(opts.task)).load(str(opts.task))
        except UserError:
            raise
        except Exception as exc:  # noqa: BLE001 - an unknown task, a bad YAML or an unloadable dataset: input errors
            what = opts.task_yaml or opts.task
            msg = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else ""
            offline = ("; offline mode is on (HF_DATASETS_OFFLINE / HF_HUB_OFFLINE): the task's dataset must be in "
                       "the local datasets cache") if os.environ.get("HF_DATASETS_OFFLINE", os.environ.get(
                           "HF_HUB_OFFLINE", "")).upper() in ("1", "TRUE", "YES", "ON") else ""
            raise UserError(f"suite {self.config.name}: lm-eval could not load task {what!r} "
                            f"({type(exc).__name__}: {msg}){offline}") from None
        tasks = {name: loaded["tasks"][name] for name in sorted(loaded["tasks"])}
        if not tasks:
            raise UserError(f"suite {self.config.name}: {opts.task_yaml or opts.task!r} names no lm-eval task")
        for task in tasks.values():
            if opts.num_fewshot is not None and task.get_config("num_fewshot") != 0:
                task.set_config(key="num_fewshot", value=opts.num_fewshot)  # as simple_evaluate(num_fewshot=...)
            elif task.get_config("num_fewshot") is None:
                task.set_config(key="num_fewshot", value=0)
            task.set_fewshot_seed(seed=opts.fewshot_seed)
        self._lm_eval_version = str(getattr(lm_eval, "__version__", ""))
        return tasks

    @staticmethod
    def _task_manager(manager_cls: Any, task: str) -> Any:
        """lm-eval's TaskManager: the folders in TUNEGATE_LM_EVAL_TASKS first, lm-eval's own tasks when needed.

        Why the order and the memo: indexing lm-eval's ~15,000 built-in task
        files takes seconds (17 s on a 2-core machine), so a task found in the
        user's own folders skips it, and one process indexes each set of
        folders once however many suites name tasks.
        """
        extra = tuple(p for p in os.environ.get(LM_EVAL_TASKS_ENV, "").split(os.pathsep) if p.strip())
        if extra:
            own = _manager(manager_cls, extra, False)
            if task in own.all_tasks:
                return own
        return _manager(manager_cls, extra, True)

    def _task_config(self, path: Path) -> dict[str, Any]:
        """The task YAML as lm-eval reads it (`include:`, `!function`), local `data_files` made absolute.

        Why: `datasets` resolves relative data files against the working
        directory; a suite's task YAML means its own folder, and those files
        are confined like any suite data (`resolve_data_path`).
        """
        try:
            from lm_eval.tasks._yaml_loader import load_yaml
        except ImportError:  # older lm-eval 0.4.x
            from lm_eval.utils import load_yaml_config as load_yaml
        cfg: dict[str, Any] = load_yaml(path)
        kwargs = cfg.get("dataset_kwargs")
        files = kwargs.get("data_files") if isinstance(kwargs, dict) else None

        def fix(ref: Any) -> Any:
            if isinstance(ref, str) and "://" not in ref:
                return str(resolve_data_path(ref, path.parent, f"{path.name}: dataset_kwargs.data_files"))
            if isinstance(ref, list):
                return [fix(r) for r in ref]
            return ref

        if isinstance(kwargs, dict) and files is not None:
            kwargs["data_files"] = {k: fix(v) for k, v in files.items()} if isinstance(files, dict) else fix(files)
        return cfg

    def samples(self) -> list[Sample]:
        """One sample per lm-eval document; its instances are kept for asking and scoring."""
        if self._samples is not None:
            return self._samples
        tasks = self._load_tasks()
        limit = self.options.limit
        samples: list[Sample] = []
        docs: list[dict[str, Any]] = []
        for name, task in tasks.items():
            for sample, doc in self._task_samples(name, task, prefix=f"{name}/" if len(tasks) > 1 else ""):
                samples.append(sample)
                docs.append({"task": name, "doc": doc} if len(tasks) > 1 else doc if isinstance(doc, dict)
                            else {"doc": doc})
        if not samples:
            raise UserError(f"suite {self.config.name}: the lm-eval task built no requests")
        expected = self.options.expected_docs
        if expected is not None and len(samples) != expected:
            raise UserError(f"suite {self.config.name}: the lm-eval task built {len(samples)} documents, the suite "
                            f"expects {expected} (options.expected_docs): the dataset or task changed; check it, set "
                            "expected_docs to the new count and re-plan the gate (tunegate plan)")
        # the data hash covers the documents used and the requests built from them (templates, few-shot examples)
        asked = [[inst.request_type, _plain(list(inst.args)), inst.repeats]
                 for s in samples for inst in self._instances[s.id]]
        docs_hash = rows_digest(docs)
        req_hash = hashlib.sha256(json.dumps(asked, sort_keys=True, ensure_ascii=False).encode()).hexdigest()
        self.data_hash = hashlib.sha256(f"{docs_hash}:{req_hash}".encode()).hexdigest()
        first = next(iter(tasks.values()))
        cfg = first.config
        single = len(tasks) == 1
        self.data_source = {k: v for k, v in {
            "lm_eval_task": cfg.task if single else self.options.task, "lm_eval": self._lm_eval_version,
            "lm_eval_subtasks": None if single else len(tasks), "num_fewshot": first.get_config("num_fewshot"),
            "fewshot_seed": self.options.fewshot_seed, "limit": limit, "dataset_path": cfg.dataset_path,
            "dataset_name": cfg.dataset_name if single else None, "task_yaml": self.options.task_yaml,
            "output_type": cfg.output_type}.items() if v is not None}
        self.tasks = tasks
        for task in tasks.values():  # a metric's aggregation and direction: the first task that defines it
            for metric, agg in task.aggregation().items():
                self._aggregation.setdefault(metric, agg)
            for metric, higher in task.higher_is_better().items():
                self._higher.setdefault(metric, bool(higher))
        self._samples = samples
        return samples

    def _task_samples(self, name: str, task: Any, prefix: str) -> list[tuple[Sample, Any]]:
        """One task's documents as samples (ids `prefix + doc_id`), its instances kept for asking and scoring."""
        limit = self.options.limit
        try:
            task.build_all_requests(limit=limit, rank=0, world_size=1, cache_requests=False)
        except Exception as exc:  # noqa: BLE001 - a template or document the task cannot render
            raise UserError(f"suite {self.config.name}: lm-eval could not build the requests of {name} "
                            f"({type(exc).__name__}: {str(exc)[:300]})") from None
        by_doc: dict[int, list[Any]] = defaultdict(list)
        for inst in task.instances:
            if inst.request_type not in ("loglikelihood", "loglikelihood_rolling", "generate_until"):
                raise UserError(f"suite {self.config.name}: lm-eval request type {inst.request_type!r} is not "
                                "supported (loglikelihood, loglikelihood_rolling, generate_until are)")
            by_doc[inst.doc_id].append(inst)
        out: list[tuple[Sample, Any]] = []
        for doc_id, doc in task.doc_iterator(rank=0, limit=limit, world_size=1):
            insts = sorted(by_doc.get(doc_id, []), key=lambda i: i.idx)
            if not insts:
                continue
            sid = f"{prefix}{doc_id}"
            self._instances[sid], self._docs[sid], self._task_of[sid] = insts, doc, name
            target = task.doc_to_target(doc)
            meta: dict[str, Any] = {"doc_id": doc_id, "requests": len(insts)}
            if prefix:
                meta["task"] = name
            out.append((Sample(id=sid, input=str(insts[0].arguments[0]) or "(empty)",
                               target=target if isinstance(target, str) else json.dumps(_plain(target)),
                               metadata=meta), doc))
        return out

    def to_sample(self, row: Any) -> Sample:  # pragma: no cover - samples() builds them from lm-eval documents
        raise NotImplementedError("lm_eval suites build samples from the task's documents")

    # ---- asking -------------------------------------------------------------
    def requests(self, sample: Sample) -> list[Request]:
        """Each of the document's lm-eval instances, `repeats` times, as a tunegate request."""
        supports = getattr(getattr(self, "context", None), "supports", frozenset({"loglikelihood", "generate"}))
        out: list[Request] = []
        for inst in self._instances[sample.id]:
            need = "generate" if inst.request_type == "generate_until" else "loglikelihood"
            if need not in supports:
                raise SkipSample(f"the backend cannot answer lm-eval {inst.request_type} requests")
            out.extend([self._request(inst)] * int(inst.repeats or 1))
        return out

    def _request(self, inst: Any) -> Request:
        args = inst.arguments
        if inst.request_type == "loglikelihood":
            return LoglikelihoodRequest(context=args[0], continuation=args[1])
        if inst.request_type == "loglikelihood_rolling":  # the whole text after the model's BOS (EOS) token
            return LoglikelihoodRequest(context="", continuation=args[0])
        kw = dict(args[1]) if len(args) > 1 and isinstance(args[1], dict) else {}
        until = kw.get("until") or []
        stop = (until,) if isinstance(until, str) else tuple(s for s in until if s)
        sample = bool(kw.get("do_sample", False))
        temperature = float(kw.get("temperature", 0.0) or 0.0) if sample else 0.0
        seed = getattr(getattr(self, "context", None), "seed", 0)
        return GenerateRequest(prompt=args[0], max_new_tokens=int(kw.get("max_gen_toks", DEFAULT_MAX_GEN_TOKS)),
                               stop=stop, temperature=temperature, top_p=float(kw.get("top_p", 1.0) or 1.0) if sample
                               else 1.0, seed=seed)

    # ---- scoring ---------------------------------------------------------------
    @staticmethod
    def _answer(request_type: str, resp: Response) -> Any:
        """A tunegate response in the shape lm-eval's model API returns for that request type."""
        if request_type == "loglikelihood":
            return (float(resp.loglikelihood if resp.loglikelihood is not None else math.nan), bool(resp.is_greedy))
        if request_type == "loglikelihood_rolling":
            return float(resp.loglikelihood if resp.loglikelihood is not None else math.nan)
        return resp.text or ""

    @staticmethod
    def metric_name(metric: str, filter_key: str) -> str:
        """`acc` for the unfiltered answers, `acc_<filter>` for a named filter (lm-eval reports `acc,<filter>`)."""
        return metric if filter_key == "none" else f"{metric}_{filter_key}"

    def score_batch(self, samples: list[Sample], responses: list[list[Response]]) -> list[list[Score]]:
        """Answers into the instances, the task's filters over them, then the task's `process_results` per document."""
        used: dict[str, list[Any]] = defaultdict(list)
        for sample, resps in zip(samples, responses, strict=True):
            it = iter(resps)
            for inst in self._instances[sample.id]:
                inst.resps = [self._answer(inst.request_type, next(it)) for _ in range(int(inst.repeats or 1))]
                inst.filtered_resps = {}
                used[self._task_of[sample.id]].append(inst)
        for name, insts in used.items():
            task = self.tasks[name]
            everything = task._instances
            task._instances = insts  # filters run over the instances of the samples being scored, nothing else
            try:
                task.apply_filters()
            finally:
                task._instances = everything
        out: list[list[Score]] = []
        for sample in samples:
            task = self.tasks[self._task_of[sample.id]]
            insts = self._instances[sample.id]
            scores: list[Score] = []
            items: dict[str, Any] = {}
            for key in insts[0].filtered_resps:
                values = task.process_results(self._docs[sample.id], [inst.filtered_resps[key] for inst in insts])
                for metric, value in values.items():
                    name = self.metric_name(metric, key)
                    num = _numeric(value)
                    if num is None:
                        items[name] = {"metric": metric, "item": _plain(value)}
                    else:
                        scores.append(score_value(name, num, lm_eval_metric=metric, filter=key))
            scores.append(score_value(REQUESTS_SCORE, float(len(insts)), corpus_items=items))
            out.append(scores)
        return out

    def score(self, sample: Sample, responses: list[Response]) -> list[Score]:
        return self.score_batch([sample], [responses])[0]

    # ---- metrics ---------------------------------------------------------------
    def metrics(self, results: list[SampleResult]) -> list[Metric]:
        """One metric per (task metric, filter): a mean keeps its per-sample vector, other aggregations are corpus.

        In a group, a mean pools every task's documents; any other aggregation
        is computed per task and named `TASK/metric`.
        """
        lm_eval = import_lm_eval()
        mean_fn = lm_eval.api.metrics.mean
        errored = sum(1 for r in results if r.status == "errored")
        scored = [r for r in results if r.status == "scored"]
        group = len(self.tasks) > 1
        numeric: dict[str, dict[str, float]] = {}
        corpus: dict[tuple[str, str], list[Any]] = {}
        origin: dict[str, str] = {}
        for r in scored:
            task = self._task_of.get(r.id, r.id.rpartition("/")[0]) if group else ""
            for s in r.scores:
                if s.name == REQUESTS_SCORE:
                    for name, entry in (s.details.get("corpus_items") or {}).items():
                        corpus.setdefault((task, name), []).append(entry["item"])
                        origin.setdefault(name, str(entry["metric"]))
                elif s.value is not None:
                    numeric.setdefault(s.name, {})[r.id] = s.value
                    origin.setdefault(s.name, str(s.details.get("lm_eval_metric", s.name)))
        label = self.options.task or (next(iter(self.tasks)) if len(self.tasks) == 1 else "")
        out: list[Metric] = []
        for name, values in numeric.items():
            metric = origin[name]
            agg = self._aggregation.get(metric, mean_fn)
            higher = self._higher.get(metric, True)
            agg_name = getattr(agg, "__name__", str(agg))
            if agg is mean_fn:
                binary = all(v in (0.0, 1.0) for v in values.values())
                scope = f"the {len(self.tasks)} tasks' documents" if group else "documents"
                desc = f"lm-eval {label} {metric} (mean over {scope})"
                out.append(Metric.from_values(name, values, direction="higher" if higher else "lower",
                                              kind="binary" if binary else "continuous", description=desc,
                                              errored=errored))
                continue
            # the task's own aggregation over the per-document values (e.g. perplexity): no per-sample test
            by_task: dict[str, list[float]] = defaultdict(list)
            for sid, v in values.items():
                by_task[self._task_of.get(sid, "") if group else ""].append(v)
            for task, vals in sorted(by_task.items()):
                out.append(self._corpus(f"{task}/{name}" if group else name, float(agg(vals)), higher,
                                        f"lm-eval {task or label} {metric} ({agg_name} over documents)", len(vals),
                                        errored))
        for (task, name), items in sorted(corpus.items()):
            metric = origin[name]
            agg = self._aggregation.get(metric)
            if agg is None:
                continue
            items_in = [tuple(i) if isinstance(i, list) else i for i in items]
            desc = f"lm-eval {task or label} {metric} (corpus {getattr(agg, '__name__', '')})"
            out.append(self._corpus(f"{task}/{name}" if group else name, float(agg(items_in)),
                                    self._higher.get(metric, True), desc, len(items), errored))
        return out

    @staticmethod
    def _corpus(name: str, value: float, higher: bool, desc: str, n: int, errored: int) -> Metric:
        return Metric(name=name, value=value if math.isfinite(value) else None,
                      direction="higher" if higher else "lower", kind="continuous", aggregation="corpus",
                      description=desc, n=n, errored=errored, per_sample={})

    def config_hash(self) -> str:
        """The suite file plus the task YAML's bytes: editing the task changes what is asked and how it is scored."""
        base = super().config_hash()
        if self.options.task_yaml is None:
            return base
        path = resolve_data_path(self.options.task_yaml, self.base_dir, "options.task_yaml")
        extra = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else ""
        return hashlib.sha256(f"{base}:{extra}".encode()).hexdigest()

