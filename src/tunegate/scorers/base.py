"""`Scorer`: the base of `tunegate.scorers` plugins (toxicity, refusal, sentiment...).

A scorer turns texts into per-text `Score`s in batches. Heavy scorers load their
model once (`load`) and are shared by every suite of a run through
`get_scorer`. Scorers fail closed: `score_texts_safe` turns a load failure or a
crash into error scores for the affected texts, never into "safe" or 0.

Names and options are checked when a suite loads, before any model loads or
trains (`check_scorer`, called by the suite loader for every scorer a suite's
options name): a typo costs a second, not a model load or a fine-tune.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, ValidationError

from tunegate.core import plugins
from tunegate.core.config import format_validation_error
from tunegate.core.errors import TunegateError, UserError
from tunegate.core.redact import redact_secrets
from tunegate.core.results import ScorerRecord
from tunegate.core.score import Score, score_error


class NoScorerOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Scorer(ABC):
    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    #: what the scorer is known to get wrong; the report's limitations section shows it
    limitations: ClassVar[str] = ""
    #: score names this scorer produces for each text
    outputs: ClassVar[tuple[str, ...]] = ()
    Options: ClassVar[type[BaseModel]] = NoScorerOptions
    #: bump when a change makes the scorer score differently; recorded per suite in results (`ScorerRecord.version`).
    #: Empty: the record holds a hash of the class's import path and options instead.
    version: ClassVar[str] = ""

    def __init__(self, **options: Any) -> None:
        self.options: Any = self.validate_options(options)
        self._loaded = False
        self._load_error: str | None = None

    @classmethod
    def validate_options(cls, options: Mapping[str, Any], where: str | None = None) -> Any:
        """The validated `Options` for `options`, or a UserError; cheap (no weights load, nothing downloads).

        Runs when a scorer is built and when a suite that names it loads;
        checks beyond the Options model belong in `check`.
        """
        try:
            return cls.Options.model_validate(dict(options))
        except ValidationError as err:
            raise UserError(format_validation_error(where or f"scorer {cls.name}: options", err)) from None

    @classmethod  # noqa: B027 - optional hook: scorers whose options need no checks beyond their model keep the no-op
    def check(cls, options: Any) -> None:
        """Checks of validated `options` that need no weights (a local file exists...); raise UserError.

        Run when a suite that names the scorer loads (`check_scorer`), never when
        a scorer is built, so a scorer built directly still fails closed at load.
        """

    def load(self, device: str = "cpu") -> None:  # noqa: B027 - optional hook: scorers with nothing to load keep the no-op
        """Load weights/resources once; the default has nothing to load."""

    def ensure_loaded(self, device: str = "cpu") -> str | None:
        """Load once; return the load error message (and remember it) instead of raising."""
        if not self._loaded and self._load_error is None:
            try:
                self.load(device)
                self._loaded = True
            except TunegateError as exc:
                self._load_error = exc.message
            except Exception as exc:  # noqa: BLE001 - fail closed on any load failure
                self._load_error = f"{type(exc).__name__}: {exc}"
        return self._load_error

    @abstractmethod
    def score_texts(self, texts: list[str], prompts: list[str | None] | None = None) -> list[list[Score]]:
        """One list of Scores (named as in `outputs`) per text, in order. May raise."""

    def score_texts_safe(self, texts: list[str], prompts: list[str | None] | None = None, device: str = "cpu") -> list[list[Score]]:
        """Like `score_texts`, but every failure becomes error scores (fail closed)."""
        err = self.ensure_loaded(device)
        if err is None:
            try:
                out = self.score_texts(texts, prompts)
                if len(out) != len(texts):
                    raise RuntimeError(f"scorer returned {len(out)} results for {len(texts)} texts")
                return out
            except Exception as exc:  # noqa: BLE001
                err = f"{type(exc).__name__}: {exc}"
        reason = f"{self.name} scorer unavailable: {err}"
        return [[score_error(o, reason) for o in (self.outputs or (self.name,))] for _ in texts]


_LOADED: dict[tuple[str, str], Scorer] = {}


def check_scorer(name: Any, options: Any = None, where: str = "scorer", options_where: str | None = None) -> type[Scorer]:
    """The scorer class registered as `name`, with `options` validated; a UserError naming the config key otherwise.

    Imports the plugin's module but loads no weights: safe to call for every
    suite before any model loads. `where` names the key holding the name (e.g.
    `suites/tox.yaml: options.scorer`), `options_where` the key holding the
    options (default: `where` + `_options`).
    """
    installed = plugins.names("scorers")
    if not isinstance(name, str) or name not in installed:
        raise UserError(f"{where}: unknown scorer {name!r}; installed scorers: {', '.join(installed) or '(none)'}")
    cls: type[Scorer] = plugins.load("scorers", name)
    options_where = options_where or f"{where}_options"
    options = {} if options is None else options
    if not isinstance(options, Mapping):
        raise UserError(f"{options_where}: expected a mapping of scorer options, got {type(options).__name__}")
    validated = cls.validate_options(options, where=f"{options_where} (scorer {name})")
    try:
        cls.check(validated)
    except UserError as err:
        raise UserError(f"{options_where}: {err.message}") from None
    return cls


def get_scorer(name: str, **options: Any) -> Scorer:
    """One instance per (name, options) per process, so a model loads once per run."""
    import json

    key = (name, json.dumps(options, sort_keys=True, default=str))
    if key not in _LOADED:
        cls = plugins.load("scorers", name)
        _LOADED[key] = cls(**options)
    return _LOADED[key]


def scorer_record(name: str, options: Mapping[str, Any] | None = None) -> ScorerRecord:
    """What results record about scorer `name` as configured with `options` (see `ScorerRecord`).

    Why here: the scorer stage knows how its options resolve (defaults filled
    in by the plugin's `Options`), so a suite kind only says which scorers it
    asks. The options are redacted before they are hashed or stored. Never
    raises for a plugin that cannot be imported at recording time (the
    suite's scores already failed closed): its given options are kept and
    its version is `unknown`.
    """
    import hashlib
    import json

    raw = dict(options or {})
    try:
        cls: type[Scorer] = plugins.load("scorers", name)
        validated = cls.validate_options(raw)
    except Exception:  # noqa: BLE001 - unimportable or invalid now: record what was configured, version unknown
        given = redact_secrets(json.loads(json.dumps(raw, default=str)))
        return ScorerRecord(name=name, options=given, version="unknown")
    resolved = validated.model_dump(mode="json") if isinstance(validated, BaseModel) else json.loads(
        json.dumps(dict(validated), default=str))
    resolved = redact_secrets(resolved)
    declared = getattr(cls, "version", "")
    if isinstance(declared, str) and declared:
        version = declared
    else:
        identity = {"class": f"{cls.__module__}.{cls.__qualname__}", "options": resolved}
        version = "sha256:" + hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()
    return ScorerRecord(name=name, options=resolved, version=version)
