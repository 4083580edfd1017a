"""A scorer's measured agreement with human labels, attached to an audit.

`tunegate validate-scorer NAME --labels FILE --out V.json` measures a scorer
against labelled data. An audit (`scorer_validations:` in audit.yaml) or a
re-render (`tunegate report DIR --scorer-validation V.json`) attaches such files
to the comparison, so the report's Limitations section states the agreement
*measured* for the scorer that produced the results, with its interval and the
labelled set it was measured on, instead of only the scorer's fixed sentence.

Why a summary rather than the whole file: the report needs the headline
figures and where they came from (file digest, n, scorer version and options);
the full confusion matrix stays in the validation file. A file that is not a
validation, is incomplete (rows the scorer could not score), or names no
figures is refused (exit 2): a report must never show a figure that was not
measured as stated.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from tunegate.core.errors import UserError

VALIDATION_KIND = "tunegate.compare.scorer_validation"
VALIDATION_SCHEMA = 1


class Figure(BaseModel):
    """One measured figure with its bootstrap 95% interval (None where undefined)."""

    model_config = ConfigDict(extra="forbid")

    value: float | None = None
    ci95: list[float] | None = None

    def text(self, digits: int = 3) -> str:
        if self.value is None:
            return "n/a"
        ci = f" [{self.ci95[0]:.{digits}f}, {self.ci95[1]:.{digits}f}]" if self.ci95 else ""
        return f"{self.value:.{digits}f}{ci}"


class ScorerValidation(BaseModel):
    """The headline of one `tunegate validate-scorer` file, as the report shows it."""

    model_config = ConfigDict(extra="forbid")

    scorer: str
    score: str
    options: dict[str, Any] = Field(default_factory=dict)
    scorer_version: str = ""
    source: str = Field(description="the validation file's name")
    sha256: str = Field(description="SHA-256 of the validation file")
    labels_file: str
    labels_sha256: str
    mode: str
    n: int
    agreement: Figure
    cohen_kappa: Figure
    auroc: Figure | None = None
    binary_agreement: Figure | None = None
    binary_kappa: Figure | None = None
    binary_negative_class: str | None = None

    def sentence(self) -> str:
        """One line for the Limitations section: what was measured, on what, with intervals."""
        opts = f" with options {json.dumps(self.options, sort_keys=True)}" if self.options else ""
        parts = [f"agreement with human labels {self.agreement.text()}", f"Cohen's κ {self.cohen_kappa.text(2)}"]
        if self.binary_agreement is not None and self.binary_negative_class:
            parts.append(f"binary (not {self.binary_negative_class} vs {self.binary_negative_class}) "
                         f"{self.binary_agreement.text()}")
        if self.auroc is not None:
            parts.append(f"AUROC {self.auroc.text()}")
        return (f"Measured ({self.source}, score '{self.score}'{opts}, version {self.scorer_version or 'unknown'}) on "
                f"{self.n} labelled rows of {Path(self.labels_file).name} (SHA-256 {self.labels_sha256[:12]}): "
                + "; ".join(parts) + " (95% bootstrap intervals). The figures hold for data like that set.")


def _figure(obj: Any) -> Figure | None:
    if not isinstance(obj, dict):
        return None
    return Figure(value=obj.get("value"), ci95=obj.get("ci95"))


def load_scorer_validation(path: Path) -> ScorerValidation:
    """Read a `tunegate validate-scorer --out` file; UserError (exit 2) naming the file when it cannot be used."""
    path = Path(path)
    try:
        raw = path.read_bytes()
        obj = json.loads(raw)
    except FileNotFoundError:
        raise UserError(f"scorer validation {path}: file not found (write one with `tunegate validate-scorer NAME "
                        "--labels FILE.jsonl --out V.json`)") from None
    except (OSError, ValueError) as exc:
        raise UserError(f"scorer validation {path}: not readable JSON ({exc})") from None
    if not isinstance(obj, dict) or obj.get("kind") != VALIDATION_KIND:
        raise UserError(f"scorer validation {path}: not a `tunegate validate-scorer` output (kind is "
                        f"{obj.get('kind') if isinstance(obj, dict) else None!r})")
    if obj.get("schema_version") != VALIDATION_SCHEMA:
        raise UserError(f"scorer validation {path}: schema_version {obj.get('schema_version')!r}, this tunegate reads "
                        f"{VALIDATION_SCHEMA}; re-run `tunegate validate-scorer`")
    if not obj.get("complete", False):
        raise UserError(f"scorer validation {path}: incomplete ({obj.get('errored')} row(s) could not be scored); "
                        "fix the labelled file and re-run `tunegate validate-scorer` before attaching it")
    agreement, kappa = _figure(obj.get("agreement")), _figure(obj.get("cohen_kappa"))
    if agreement is None or agreement.value is None or kappa is None:
        raise UserError(f"scorer validation {path}: holds no agreement figures (no row was scored)")
    binary = obj.get("binary") if isinstance(obj.get("binary"), dict) else None
    labels = obj.get("labels_file") or {}
    try:
        return ScorerValidation(
            scorer=str(obj["scorer"]), score=str(obj.get("score", "")), options=dict(obj.get("options") or {}),
            scorer_version=str(obj.get("scorer_version", "")), source=path.name,
            sha256=hashlib.sha256(raw).hexdigest(), labels_file=str(labels.get("path", "")),
            labels_sha256=str(labels.get("sha256", "")), mode=str(obj.get("mode", "")),
            n=int(obj["scored"] if "scored" in obj else obj["n"]),
            agreement=agreement, cohen_kappa=kappa, auroc=_figure(obj.get("auroc")),
            binary_agreement=_figure(binary.get("agreement")) if binary else None,
            binary_kappa=_figure(binary.get("cohen_kappa")) if binary else None,
            binary_negative_class=str(binary["negative_class"]) if binary else None,
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise UserError(f"scorer validation {path}: malformed ({exc})") from None


def load_scorer_validations(paths: Iterable[Path]) -> list[ScorerValidation]:
    """Several files (a scorer may be measured on several labelled sets); the same measurement twice is refused."""
    out: list[ScorerValidation] = []
    for p in paths:
        v = load_scorer_validation(Path(p))
        key = (v.scorer, v.score, v.options, v.labels_sha256)
        clash = next((o for o in out if (o.scorer, o.score, o.options, o.labels_sha256) == key), None)
        if clash is not None:
            raise UserError(f"scorer validations {clash.source} and {v.source} both measure scorer {v.scorer!r} "
                            f"(score {v.score!r}, same options) on the same labelled file; attach one")
        out.append(v)
    return out
