"""Tokenisation rules of the `hf` backend: the shared ones in `_tokens`, under the name its modules import.

The rules live in `tunegate.backends._tokens` so that the `vllm` backend uses
the very same functions (not a copy): both backends score the same token ids.
"""

from __future__ import annotations

from tunegate.backends._tokens import bos_id, encode, encode_pair, encode_prompt, left_truncate, wants_bos

__all__ = ["bos_id", "encode", "encode_pair", "encode_prompt", "left_truncate", "wants_bos"]
