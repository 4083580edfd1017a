"""`ModelSpec`: which model to serve, and how.

The name (hub id or path) is for people; identity is the `fingerprint`, a SHA-256
over the weight and tokenizer bytes computed by the backend once loaded
(see `tunegate.core.fingerprint`).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Dtype = Literal["auto", "float32", "bfloat16", "float16"]


class ModelSpec(BaseModel):
    """A model as the user names it.

    `trust_remote_code` and `allow_pickle` are per model and off by default:
    only safetensors are loaded unless the user opts in for this one model.
    `options` carries backend-specific settings (e.g. a mock script, an API base
    URL); secrets are never stored here, only the *name* of the env var.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str
    backend: str = "hf"
    label: str | None = None
    revision: str | None = None
    adapter: str | None = None
    dtype: Dtype = "auto"
    device: str | None = None
    chat_template: bool = False
    trust_remote_code: bool = False
    allow_pickle: bool = False
    max_length: int | None = Field(default=None, ge=8)
    batch_size: int = Field(default=32, ge=1, description="most rows in one forward pass")
    batch_tokens: int = Field(default=8192, ge=64, description="most (padded) tokens in one forward pass")
    options: dict[str, Any] = Field(default_factory=dict)

    @property
    def display_name(self) -> str:
        if self.label:
            return self.label
        return f"{self.model}+{self.adapter}" if self.adapter else self.model
