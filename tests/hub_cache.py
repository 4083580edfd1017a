"""Stand-ins for Hub datasets in the local datasets cache, for tests that run offline.

A dataset is left exactly where an earlier online `load_dataset(repo, config)`
leaves it (`HF_DATASETS_CACHE/<owner>___<name>/<config>/0.0.0/<commit>/`), built
by datasets' own json builder; with offline mode on, `datasets` (and so
lm-evaluation-harness, which loads through it) resolves the Hub id from there.
That is what a user offline-with-cache gets.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

SHA = "0123456789abcdef0123456789abcdef01234567"


def cache_hub_dataset(cache: Path, repo: str, splits: Mapping[str, list[dict[str, Any]]], *, config: str = "default",
                      commit: str = SHA) -> None:
    """Leave `repo` (config `config`) at `commit` in the datasets cache `cache`, one split per entry of `splits`."""
    from datasets.packaged_modules.json.json import Json

    owner, name = repo.split("/")
    src = cache.parent / f"src-{owner}-{name}-{config}-{commit[:6]}"
    src.mkdir(parents=True)
    files = {}
    for split, rows in splits.items():
        (src / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        files[split] = str(src / f"{split}.jsonl")
    build = cache.parent / f"build-{owner}-{name}-{config}"
    Json(cache_dir=str(build), dataset_name=name, hash=commit, config_name=config, config_id=config,
         data_files=files).download_and_prepare()
    target = cache / f"{owner}___{name}" / config / "0.0.0"
    target.mkdir(parents=True, exist_ok=True)
    shutil.move(str(build / name / config / "0.0.0" / commit), str(target / commit))
    shutil.rmtree(build)
