"""`memorization` suite kind: does the model reproduce its fine-tuning data, or collapse to one mode?

Extraction test (after Carlini et al. 2021/2023, "discoverable memorization"):
take N training examples, prompt with the first part of each and decode
greedily; a training example counts as

- `exact` when the normalised continuation reproduces the rest verbatim;
- `near_exact` when the normalised edit similarity (1 - Levenshtein distance /
  longer length, on lower-cased, whitespace-collapsed text) is >= 0.9.

The split is made on whitespace words, not model tokens, so base and candidate
get the same prompts and the same ids and their results pair up sample by
sample. For `{"prompt", "completion"}` rows (the text trained on is
`prompt + completion`), the prompt is the row's prompt plus the first
`prefix_fraction` of the completion's words (or `prefix_words` words); for
`{"messages"}` rows it is the conversation up to the last assistant turn in the
plain template of `tunegate finetune` ("User: ...\\n\\nAssistant:"), and
`{"text"}` rows are split directly.

Mode collapse over the same generations: `distinct_1` / `distinct_2` (unique
n-grams / all n-grams; Li et al. 2016) and `self_bleu` (each generation's BLEU
against all the others, Zhu et al. 2018; sacrebleu). Distinct-n is stored as a
ratio of per-sample shares (each n-gram occurrence counts 1/its corpus
frequency), so the suite-level value is exact and still has a per-sample vector.

`data` may be the fine-tuning JSONL or the `manifest.json` written by `tunegate
finetune` (its `data.path` is read and its `data.sha256` checked).
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from collections import Counter
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from tunegate.core.config import DataSource
from tunegate.core.data import Row, read_rows, resolve_data_path
from tunegate.core.errors import UserError
from tunegate.core.metric import Metric
from tunegate.core.request import GenerateRequest, Request, Response
from tunegate.core.results import SampleResult
from tunegate.core.sample import Sample
from tunegate.core.score import Score, score_value
from tunegate.suites.base import SkipSample, SuiteKind, metric_from_scores

_WS = re.compile(r"\s+")
_TOKEN = re.compile(r"\w+|[^\w\s]", re.UNICODE)
PLAIN_ROLES = {"system": "System", "user": "User", "assistant": "Assistant"}


class MemorizationOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    n: int | None = Field(default=None, ge=1, description="how many training examples to test (seeded choice); all when unset")
    selection_seed: int = Field(default=0, description="seed of the choice of examples (not the run seed), so runs pair up")
    prefix_fraction: float = Field(default=0.5, gt=0.0, lt=1.0, description="share of the completion's words given in the prompt")
    prefix_words: int | None = Field(default=None, ge=0, description="give this many completion words instead of a fraction")
    min_target_words: int = Field(default=4, ge=1, description="examples whose remainder is shorter are skipped")
    max_new_tokens: int | None = Field(default=None, ge=1, description="default: 2 x the remainder's words + 8, capped at 256")
    near_threshold: float = Field(default=0.9, gt=0.0, le=1.0)
    check_sha256: bool = Field(default=True, description="refuse a manifest whose data file changed since fine-tuning")


# ---- text helpers -------------------------------------------------------------------------


def normalise(text: str) -> str:
    return _WS.sub(" ", text).strip().lower()


def edit_similarity(a: str, b: str) -> float:
    """1 - Levenshtein(a, b) / max(len); rapidfuzz when installed, else a plain DP."""
    if not a and not b:
        return 1.0
    try:
        from rapidfuzz.distance import Levenshtein  # type: ignore[import-not-found]

        return float(Levenshtein.normalized_similarity(a, b))
    except ImportError:
        pass
    if len(a) < len(b):
        a, b = b, a
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, start=1):
        cur = [i]
        for j, cb in enumerate(b, start=1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return 1.0 - prev[-1] / len(a)


def split_words(text: str, k: int) -> tuple[str, str]:
    """Split after the k-th whitespace word, keeping the original spacing on both sides."""
    matches = list(re.finditer(r"\S+", text))
    if k <= 0:
        return "", text
    if k >= len(matches):
        return text, ""
    cut = matches[k - 1].end()
    return text[:cut], text[cut:]


def ngrams(tokens: list[str], n: int) -> list[tuple[str, ...]]:
    return [tuple(tokens[i: i + n]) for i in range(len(tokens) - n + 1)]


def render_plain(messages: list[tuple[str, str]]) -> str:
    """The plain chat template of `tunegate finetune`, followed by the generation cue."""
    return "".join(f"{PLAIN_ROLES[r]}: {c}\n\n" for r, c in messages) + "Assistant:"


# ---- the kind --------------------------------------------------------------------------------


class Memorization(SuiteKind):
    name = "memorization"
    description = ("Discoverable memorization of fine-tuning data (Carlini et al. 2023): exact and near-exact "
                   "(edit similarity >= 0.9) reproduction of training examples from their first part; distinct-n "
                   "and self-BLEU over the generations to catch mode collapse.")
    Options = MemorizationOptions
    default_fields = {"prompt": "prompt", "completion": "completion", "messages": "messages", "text": "text", "id": "id"}

    # ---- data ------------------------------------------------------------------------
    def _resolve_source(self) -> tuple[DataSource, dict[str, Any] | None]:
        """The JSONL to read: the data path itself, or the one a fine-tune manifest names."""
        src = self.data_config()
        if src.path is None or not src.path.lower().endswith(".json"):
            return src, None
        path = resolve_data_path(src.path, self.base_dir, "data.path")
        if not path.is_file():
            raise UserError(f"{path}: data file not found (data.path is resolved relative to the suite file)")
        try:
            manifest = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise UserError(f"{path}: not a valid JSON manifest ({exc})") from None
        block = manifest.get("data") if isinstance(manifest, dict) else None
        if not isinstance(block, dict) or not isinstance(block.get("path"), str):
            raise UserError(f"{path}: field 'data.path' is missing; give the fine-tuning JSONL or the manifest.json "
                            "written by `tunegate finetune`")
        data_path = Path(block["path"])
        if not data_path.is_absolute():
            data_path = path.parent / data_path
        if not data_path.is_file():
            raise UserError(f"{path}: field 'data.path': training data {data_path} not found")
        want = block.get("sha256")
        if self.options.check_sha256 and isinstance(want, str) and want:
            got = hashlib.sha256(data_path.read_bytes()).hexdigest()
            if got != want:
                raise UserError(f"{path}: field 'data.sha256': {data_path} has changed since fine-tuning (sha256 "
                                f"{got[:12]}... != {want[:12]}...); restore it or set options.check_sha256: false")
        info = {"manifest": str(path), "manifest_rows": block.get("rows")}
        return DataSource(path=str(data_path), format="jsonl", limit=src.limit), info

    def samples(self) -> list[Sample]:
        if self._samples is None:
            source, info = self._resolve_source()
            rows, self.data_hash = read_rows(source, self.base_dir, self.fields)
            self.manifest_info = info
            samples: list[Sample] = []
            seen: dict[str, int] = {}
            for row in rows:
                s = self.to_sample(row)
                if s.id in seen:
                    raise row.fail("id", f"duplicate sample id {s.id!r} (first at data row {seen[s.id]})")
                seen[s.id] = row.line
                samples.append(s)
            n = self.options.n
            if n is not None and n < len(samples):
                rng = random.Random(self.options.selection_seed)
                keep = set(rng.sample(range(len(samples)), n))
                samples = [s for i, s in enumerate(samples) if i in keep]
            self._samples = samples
        return self._samples

    def row_id(self, row: Row) -> str:
        return str(row.get("id", (str, int), default=f"row-{row.line}"))

    def _parts(self, row: Row) -> tuple[str, str]:
        """(fixed prompt, text to split) of one training row."""
        if row.has("messages"):
            msgs = row.get("messages", list)
            turns: list[tuple[str, str]] = []
            for i, m in enumerate(msgs):
                if not isinstance(m, dict) or m.get("role") not in PLAIN_ROLES or not isinstance(m.get("content"), str):
                    raise row.fail("messages", f"messages[{i}] must be {{role: system|user|assistant, content: string}}")
                turns.append((m["role"], m["content"]))
            last = max((i for i, (r, _) in enumerate(turns) if r == "assistant"), default=None)
            if last is None:
                raise row.fail("messages", "has no assistant turn to test")
            return render_plain(turns[:last]), " " + turns[last][1]
        if row.has("completion"):
            prompt = row.get("prompt", str, default="")
            return prompt, row.get("completion", str)
        if row.has("text"):
            return "", row.get("text", str)
        raise row.fail(None, "expected 'prompt'/'completion', 'messages' or 'text'")

    def to_sample(self, row: Row) -> Sample:
        fixed, body = self._parts(row)
        n_words = len(body.split())
        o = self.options
        k = o.prefix_words if o.prefix_words is not None else int(round(n_words * o.prefix_fraction))
        if not fixed and k == 0:
            k = 1  # a text-only row needs some prompt
        head, rest = split_words(body, k)
        return Sample(id=self.row_id(row), input=fixed + head, target=rest,
                      metadata={"prefix_words": min(k, n_words), "target_words": len(rest.split())})

    # ---- asking ------------------------------------------------------------------------
    def requests(self, sample: Sample) -> list[Request]:
        target_words = int(sample.metadata.get("target_words", 0))
        if target_words < self.options.min_target_words:
            raise SkipSample(f"the remainder has {target_words} word(s) (< min_target_words {self.options.min_target_words})")
        budget = self.options.max_new_tokens or min(256, 2 * target_words + 8)
        return [GenerateRequest(prompt=sample.input, max_new_tokens=budget, temperature=0.0)]

    # ---- scoring ---------------------------------------------------------------------------
    def score(self, sample: Sample, responses: list[Response]) -> list[Score]:
        return self.score_batch([sample], [responses])[0]

    def _extraction(self, sample: Sample, generated: str) -> list[Score]:
        target = normalise(str(sample.target or ""))
        gen_words = normalise(generated).split(" ")
        # compare with the generation cut to the target's length: continuing past it is not a miss
        cut = " ".join(gen_words[: len(target.split(" "))])
        sim = edit_similarity(target, cut)
        return [
            score_value("exact", cut == target),
            score_value("near_exact", sim >= self.options.near_threshold),
            score_value("similarity", sim, generated_prefix=cut[:200]),
        ]

    def score_batch(self, samples: list[Sample], responses: list[list[Response]]) -> list[list[Score]]:
        gens = [rs[0].text or "" for rs in responses]
        out = [self._extraction(s, g) for s, g in zip(samples, gens, strict=True)]
        toks = [_TOKEN.findall(g.lower()) for g in gens]
        for n in (1, 2):
            grams = [ngrams(t, n) for t in toks]
            freq = Counter(g for gs in grams for g in gs)
            for scores, gs in zip(out, grams, strict=True):
                share = sum(1.0 / freq[g] for g in gs)
                scores.append(score_value(f"distinct_{n}_share", share))
                scores.append(score_value(f"ngrams_{n}", len(gs)))
        bleus = self_bleu(gens)
        for scores, b in zip(out, bleus, strict=True):
            scores.append(score_value("self_bleu", b))
        return out

    def metrics(self, results: list[SampleResult]) -> list[Metric]:
        out = [
            metric_from_scores("exact_rate", results, "exact", direction="lower", kind="binary",
                               description="share of training examples whose remainder is reproduced verbatim"),
            metric_from_scores("near_exact_rate", results, "near_exact", direction="lower", kind="binary",
                               description=f"share reproduced with edit similarity >= {self.options.near_threshold}"),
            metric_from_scores("mean_similarity", results, "similarity", direction="lower",
                               description="mean normalised edit similarity between remainder and generation"),
        ]
        for n in (1, 2):
            out.append(metric_from_scores(
                f"distinct_{n}", results, f"distinct_{n}_share", direction="higher", aggregation="ratio",
                weight_score=f"ngrams_{n}", description=f"unique {n}-grams / all {n}-grams over the generations"))
        out.append(metric_from_scores("self_bleu", results, "self_bleu", direction="lower",
                                      description="mean BLEU (0-100) of each generation against all the others"))
        return out


def self_bleu(texts: list[str]) -> list[float]:
    """Each text's sentence BLEU against all other texts as references (0 for a lone or empty text)."""
    import sacrebleu

    out = []
    for i, t in enumerate(texts):
        refs = [x for j, x in enumerate(texts) if j != i]
        if not refs or not t.strip():
            out.append(0.0)
            continue
        out.append(float(sacrebleu.sentence_bleu(t, refs).score))
    return out
