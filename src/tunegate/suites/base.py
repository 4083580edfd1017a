"""`SuiteKind`: the base class of `tunegate.suites` plugins.

A suite kind is three small functions around data (the lm-evaluation-harness
shape): `to_sample` validates one row, `requests` says what to ask the backend,
`score` says what the answers mean; `metrics` aggregates. A kind never calls a
model. Kind-specific YAML `options` are validated by the kind's `Options` model
(unknown keys rejected) when the suite is loaded, before any model loads.
"""

from __future__ import annotations

import hashlib
import json
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, ValidationError

from tunegate.core.config import DataSource, SuiteConfig, format_validation_error
from tunegate.core.data import Row, load_data
from tunegate.core.errors import UserError
from tunegate.core.metric import Direction, Metric, MetricKind
from tunegate.core.request import Request, Response
from tunegate.core.results import SampleResult, ScorerRecord
from tunegate.core.sample import Sample
from tunegate.core.score import Score
from tunegate.scorers.base import scorer_record


class NoOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SkipSample(Exception):
    """Raised by `requests()` when a sample cannot be asked of this model; it ends as skipped with the reason."""


class RunContext(BaseModel):
    """What a suite may know about the run (not the model): seeds, device for heavy scorers, the backend's capabilities."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    seed: int = 0
    device: str = "cpu"
    supports: frozenset[str] = frozenset({"loglikelihood", "generate"})


class SuiteKind(ABC):
    """Base of every suite kind. Subclasses set `name`, `description`, optionally `Options` and `default_fields`."""

    name: ClassVar[str] = ""
    #: method and source paper, shown in the report's methods section
    description: ClassVar[str] = ""
    Options: ClassVar[type[BaseModel]] = NoOptions
    #: logical field -> default column name in the data file
    default_fields: ClassVar[dict[str, str]] = {}

    def __init__(self, config: SuiteConfig, base_dir: Path) -> None:
        self.config = config
        self.base_dir = base_dir
        self.fields = {**self.default_fields, **config.fields}
        # `truncation` is common to every kind: `truncate` (default: inputs too long for the model's window are
        # cut from the left and recorded per sample) or `error` (such samples error)
        options = dict(config.options)
        own = "truncation" in self.Options.model_fields
        self.truncation: str = str(options.get("truncation", "truncate") if own else options.pop("truncation", "truncate"))
        if self.truncation not in ("truncate", "error"):
            raise UserError(f"suite {config.name}: options: truncation: is {self.truncation!r}; use 'truncate' or 'error'")
        try:
            self.options: Any = self.Options.model_validate(options)
        except ValidationError as err:
            raise UserError(format_validation_error(f"suite {config.name}: options", err)) from None
        self._samples: list[Sample] | None = None
        self.data_hash = ""
        #: where the rows came from when a hash alone cannot say (a Hub dataset's id, config, split and commit;
        #: an lm-eval task's name and version), recorded in the results as `SuiteResult.data_source`
        self.data_source: dict[str, Any] = {}

    # ---- data -------------------------------------------------------------
    def samples(self) -> list[Sample]:
        """Load and validate every row once; duplicate ids are an input error."""
        if self._samples is None:
            loaded = load_data(self.data_config(), self.base_dir, self.fields)
            rows, self.data_hash = loaded.rows, loaded.digest
            # recorded for Hub datasets only: a local file is named by its hash, and its absolute path is no evidence
            self.data_source = loaded.origin if "hub" in loaded.origin else {}
            samples: list[Sample] = []
            seen: dict[str, int] = {}
            for row in rows:
                for sample in self.to_samples(row):
                    if sample.id in seen:
                        raise row.fail("id", f"duplicate sample id {sample.id!r} (first at data row {seen[sample.id]})")
                    seen[sample.id] = row.line
                    samples.append(sample)
            self._samples = samples
        return self._samples

    def data_config(self) -> DataSource:
        """The suite's `data:`; a UserError when the file has none (only kinds that bring their own data omit it)."""
        if self.config.data is None:
            raise UserError(f"suite {self.config.name}: data: is missing; kind {self.config.kind!r} reads its rows "
                            "from a data source (data: {path: FILE} or data: {hub: DATASET_ID})")
        return self.config.data

    def to_samples(self, row: Row) -> Iterable[Sample]:
        """Rows usually map one-to-one to samples; kinds that expand a row override this."""
        return [self.to_sample(row)]

    @abstractmethod
    def to_sample(self, row: Row) -> Sample:
        """Validate one row into a Sample (raise `row.fail(field, why)` on bad data)."""

    def row_id(self, row: Row) -> str:
        """The row's id field when present, else its row number."""
        return str(row.get("id", (str, int), default=row.line))

    # ---- asking and scoring ---------------------------------------------
    def scorer_refs(self) -> list[tuple[str, Any, Any]]:
        """(option key, scorer plugin name, scorer options) for every scorer this suite's options name.

        The suite loader checks each (`scorer.check_scorer`) before any model
        loads. The default reads the built-in kinds' convention: an option
        `scorer` or `<x>_scorer` holding a plugin name (null: none), with its
        options in `<that key>_options`. Kinds that name scorers another way
        override this.
        """
        opts = self.options
        fields = type(opts).model_fields if isinstance(opts, BaseModel) else {}
        refs: list[tuple[str, Any, Any]] = []
        for key in fields:
            if key == "scorer" or key.endswith("_scorer"):
                name = getattr(opts, key)
                if name is not None:
                    refs.append((key, name, getattr(opts, f"{key}_options", None)))
        return refs

    def scorers_used(self) -> list[ScorerRecord]:
        """The scorer plugins behind this suite's scores, as the runner records them in `SuiteResult.scorers`.

        Why a method of the kind: only the kind knows which scorers it asks,
        and the report must read that from the results rather than guess it
        later from score names or suite definitions. The default records every
        scorer `scorer_refs` names (the built-in kinds ask exactly those);
        a kind that uses no scorer plugin records []. A kind that asks a
        scorer its options do not name overrides this. Derived from the
        configuration only, so a cached or resumed run records the same.
        """
        return [scorer_record(str(name), options if isinstance(options, Mapping) else None)
                for _, name, options in self.scorer_refs()]

    def setup(self, context: RunContext) -> None:
        """Load heavy scorers once per run (default: nothing)."""
        self.context = context

    @abstractmethod
    def requests(self, sample: Sample) -> list[Request]:
        """What to ask the backend for this sample."""

    @abstractmethod
    def score(self, sample: Sample, responses: list[Response]) -> list[Score]:
        """What the answers mean, as named per-sample scores."""

    def score_batch(self, samples: list[Sample], responses: list[list[Response]]) -> list[list[Score]]:
        """Score many samples at once; kinds with heavy scorers override this to batch."""
        return [self.score(s, r) for s, r in zip(samples, responses, strict=True)]

    @abstractmethod
    def metrics(self, results: list[SampleResult]) -> list[Metric]:
        """Aggregate per-sample scores into metrics (keep the per-sample vectors)."""

    # ---- identity ---------------------------------------------------------
    def declared_size(self) -> int | None:
        """The number of samples, when the suite states it without reading its data (None: count the rows)."""
        return None

    def config_hash(self) -> str:
        payload = json.dumps(self.config.model_dump(mode="json"), sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()


def metric_from_scores(
    name: str,
    results: list[SampleResult],
    score_name: str,
    *,
    direction: Direction = "higher",
    kind: MetricKind = "continuous",
    aggregation: str = "mean",
    description: str = "",
    weight_score: str | None = None,
    where: Callable[[SampleResult], bool] | None = None,
) -> Metric:
    """A metric over the scored samples' `score_name` values (optionally a subset).

    Errored samples in the subset are counted in `errored`, so a reader sees
    the denominator the value did not cover.
    """
    chosen = [r for r in results if where is None or where(r)]
    values: dict[str, float] = {}
    weights: dict[str, float] | None = {} if weight_score else None
    errored = 0
    for r in chosen:
        if r.status == "errored":
            errored += 1
            continue
        if r.status != "scored":
            continue
        v = r.score(score_name)
        if v is None:
            continue
        values[r.id] = v
        if weights is not None and weight_score is not None:
            weights[r.id] = r.score(weight_score) or 0.0
    return Metric.from_values(
        name, values, direction=direction, kind=kind, aggregation=aggregation,
        description=description, weights=weights, errored=errored,
    )
