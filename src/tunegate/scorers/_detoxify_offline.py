"""Load a detoxify checkpoint with no network, from a local `.ckpt` and a local base-model folder.

detoxify's own loader always reads the base model's *config* by the name
stored in the checkpoint (`bert-base-uncased`, `roberta-base`,
`xlm-roberta-base`, `albert-base-v2`), even when `huggingface_config_path`
is given, so with `HF_HUB_OFFLINE=1` and an empty Hugging Face cache it fails
although every file is on disk. This loader does what detoxify's
`load_checkpoint` does (same checkpoint format, same class-name mapping) but
takes the config and the tokenizer from the local folder only.

The checkpoint is a torch pickle: the caller must have checked that the user
allowed it (`allow_pickle`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tunegate.core.errors import UserError

#: detoxify's renaming of the Jigsaw class names (detoxify.detoxify.load_checkpoint)
CLASS_RENAMES = {"toxic": "toxicity", "identity_hate": "identity_attack", "severe_toxic": "severe_toxicity"}


def load_local_detoxify(checkpoint: str | Path, config_folder: str | Path, device: str = "cpu") -> tuple[Any, Any, list[str]]:
    """(model, tokenizer, class names) from a detoxify `.ckpt` and a folder with the base model's config + tokenizer."""
    import torch
    import transformers

    ckpt, folder = Path(checkpoint), Path(config_folder)
    if not (folder / "config.json").is_file():
        raise UserError(f"scorer detoxify: option huggingface_config_path: {folder} has no config.json "
                        "(save the base model's config and tokenizer there, see docs/safety.md)")
    loaded = torch.load(ckpt, map_location=device, weights_only=False)  # a pickle: allowed by the caller
    try:
        args = loaded["config"]["arch"]["args"]
        classes = list(loaded["config"]["dataset"]["args"]["classes"])
        state_dict = loaded["state_dict"]
    except (KeyError, TypeError):
        raise UserError(f"scorer detoxify: {ckpt} is not a detoxify checkpoint (it needs config.arch.args, "
                        "config.dataset.args.classes and state_dict)") from None
    model_class = getattr(transformers, str(args["model_name"]), None)
    tokenizer_class = getattr(transformers, str(args["tokenizer_name"]), None)
    if model_class is None or tokenizer_class is None:
        raise UserError(f"scorer detoxify: {ckpt}: unknown model or tokenizer class "
                        f"{args.get('model_name')!r} / {args.get('tokenizer_name')!r}")
    config = model_class.config_class.from_pretrained(str(folder), num_labels=int(args["num_classes"]), local_files_only=True)
    model = model_class.from_pretrained(None, config=config, state_dict=state_dict, local_files_only=True)
    tokenizer = tokenizer_class.from_pretrained(str(folder), local_files_only=True)
    return model.to(device), tokenizer, [CLASS_RENAMES.get(c, c) for c in classes]
