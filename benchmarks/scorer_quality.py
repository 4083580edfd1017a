"""How far can the safety scorers be trusted? Every labelled set we have, every scorer, one table.

    python benchmarks/scorer_quality.py [--out benchmarks/results/scorer_quality.json] [--skip-large] [--resamples N]

Each (scorer, labelled set) pair goes through `tunegate.pipeline.validate_scorer.validate_scorer`, the code behind
`tunegate validate-scorer`: agreement, Cohen's kappa, AUROC for continuous scorers, with bootstrap 95%
intervals. Each set is listed with its *role*: whether the scorer was trained or tuned on it (a development
figure, optimistic) or never saw it (a held-out figure). Read the held-out rows.

Refusal (`refusal`, its `method: rules`, and the usual starts-with phrase baseline): the sets of
benchmarks/data and tests/data (docs/safety.md says how each was written and split). Rows labelled
`off_topic` (the independent sets B and C) are not one of the scorer's three classes; they are left out of
the agreement and counted in the on-topic check instead.

Toxicity (`profanity-check`, `embedding-toxicity`): the 60 texts of benchmarks/data/toxicity_check.jsonl,
the team's tests/data/toxicity_labelled.jsonl, and, when ../shared/datasets is present, the held-out test
splits of ToxiGen and Davidson as `benchmarks/train_embedding_toxicity.py` defines them (never copied into
the project). profanity-check was trained on Davidson, so its Davidson figure is in-sample.

The judge scorer is not measured here: it needs a judge model (docs/judge.md); measure it with
`tunegate validate-scorer judge --option judge=... --labels FILE`.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "benchmarks" / "data"
SHARED = ROOT.parent / "shared" / "datasets"

Row = dict[str, Any]


@dataclass(frozen=True)
class LabelledSet:
    name: str
    task: str  # "refusal" or "toxicity"
    role: str
    rows: Callable[[], list[Row]]
    large: bool = False


def _jsonl(path: Path) -> list[Row]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _refusal_rows(path: Path, split: str | None = None) -> Callable[[], list[Row]]:
    def load() -> list[Row]:
        return [{"text": r["response"], "label": r["label"], "prompt": r.get("prompt")} for r in _jsonl(path)
                if (split is None or r.get("split") == split)]
    return load


def _toxicity_rows(path: Path, label: str) -> Callable[[], list[Row]]:
    return lambda: [{"text": r["text"], "label": r[label]} for r in _jsonl(path)]


def _trainer() -> Any:
    spec = importlib.util.spec_from_file_location("train_embedding_toxicity", ROOT / "benchmarks" / "train_embedding_toxicity.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    sys.modules["train_embedding_toxicity"] = mod
    spec.loader.exec_module(mod)
    return mod


def _shared_test_split(which: str) -> Callable[[], list[Row]]:
    def load() -> list[Row]:
        t = _trainer()
        rows = t.load_toxigen(SHARED) if which == "toxigen" else t.load_davidson(SHARED)
        return [{"text": text, "label": y} for text, y in rows if t.split_of(text) == "test"]
    return load


SETS = [
    LabelledSet("refusal_heldout_c (independent writer)", "refusal", "held out: never trained or tuned on; scored once",
                _refusal_rows(DATA / "refusal_heldout_c.jsonl")),
    LabelledSet("refusal_train split heldout", "refusal", "held out (same writer as the training rows)",
                _refusal_rows(DATA / "refusal_train.jsonl", "heldout")),
    LabelledSet("tests/data/refusal_labelled", "refusal", "never trained on; the rules were tuned on it",
                _refusal_rows(ROOT / "tests" / "data" / "refusal_labelled.jsonl")),
    LabelledSet("refusal_heldout_b (independent writer)", "refusal",
                "development: held out for round 1, then trained on (round 2)", _refusal_rows(DATA / "refusal_heldout_b.jsonl")),
    LabelledSet("refusal_dev", "refusal", "development: rules tuned on it, trained on (round 2)",
                _refusal_rows(DATA / "refusal_dev.jsonl")),
    LabelledSet("refusal_train split train", "refusal", "development: trained on", _refusal_rows(DATA / "refusal_train.jsonl", "train")),
    LabelledSet("toxicity_check (60 team texts)", "toxicity", "held out: never trained or tuned on",
                _toxicity_rows(DATA / "toxicity_check.jsonl", "toxic")),
    LabelledSet("tests/data/toxicity_labelled", "toxicity", "never trained on",
                _toxicity_rows(ROOT / "tests" / "data" / "toxicity_labelled.jsonl", "label")),
    LabelledSet("ToxiGen test split", "toxicity", "held out for embedding-toxicity (scored twice, docs/safety.md)",
                _shared_test_split("toxigen")),
    LabelledSet("Davidson test split", "toxicity", "held out for embedding-toxicity; in-sample for profanity-check",
                _shared_test_split("davidson"), large=True),
]

SCORERS: dict[str, list[tuple[str, dict[str, Any]]]] = {
    "refusal": [("refusal", {}), ("refusal", {"method": "rules"})],
    "toxicity": [("embedding-toxicity", {}), ("profanity-check", {})],
}


def _figure(rep: dict[str, Any], key: str) -> dict[str, Any] | None:
    m = rep.get(key)
    return {"value": m["value"], "ci95": m.get("ci95")} if isinstance(m, dict) and m.get("value") is not None else None


def measure(s: LabelledSet, rows: list[Row], scorer: str, options: dict[str, Any], resamples: int) -> dict[str, Any]:
    from tunegate.pipeline.validate_scorer import validate_scorer

    kept = [r for r in rows if r["label"] != "off_topic"]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "labels.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in kept), encoding="utf-8")
        t0 = time.perf_counter()
        rep = validate_scorer(scorer, path, options, negative_class="complied" if s.task == "refusal" else None,
                              resamples=resamples)
        seconds = time.perf_counter() - t0
    out: dict[str, Any] = {"set": s.name, "role": s.role, "scorer": scorer, "options": options, "n": rep["scored"],
                           "errored": rep["errored"], "agreement": _figure(rep, "agreement"),
                           "kappa": _figure(rep, "cohen_kappa"), "seconds": round(seconds, 1)}
    if "auroc" in rep:
        out["auroc"] = _figure(rep, "auroc")
    if "binary" in rep:
        out["binary_agreement"] = _figure(rep["binary"], "agreement")
    return out


def starts_with_baseline(s: LabelledSet, rows: list[Row]) -> dict[str, Any]:
    from tunegate.scorers.refusal import baseline_label

    kept = [r for r in rows if r["label"] != "off_topic"]
    got = [baseline_label(r["text"]) for r in kept]
    three = sum(g == r["label"] for g, r in zip(got, kept, strict=True)) / len(kept)
    binary = sum((g == "complied") == (r["label"] == "complied") for g, r in zip(got, kept, strict=True)) / len(kept)
    return {"set": s.name, "role": s.role, "scorer": "starts-with baseline", "options": {}, "n": len(kept),
            "agreement": {"value": round(three, 4), "ci95": None}, "binary_agreement": {"value": round(binary, 4), "ci95": None}}


def on_topic_check(s: LabelledSet, rows: list[Row]) -> dict[str, Any] | None:
    """Off-topic recall and the share of on-topic replies wrongly flagged, where the set labels off-topic rows."""
    from tunegate.core import plugins

    if not any(r["label"] == "off_topic" for r in rows):
        return None
    scorer = plugins.load("scorers", "refusal")()
    results = scorer.score_texts_safe([r["text"] for r in rows], [r.get("prompt") for r in rows], device="cpu")
    flagged = [any(sc.name == "on_topic" and sc.ok and sc.value == 0 for sc in scores) for scores in results]
    off = [f for f, r in zip(flagged, rows, strict=True) if r["label"] == "off_topic"]
    on = [f for f, r in zip(flagged, rows, strict=True) if r["label"] != "off_topic"]
    return {"set": s.name, "off_topic_caught": f"{sum(off)}/{len(off)}", "on_topic_flagged": f"{sum(on)}/{len(on)}"}


def _fmt(m: dict[str, Any] | None) -> str:
    if not m:
        return "-"
    ci = m.get("ci95")
    return f"{m['value']:.3f}" + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "scorer_quality.json")
    ap.add_argument("--skip-large", action="store_true", help="leave out the 4,893-tweet Davidson test split")
    ap.add_argument("--resamples", type=int, default=1000)
    args = ap.parse_args(argv)
    rows_out: list[dict[str, Any]] = []
    topic: list[dict[str, Any]] = []
    skipped: list[str] = []
    for s in SETS:
        if s.large and args.skip_large:
            skipped.append(f"{s.name}: --skip-large")
            continue
        try:
            rows = s.rows()
        except FileNotFoundError as exc:
            skipped.append(f"{s.name}: {exc.filename} not found")
            continue
        for scorer, options in SCORERS[s.task]:
            rows_out.append(measure(s, rows, scorer, options, args.resamples))
            print(json.dumps(rows_out[-1]), flush=True)
        if s.task == "refusal":
            rows_out.append(starts_with_baseline(s, rows))
            check = on_topic_check(s, rows)
            if check:
                topic.append(check)
    report = {"rows": rows_out, "on_topic": topic, "skipped": skipped}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    print("\n| set | role | scorer | n | agreement (3-class / at 0.5) | binary | AUROC |")
    print("|---|---|---|---|---|---|---|")
    for r in rows_out:
        name = r["scorer"] + (f" {json.dumps(r['options'])}" if r["options"] else "")
        print(f"| {r['set']} | {r['role']} | {name} | {r['n']} | {_fmt(r['agreement'])} | {_fmt(r.get('binary_agreement'))} "
              f"| {_fmt(r.get('auroc'))} |")
    for t in topic:
        print(f"on-topic check on {t['set']}: off-topic caught {t['off_topic_caught']}, on-topic flagged {t['on_topic_flagged']}")
    for line in skipped:
        print(f"skipped {line}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
