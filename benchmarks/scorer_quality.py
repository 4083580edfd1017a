"""How far can the safety scorers be trusted? Measure them against labelled data.

Toxicity scorers: the Davidson et al. (2017) tweets (`labeled_data.csv`: class 0
hate speech, 1 offensive, 2 neither; 0 and 1 count as toxic) go through the
same code path as `tunegate score` (`tunegate.score_file.score_file`), and the
script reports AUROC and accuracy / precision / recall at the 0.5 threshold.

A Davidson figure is an upper bound for profanity-check: alt-profanity-check
was trained on the Davidson data (its README says so), so it is in-sample.
The 60 hand-written texts in `benchmarks/data/toxicity_check.jsonl` are out of
sample for every scorer and split explicit, implicit (no profanity) and benign
look-alike texts, which is where lexical scorers differ.

Refusal scorer: agreement with the hand-labelled responses in
`tests/data/refusal_labelled.jsonl` (3-way and refused-or-partial vs complied),
next to the starts-with phrase baseline.

    python benchmarks/scorer_quality.py [--davidson PATH] [--scorer profanity-check] [--option k=v] [--limit N]

Prints one JSON object; the figures in docs/safety.md come from this script.
The Davidson file is not part of the project: it is read from
../shared/datasets (or --davidson) and never copied.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DAVIDSON = ROOT.parent / "shared" / "datasets" / "davidson_hate_offensive" / "labeled_data.csv"


def auroc(labels: list[int], scores: list[float]) -> float | None:
    """Area under the ROC curve via the Mann-Whitney U statistic (ties count half); None with one class only."""
    from scipy.stats import rankdata

    ranks = rankdata(scores)
    pos = sum(labels)
    neg = len(labels) - pos
    if pos == 0 or neg == 0:
        return None
    rank_sum = sum(r for r, y in zip(ranks, labels, strict=True) if y == 1)
    return float((rank_sum - pos * (pos + 1) / 2) / (pos * neg))


def _round(x: float | None) -> float | None:
    return None if x is None else round(x, 4)


def toxicity_quality(path: Path, scorer: str, options: dict[str, Any], limit: int | None, device: str) -> dict[str, Any]:
    from tunegate.score_file import score_file

    with path.open(encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh))
    if limit:
        rows = rows[:limit]
    with tempfile.TemporaryDirectory() as tmp:
        src, out = Path(tmp) / "in.jsonl", Path(tmp) / "out.jsonl"
        src.write_text("".join(json.dumps({"text": r["tweet"], "class": int(r["class"])}) + "\n" for r in rows),
                       encoding="utf-8")
        t0 = time.perf_counter()
        score_file(scorer, src, out, options, device=device)
        seconds = time.perf_counter() - t0
        scored = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    labels = [1 if r["class"] in (0, 1) else 0 for r in scored]
    probs = [float(r["toxicity"]) for r in scored]
    pred = [p >= 0.5 for p in probs]
    tp = sum(p and y for p, y in zip(pred, labels, strict=True))
    fp = sum(p and not y for p, y in zip(pred, labels, strict=True))
    fn = sum((not p) and y for p, y in zip(pred, labels, strict=True))
    hate = [(p, r["class"]) for p, r in zip(probs, scored, strict=True) if r["class"] in (0, 2)]
    return {
        "dataset": "davidson_hate_offensive (class 0/1 toxic, 2 not)",
        "scorer": scorer,
        "options": options,
        "n": len(scored),
        "positives": sum(labels),
        "auroc": _round(auroc(labels, probs)),
        "accuracy@0.5": round(sum(p == bool(y) for p, y in zip(pred, labels, strict=True)) / len(labels), 4),
        "precision@0.5": round(tp / (tp + fp), 4) if tp + fp else None,
        "recall@0.5": round(tp / (tp + fn), 4) if tp + fn else None,
        "majority_class_accuracy": round(max(sum(labels), len(labels) - sum(labels)) / len(labels), 4),
        "auroc_hate_vs_neither": _round(auroc([1 if c == 0 else 0 for _, c in hate], [p for p, _ in hate])),
        "seconds": round(seconds, 2),
    }


def check_set_quality(scorer: str, options: dict[str, Any], device: str) -> dict[str, Any]:
    """The 60 hand-written texts of benchmarks/data/toxicity_check.jsonl (out of sample for every scorer).

    15 explicit insults, 15 implicit / coded (no profanity), 15 plain benign, 15 benign
    look-alikes ("kill the process", "this bug is killing me").
    """
    from tunegate.score_file import score_file

    src = ROOT / "benchmarks" / "data" / "toxicity_check.jsonl"
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out.jsonl"
        score_file(scorer, src, out, options, device=device)
        scored = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    labels = [int(r["toxic"]) for r in scored]
    probs = [float(r["toxicity"]) for r in scored]
    by_kind = {}
    for kind in ("explicit", "implicit", "plain", "lookalike"):
        sel = [r for r in scored if r["kind"] == kind]
        flagged = sum(float(r["toxicity"]) >= 0.5 for r in sel)
        by_kind[kind] = {"n": len(sel), "flagged@0.5": flagged}
    return {
        "dataset": f"{src.relative_to(ROOT)} ({len(scored)} hand-written texts)",
        "auroc": _round(auroc(labels, probs)),
        "accuracy@0.5": round(sum((p >= 0.5) == bool(y) for p, y in zip(probs, labels, strict=True)) / len(labels), 4),
        "by_kind": by_kind,
    }


def refusal_quality() -> dict[str, Any]:
    from tunegate.scorers.refusal import analyse, baseline_label

    path = ROOT / "tests" / "data" / "refusal_labelled.jsonl"
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]

    def agree(sel: list[dict[str, Any]], fn: Any, binary: bool = False) -> float:
        if binary:
            return round(sum((fn(r["response"]) != "complied") == (r["label"] != "complied") for r in sel) / len(sel), 4)
        return round(sum(fn(r["response"]) == r["label"] for r in sel) / len(sel), 4)

    ours = lambda t: analyse(t).label  # noqa: E731
    held = [r for r in rows if int(r["id"].rsplit("-", 1)[1]) % 2 == 0]
    dev = [r for r in rows if int(r["id"].rsplit("-", 1)[1]) % 2 == 1]
    by_case = {}
    for case in sorted({r["case"] for r in rows}):
        sel = [r for r in rows if r["case"] == case]
        by_case[case] = {"n": len(sel), "scorer": agree(sel, ours), "baseline": agree(sel, baseline_label)}
    return {
        "dataset": f"{path.relative_to(ROOT)} ({len(rows)} hand-labelled responses)",
        "scorer_3way": agree(rows, ours), "scorer_3way_dev": agree(dev, ours), "scorer_3way_held_out": agree(held, ours),
        "scorer_binary": agree(rows, ours, True),
        "baseline_3way": agree(rows, baseline_label), "baseline_binary": agree(rows, baseline_label, True),
        "by_case": by_case,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--davidson", type=Path, default=DEFAULT_DAVIDSON)
    ap.add_argument("--scorer", default="profanity-check")
    ap.add_argument("--option", action="append", default=[], help="scorer option key=value")
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args(argv)
    import yaml

    options = {k: yaml.safe_load(v) for k, v in (o.split("=", 1) for o in args.option)}
    report: dict[str, Any] = {"refusal": refusal_quality()}
    report["toxicity_check_set"] = check_set_quality(args.scorer, options, args.device)
    if args.davidson.is_file():
        report["toxicity"] = toxicity_quality(args.davidson, args.scorer, options, args.limit, args.device)
    else:
        report["toxicity"] = f"skipped: {args.davidson} not found"
    json.dump(report, sys.stdout, indent=1)
    print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
