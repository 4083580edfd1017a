"""Pydantic models of every file a user writes, with unknown keys rejected.

YAML is data only: it is read with `yaml.safe_load` and validated here; logic
lives in Python. `load_yaml_model` turns a validation failure into one line that
names the file, the key path and the fix, with exit code 2.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml
from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    ValidationError,
    model_serializer,
    model_validator,
)

from tunegate.core.errors import UserError
from tunegate.core.model_spec import ModelSpec

M = TypeVar("M", bound=BaseModel)


def format_validation_error(source: str, err: ValidationError) -> str:
    """One line per problem: `source: key.path: message`."""
    parts = []
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"]) or "(top level)"
        msg = e["msg"]
        if e["type"] == "extra_forbidden":
            msg = "unknown key (check the spelling; unknown keys are rejected)"
        parts.append(f"{source}: {loc}: {msg}")
    return "; ".join(parts)


def read_yaml(path: Path) -> Any:
    """Read a YAML file safely, turning every failure into a UserError naming the file."""
    if not path.is_file():
        raise UserError(f"{path}: file not found")
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise UserError(f"{path}:{where}: malformed YAML: {problem}") from None
    except UnicodeDecodeError:
        raise UserError(f"{path}: not UTF-8 text") from None


def load_yaml_model(path: Path, model: type[M]) -> M:
    """Read `path` and validate it as `model`."""
    data = read_yaml(path)
    if not isinstance(data, dict):
        raise UserError(f"{path}: expected a mapping of keys at the top level, got {type(data).__name__}")
    try:
        return model.model_validate(data)
    except ValidationError as err:
        raise UserError(format_validation_error(str(path), err)) from None


class DataSource(BaseModel):
    """Where a suite's rows come from: a local file or folder (relative to the suite YAML) or a Hub dataset.

    A local path must resolve (through `..` and symlinks) inside the suite's
    folder, tunegate's shipped suite data or a folder in TUNEGATE_DATA_ROOTS
    (`tunegate.core.data.resolve_data_path`). JSONL, JSON and CSV files are read
    by tunegate's own readers (row-numbered errors, byte-stable hashes); parquet,
    arrow and folders go through `datasets`. `hub` (older spelling `hf`) names a
    Hugging Face dataset, read through `datasets` from the Hub or, offline, from
    the local datasets cache; `revision` pins its commit.
    """

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    path: str | None = None
    hf: str | None = Field(default=None, validation_alias=AliasChoices("hub", "hf"),
                           description="Hugging Face dataset id (YAML key `hub`, or `hf`)")
    config: str | None = None
    split: str = "test"
    revision: str | None = Field(default=None, description="Hub commit sha (or branch/tag) to read; hub only")
    format: str = "auto"
    limit: int | None = Field(default=None, ge=1)

    @model_validator(mode="after")
    def _one_source(self) -> DataSource:
        if (self.path is None) == (self.hf is None):
            raise ValueError("give exactly one of 'path' (a local file or folder) or 'hub' (a Hugging Face dataset id)")
        if self.revision is not None and self.hf is None:
            raise ValueError("'revision' pins a Hub dataset; it needs 'hub'")
        return self

    @model_serializer(mode="wrap")
    def _stable_dump(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        """Leave out `revision` while unset, so suites written before it existed keep their config hash."""
        out: dict[str, Any] = handler(self)
        if out.get("revision") is None:
            out.pop("revision", None)
        return out


class SuiteConfig(BaseModel):
    """A suite definition file (`suites/*.yaml` or a user's own)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[A-Za-z0-9_.\-]+$")
    kind: str
    version: str = "1"
    description: str = ""
    #: None only for kinds that bring their own data (`lm_eval` reads its task's); the others require it
    data: DataSource | None = None
    fields: dict[str, str] = Field(default_factory=dict)
    options: dict[str, Any] = Field(default_factory=dict)
    content_warning: bool = False

    @model_validator(mode="before")
    @classmethod
    def _data_shorthand(cls, values: Any) -> Any:
        if isinstance(values, dict):
            if isinstance(values.get("data"), str):
                values = {**values, "data": {"path": values["data"]}}
            if isinstance(values.get("version"), (int, float)):
                values = {**values, "version": str(values["version"])}
        return values


RuleKind = Literal["min", "max", "max_regression", "min_improvement"]
RULE_KINDS: tuple[RuleKind, ...] = ("min", "max", "max_regression", "min_improvement")


class GateRule(BaseModel):
    """One rule of a gate policy on `suite/metric`: exactly one of min, max, max_regression, min_improvement.

    `min`/`max` bound the candidate's value; `max_regression` is a tolerance on
    the delta in the metric's bad direction; `min_improvement` the gain required
    in its good direction. See docs/compare-gate-report.md.
    """

    model_config = ConfigDict(extra="forbid")

    metric: str = Field(pattern=r"^[^/\s]+/\S+$", description="suite/metric (the metric part may itself contain /)")
    min: float | None = None
    max: float | None = None
    max_regression: float | None = Field(default=None, ge=0)
    min_improvement: float | None = Field(default=None, ge=0)
    confidence: float | None = Field(default=None, gt=0.5, lt=1.0)
    description: str = ""

    @model_validator(mode="after")
    def _exactly_one(self) -> GateRule:
        given = [k for k in RULE_KINDS if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(f"give exactly one of {', '.join(RULE_KINDS)} (got {', '.join(given) or 'none'})")
        return self

    @property
    def kind(self) -> RuleKind:
        return next(k for k in RULE_KINDS if getattr(self, k) is not None)

    @property
    def threshold(self) -> float:
        return float(getattr(self, self.kind))


class Policy(BaseModel):
    """A gate policy file: rules over metrics, a default confidence, an allowed share of errored samples."""

    model_config = ConfigDict(extra="forbid")

    name: str = "policy"
    description: str = ""
    confidence: float = Field(default=0.95, gt=0.5, lt=1.0)
    max_error_rate: float = Field(default=0.0, ge=0.0, le=1.0)
    rules: list[GateRule] = Field(min_length=1)


class SuiteGroup(BaseModel):
    """A named set of suites (`groups/NAME.yaml`): asking for the name asks for every member."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[A-Za-z0-9_.\-]+$")
    description: str = ""
    suites: list[str] = Field(min_length=1, description="member suite names (built-in or on TUNEGATE_SUITES_PATH)")


# ---- audit.yaml ---------------------------------------------------------------


class FinetuneBlock(BaseModel):
    """A candidate produced by fine-tuning: every saved checkpoint (or only the final one) is audited."""

    model_config = ConfigDict(extra="forbid")

    recipe: str = Field(description="recipe YAML path, or a recipe name under fine_tune/ (sft-lora, sft-full)")
    data: str
    eval: str | None = None
    out: str
    label: str = Field(default="candidate", pattern=r"^[A-Za-z0-9_.\-]+$")
    overrides: dict[str, Any] = Field(default_factory=dict)
    checkpoints: Literal["all", "final"] = "all"


class FinetuneCandidate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    finetune: FinetuneBlock


class IoLogSettings(BaseModel):
    """`io_log:` in audit.yaml: how each run's io_log.jsonl.gz is written (docs/compliance.md)."""

    model_config = ConfigDict(extra="forbid")

    redact: bool = Field(default=False, description="drop the raw text of sensitive suites (content warning or named below)")
    sensitive_suites: list[str] = Field(default_factory=list, description="suite names treated as sensitive besides "
                                        "those with a content warning")


class CardFields(BaseModel):
    """`card:` in audit.yaml: what only the provider can state; the model card and the technical documentation
    show each field given here verbatim and every other one as "to be provided by the provider"."""

    model_config = ConfigDict(extra="forbid")

    model_name: str | None = None
    provider: str | None = None
    license: str | None = None
    intended_purpose: str | None = None
    out_of_scope_uses: str | None = None
    users_and_deployment: str | None = None
    human_oversight: str | None = None
    foreseeable_risks: str | None = None
    risk_management: str | None = None
    training_data_description: str | None = None
    data_governance: str | None = None
    accuracy_robustness_cybersecurity: str | None = None
    post_market_monitoring: str | None = None
    contact: str | None = None
    tags: list[str] = Field(default_factory=list)


class AuditConfig(BaseModel):
    """`audit.yaml`: base, candidates, suites, policy, output folder. Paths are relative to the file."""

    model_config = ConfigDict(extra="forbid")

    name: str = "audit"
    description: str = ""
    base: ModelSpec
    candidates: list[ModelSpec | FinetuneCandidate] = Field(min_length=1)
    suites: list[str] = Field(min_length=1)
    policy: str
    out: str = "reports/audit"
    strict: bool = False
    seed: int = 0
    cache: str | None = Field(default=None, description="response cache file; default: the user cache")
    recommend_by: str | None = Field(default=None, description="suite/metric whose gain picks the recommended candidate")
    grid_intensity_g_per_kwh: float | None = Field(
        default=None, gt=0, description="your electricity's carbon intensity; with it, measured energy is also shown as CO2e")
    scorer_validations: list[str] = Field(
        default_factory=list,
        description="`tunegate validate-scorer --out` files; the report states each scorer's measured agreement")
    allow_underpowered: bool = Field(
        default=False, description="run even when a policy rule cannot decide at the suites' sizes (warned, not refused)")
    allow_suite_mismatch: bool = Field(
        default=False, description="compare suites whose config hash, data hash or version differ between runs (shown in red)")
    io_log: IoLogSettings = Field(default_factory=IoLogSettings)
    card: CardFields = Field(default_factory=CardFields)
