"""`tunegate validate-scorer`: how far does a scorer agree with human labels?

A labelled JSONL file (one object per line: a text field, a label field and
optionally a prompt) is scored by a registered scorer, and the scorer's
output is compared with the labels:

- categorical scorers (their scores carry a class name in `details["label"]`,
  e.g. `refusal`: refused / partial / complied): labels are class names;
- continuous scorers (e.g. toxicity in [0, 1]): labels are binary, written
  1/0, true/false, "toxic"/"non-toxic" (see `POSITIVE` / `NEGATIVE`); the
  score is a class at `threshold` (default 0.5) and AUROC is added.

Reported: agreement, per-class precision / recall, the confusion matrix
(rows: human label, columns: scorer), Cohen's kappa (scikit-learn) and, for
continuous scorers, AUROC, each with a seeded percentile bootstrap 95%
interval over the labelled rows (proportions also get a Wilson interval, which
is never of zero width). `negative_class` adds a binary view of a categorical
scorer (e.g. refused-or-partial vs complied). The JSON written is
schema-versioned and names the scorer, its options, its version, the labels
file's SHA-256 and n.

The whole file is validated before the scorer loads: a bad row is a UserError
(exit 2) naming file, line and field. Texts the scorer cannot score are
counted in `errored` (never dropped silently): the figures cover the scored
rows, the JSON says `complete: false`, and the command exits 3 after
writing it.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tunegate.core.data import iter_jsonl
from tunegate.core.errors import IncompleteError, UserError

SCHEMA_VERSION = 1
KIND = "tunegate.compare.scorer_validation"

POSITIVE = frozenset({"1", "true", "yes", "toxic", "positive", "pos"})
NEGATIVE = frozenset({"0", "false", "no", "non-toxic", "nontoxic", "not-toxic", "not_toxic", "non_toxic", "benign",
                      "negative", "neg"})
POS_CLASS, NEG_CLASS = "positive", "negative"


@dataclass(frozen=True)
class LabelledRow:
    line: int
    text: str
    label: str
    prompt: str | None


def _binary_label(value: Any) -> str | None:
    """'positive' / 'negative' for a binary label value, None when it is not one."""
    if isinstance(value, bool):
        return POS_CLASS if value else NEG_CLASS
    if isinstance(value, (int, float)) and value in (0, 1):
        return POS_CLASS if value == 1 else NEG_CLASS
    if isinstance(value, str):
        v = value.strip().lower()
        if v in POSITIVE:
            return POS_CLASS
        if v in NEGATIVE:
            return NEG_CLASS
    return None


def read_labels(path: Path, text_field: str = "text", label_field: str = "label",
                prompt_field: str = "prompt") -> list[LabelledRow]:
    """Every row with a non-empty string text and a string / integer / boolean label; else a UserError naming the row."""
    if not path.is_file():
        raise UserError(f"{path}: labels file not found")
    rows: list[LabelledRow] = []
    for lineno, obj in iter_jsonl(path, unit="line"):
        text = obj.get(text_field)
        if not isinstance(text, str) or not text.strip():
            got = "missing" if text_field not in obj else "empty" if isinstance(text, str) else f"a {type(text).__name__}"
            raise UserError(f"{path}: line {lineno}: field '{text_field}' must be a non-empty string (it is {got})")
        label = obj.get(label_field)
        if isinstance(label, bool) or (isinstance(label, (int, float)) and label in (0, 1)):
            label_s = "1" if label else "0"
        elif isinstance(label, str) and label.strip():
            label_s = label.strip()
        else:
            got = "missing" if label_field not in obj else repr(label)[:40]
            raise UserError(f"{path}: line {lineno}: field '{label_field}' must be a class name or 0/1 (it is {got})")
        prompt = obj.get(prompt_field)
        if prompt is not None and not isinstance(prompt, str):
            raise UserError(f"{path}: line {lineno}: field '{prompt_field}' must be a string or absent")
        rows.append(LabelledRow(lineno, text, label_s, prompt))
    if not rows:
        raise UserError(f"{path}: no labelled rows")
    return rows


def _categorical_labels(path: Path, rows: list[LabelledRow], label_field: str, classes: tuple[str, ...] | None) -> list[str]:
    if classes is not None:
        for r in rows:
            if r.label not in classes:
                raise UserError(f"{path}: line {r.line}: field '{label_field}': {r.label!r} is not a class of this scorer "
                                f"({', '.join(classes)})")
    return [r.label for r in rows]


def _continuous_labels(path: Path, rows: list[LabelledRow], label_field: str) -> list[str]:
    out = []
    for r in rows:
        b = _binary_label(r.label)
        if b is None:
            raise UserError(f"{path}: line {r.line}: field '{label_field}': {r.label!r} is not a binary label for a continuous "
                            "scorer (use 1/0, true/false or toxic/non-toxic)")
        out.append(b)
    return out


# ---- statistics ------------------------------------------------------------------------------


def _wilson(k: int, n: int, confidence: float = 0.95) -> list[float] | None:
    if n == 0:
        return None
    from scipy.stats import binomtest

    ci = binomtest(k, n).proportion_ci(confidence_level=confidence, method="wilson")
    return [round(float(ci.low), 4), round(float(ci.high), 4)]


def _r(x: float | None) -> float | None:
    return None if x is None or not math.isfinite(x) else round(float(x), 4)


def _interval(values: list[float]) -> list[float] | None:
    import numpy as np

    vals = np.asarray([v for v in values if math.isfinite(v)], dtype=float)
    if len(vals) == 0:
        return None
    lo, hi = np.percentile(vals, [2.5, 97.5])
    return [round(float(lo), 4), round(float(hi), 4)]


def _kappa(y: Any, p: Any, n_classes: int) -> float:
    from sklearn.metrics import cohen_kappa_score

    if len(set(y.tolist()) | set(p.tolist())) < 2:
        return float("nan")  # kappa is undefined when a single class is present on both sides
    return float(cohen_kappa_score(y, p, labels=list(range(n_classes))))


def agreement_report(truth: list[str], pred: list[str], classes: list[str], scores: list[float] | None = None,
                     resamples: int = 1000, seed: int = 0) -> dict[str, Any]:
    """Agreement, per-class precision/recall, confusion, kappa (and AUROC over `scores`) with bootstrap 95% intervals.

    `truth`/`pred` are class names from `classes`; `scores` (continuous scorers)
    are ranked against truth == classes[0] (the positive class).
    """
    import numpy as np
    from sklearn.metrics import confusion_matrix, roc_auc_score

    k = len(classes)
    index = {c: i for i, c in enumerate(classes)}
    y = np.asarray([index[c] for c in truth], dtype=np.int64)
    p = np.asarray([index[c] for c in pred], dtype=np.int64)
    n = len(y)
    s = None if scores is None else np.asarray(scores, dtype=float)

    def point(idx: Any) -> dict[str, Any]:
        yy, pp = y[idx], p[idx]
        cm = np.bincount(yy * k + pp, minlength=k * k).reshape(k, k)
        tp = np.diag(cm).astype(float)
        with np.errstate(invalid="ignore", divide="ignore"):
            prec = tp / cm.sum(axis=0)
            rec = tp / cm.sum(axis=1)
        out: dict[str, Any] = {"agreement": float(tp.sum() / len(yy)), "kappa": _kappa(yy, pp, k), "precision": prec, "recall": rec}
        if s is not None:
            pos = yy == 0
            out["auroc"] = float(roc_auc_score(pos, s[idx])) if 0 < pos.sum() < len(yy) else float("nan")
        return out

    full = point(np.arange(n))
    rng = np.random.default_rng(seed)
    boots = [point(rng.integers(0, n, n)) for _ in range(resamples)] if n else []
    cm = confusion_matrix(y, p, labels=list(range(k)))

    per_class = {}
    for i, c in enumerate(classes):
        col, row = int(cm[:, i].sum()), int(cm[i, :].sum())
        per_class[c] = {
            "support": row,
            "predicted": col,
            "precision": {"value": _r(full["precision"][i]), "ci95": _interval([b["precision"][i] for b in boots]),
                          "wilson95": _wilson(int(cm[i, i]), col)},
            "recall": {"value": _r(full["recall"][i]), "ci95": _interval([b["recall"][i] for b in boots]),
                       "wilson95": _wilson(int(cm[i, i]), row)},
        }
    rep: dict[str, Any] = {
        "n": n,
        "classes": classes,
        "agreement": {"value": _r(full["agreement"]), "ci95": _interval([b["agreement"] for b in boots]),
                      "wilson95": _wilson(int(np.trace(cm)), n)},
        "cohen_kappa": {"value": _r(full["kappa"]), "ci95": _interval([b["kappa"] for b in boots])},
        "per_class": per_class,
        "confusion": {"rows": "human label", "columns": "scorer", "labels": classes, "matrix": cm.tolist()},
    }
    if s is not None:
        rep["auroc"] = {"value": _r(full["auroc"]), "ci95": _interval([b["auroc"] for b in boots]), "positive_class": classes[0]}
    return rep


# ---- the command -------------------------------------------------------------------------------


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _scorer_version(cls: Any) -> str:
    """The scorer's own `version` when it has one, else its distribution's version."""
    own = getattr(cls, "version", None)
    if own:
        return str(own)
    from importlib.metadata import PackageNotFoundError, packages_distributions, version

    top = cls.__module__.split(".")[0]
    for dist in packages_distributions().get(top, [top]):
        try:
            return f"{dist} {version(dist)}"
        except PackageNotFoundError:
            continue
    return "unknown"


def validate_scorer(name: str, labels_path: Path, options: dict[str, Any] | None = None, *, text_field: str = "text",
                    label_field: str = "label", prompt_field: str = "prompt", score_name: str | None = None,
                    threshold: float = 0.5, negative_class: str | None = None, resamples: int = 1000, seed: int = 0,
                    device: str = "cpu", batch_size: int = 1024) -> dict[str, Any]:
    """Score `labels_path` with scorer `name` and compare with its labels; the report as a JSON-ready dict.

    Raises UserError (exit 2) for an unknown scorer or a bad row, before the scorer loads.
    """
    from tunegate.core import plugins

    options = dict(options or {})
    cls = plugins.load("scorers", name)
    rows = read_labels(labels_path, text_field, label_field, prompt_field)
    declared = getattr(cls, "classes", None)
    declared = tuple(declared) if declared else None
    is_binary = [_binary_label(r.label) is not None for r in rows]
    binary_labels = all(is_binary)
    if declared is None and any(is_binary) and not binary_labels:
        # a mix of 0/1-style and other labels: name the first row that breaks the first row's kind
        bad = next(r for r, b in zip(rows, is_binary, strict=True) if b != is_binary[0])
        raise UserError(f"{labels_path}: line {bad.line}: field '{label_field}': {bad.label!r} mixes "
                        f"{'class names with binary labels' if is_binary[0] else 'binary labels with class names'}; "
                        "use 1/0 (continuous scorers) or class names (categorical scorers) throughout")
    continuous = declared is None and binary_labels
    if not 0.0 < threshold < 1.0 and continuous:
        raise UserError(f"--threshold must be in (0, 1), got {threshold}")
    truth = (_continuous_labels(labels_path, rows, label_field) if continuous
             else _categorical_labels(labels_path, rows, label_field, declared))
    if negative_class is not None and not continuous and negative_class not in set(truth) | set(declared or ()):
        raise UserError(f"--negative-class {negative_class!r} is not a label in {labels_path}")

    scorer = cls(**options)
    outputs = tuple(getattr(scorer, "outputs", ()) or (name,))
    wanted = score_name or outputs[0]
    if wanted not in outputs:
        raise UserError(f"scorer {name} has no score {wanted!r} (it produces {', '.join(outputs)})")
    texts = [r.text for r in rows]
    prompts: list[str | None] = [r.prompt for r in rows]
    results: list[Any] = []
    for start in range(0, len(rows), batch_size):
        results += scorer.score_texts_safe(texts[start:start + batch_size], prompts[start:start + batch_size], device=device)

    ok_truth: list[str] = []
    pred: list[str] = []
    values: list[float] = []
    errors: list[dict[str, Any]] = []
    for row, t, scores in zip(rows, truth, results, strict=True):
        sc = next((s for s in scores if s.name == wanted), None)
        if sc is None or not sc.ok:
            errors.append({"line": row.line, "error": (sc.error if sc is not None else f"no score {wanted!r}")})
            continue
        if continuous:
            assert sc.value is not None
            values.append(float(sc.value))
            pred.append(POS_CLASS if sc.value >= threshold else NEG_CLASS)
        else:
            lab = sc.details.get("label")
            if not isinstance(lab, str):
                raise UserError(f"scorer {name} gives no class label (details['label']) for its score {wanted!r}; "
                                f"label {labels_path} with 1/0 (continuous scorer) instead of class names")
            pred.append(lab)
        ok_truth.append(t)

    if continuous:
        classes = [POS_CLASS, NEG_CLASS]
    else:
        seen = list(declared or ())
        for c in ok_truth + pred:
            if c not in seen:
                seen.append(c)
        classes = seen
    report: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "kind": KIND,
        "scorer": name,
        "score": wanted,
        "options": options,
        "scorer_version": _scorer_version(cls),
        "scorer_class": f"{cls.__module__}.{cls.__qualname__}",
        "labels_file": {"path": str(labels_path), "sha256": _sha256(labels_path), "text_field": text_field,
                        "label_field": label_field},
        "mode": "continuous" if continuous else "categorical",
        "n": len(rows),
        "scored": len(ok_truth),
        "errored": len(errors),
        "complete": not errors,
        "errors": errors[:20],
        "bootstrap": {"resamples": resamples, "seed": seed, "interval": "percentile 95%, resampling labelled rows"},
    }
    if continuous:
        report["threshold"] = threshold
        report["label_mapping"] = {POS_CLASS: sorted(POSITIVE), NEG_CLASS: sorted(NEGATIVE)}
    if ok_truth:
        report.update(agreement_report(ok_truth, pred, classes, values if continuous else None, resamples, seed))
        report["n"] = len(rows)
        if negative_class is not None and not continuous:
            pos_name = f"not {negative_class}"
            bt = [negative_class if c == negative_class else pos_name for c in ok_truth]
            bp = [negative_class if c == negative_class else pos_name for c in pred]
            b = agreement_report(bt, bp, [pos_name, negative_class], None, resamples, seed)
            keep = ("agreement", "cohen_kappa", "per_class", "confusion")
            report["binary"] = {"negative_class": negative_class, **{k: b[k] for k in keep}}
    return report


def format_report(rep: dict[str, Any]) -> str:
    """The human-readable summary `tunegate validate-scorer` prints."""

    def fmt(m: dict[str, Any] | None) -> str:
        if not m or m.get("value") is None:
            return "n/a"
        ci, note = m.get("ci95"), ""
        if ci and ci[0] == ci[1] and m.get("wilson95"):  # a zero-width bootstrap interval is not certainty
            ci, note = m["wilson95"], " Wilson"
        return f"{m['value']:.3f}" + (f" [{ci[0]:.3f}, {ci[1]:.3f}]{note}" if ci else "")

    lines = [f"scorer {rep['scorer']} ({rep['scorer_version']}) on {rep['labels_file']['path']}: "
             f"{rep['scored']} of {rep['n']} row(s) scored, {rep['mode']}"
             + (f", threshold {rep['threshold']}" if "threshold" in rep else "")]
    if "agreement" not in rep:
        lines.append("no row could be scored")
        return "\n".join(lines)
    lines.append(f"agreement     {fmt(rep['agreement'])}")
    lines.append(f"Cohen's kappa {fmt(rep['cohen_kappa'])}")
    if "auroc" in rep:
        lines.append(f"AUROC         {fmt(rep['auroc'])}")
    if "binary" in rep:
        b = rep["binary"]
        lines.append(f"binary (not {b['negative_class']} vs {b['negative_class']}): agreement {fmt(b['agreement'])}, "
                     f"kappa {fmt(b['cohen_kappa'])}")
    width = max(len(c) for c in rep["classes"])
    lines.append(f"{'class':<{width}}  support  precision             recall")
    for c, m in rep["per_class"].items():
        lines.append(f"{c:<{width}}  {m['support']:>7}  {fmt(m['precision']):<20}  {fmt(m['recall'])}")
    labels = rep["confusion"]["labels"]
    lines.append("confusion (rows: human label, columns: scorer)")
    lines.append(" " * (width + 2) + "  ".join(f"{c:>{max(5, len(c))}}" for c in labels))
    for c, row in zip(labels, rep["confusion"]["matrix"], strict=True):
        lines.append(f"{c:<{width}}  " + "  ".join(f"{v:>{max(5, len(lab))}}" for v, lab in zip(row, labels, strict=True)))
    if rep["errored"]:
        lines.append(f"{rep['errored']} row(s) could not be scored (first: line {rep['errors'][0]['line']}: {rep['errors'][0]['error']})")
    return "\n".join(lines)


def run_validation(name: str, labels_path: Path, options: dict[str, Any], out: Path | None, **kwargs: Any) -> dict[str, Any]:
    """validate_scorer + write `out` (atomically); IncompleteError (exit 3) after writing when rows errored."""
    import json

    from tunegate.core.io import atomic_write_text

    rep = validate_scorer(name, labels_path, options, **kwargs)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out, json.dumps(rep, indent=1, sort_keys=False) + "\n")
    return rep


def raise_if_incomplete(rep: dict[str, Any]) -> None:
    if not rep["complete"]:
        raise IncompleteError(f"scorer {rep['scorer']}: {rep['errored']} of {rep['n']} labelled row(s) could not be scored; "
                              "the figures cover the scored rows only")
