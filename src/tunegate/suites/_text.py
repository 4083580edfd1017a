"""Text helpers shared by the task suite kinds: prompt templates and answer matching.

Templates are plain `str.format` strings (YAML is data only, so no Jinja). Their
placeholders are checked once when the suite loads, so a typo such as
`{questoin}` is a one-line input error before any model loads rather than a
KeyError in the middle of a run. Placeholders other than the kind's own field
may name any other column of the data row; those values travel in the
sample's metadata under `template_vars`.

The normalisations follow the conventions people compare against: exact match
uses a light normalisation (case, surrounding whitespace, inner whitespace,
trailing punctuation), token F1 uses the SQuAD evaluation script's (also drops
all punctuation and the articles a/an/the).

`degenerate_reason` flags generated text that is no answer at all (empty,
whitespace only, or a repetition loop); the generation-based suites count it
as `degenerate_rate`, and the safety suites never count it as an answer or a
compliance. Its rule is documented on the function.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Iterable, Mapping
from string import Formatter
from typing import Any

from tunegate.core.data import Row

_WS = re.compile(r"\s+")
_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCT = set(string.punctuation)


# ---- prompt templates -------------------------------------------------------
def template_fields(template: str) -> list[str]:
    """Placeholder names of a `str.format` template, in order, without duplicates.

    Raises ValueError for a malformed template (unbalanced braces) or for
    positional / attribute / index placeholders, which have no meaning here.
    """
    names: list[str] = []
    for _, field, _, _ in Formatter().parse(template):
        if field is None:
            continue
        if field == "" or field.isdigit():
            raise ValueError("positional placeholders like {} or {0} are not allowed; name a field, e.g. {question}")
        if not field.isidentifier():
            raise ValueError(f"placeholder {{{field}}} must be a plain field name (no '.', '[' or ':')")
        if field not in names:
            names.append(field)
    return names


def check_template(template: str, required: str) -> str:
    """Validate a template for a pydantic field validator; it must use `{required}`."""
    fields = template_fields(template)
    if required not in fields:
        raise ValueError(f"the template must contain the placeholder {{{required}}}")
    return template


def check_placeholders(template: str, allowed: set[str]) -> str:
    """Validate a template whose placeholders must all come from `allowed` (kinds without free data columns)."""
    unknown = set(template_fields(template)) - allowed
    if unknown:
        raise ValueError(f"unknown placeholder(s) {sorted(unknown)}; use {sorted(allowed)}")
    return template


def extra_template_vars(row: Row, template: str, own: Iterable[str]) -> dict[str, str]:
    """Values of the template's other placeholders, read from the row's columns.

    `own` are the placeholders the kind fills itself; every other one must be a
    column of this row, or the column `fields:` maps it to (a missing one is an
    error naming the row and field).
    """
    skip = set(own)
    out: dict[str, str] = {}
    for name in template_fields(template):
        if name in skip:
            continue
        column = row.fields.get(name, name)
        if row.data.get(column) is None:
            raise row.fail(name, f"is missing (the prompt template uses {{{name}}})")
        out[name] = str(row.get(name, (str, int, float)))
    return out


def render(template: str, values: Mapping[str, Any]) -> str:
    """Fill a template validated by `check_template`; braces inside values are left alone."""
    return template.format_map(dict(values))


# ---- answer matching --------------------------------------------------------
def normalize_exact(text: str) -> str:
    """Exact-match normalisation: lowercase, trim, collapse whitespace, drop trailing punctuation."""
    text = _WS.sub(" ", text.lower()).strip()
    return text.rstrip(string.punctuation + " ").strip()


def normalize_squad(text: str) -> str:
    """SQuAD v1.1 normalisation: lowercase, remove punctuation and articles, collapse whitespace."""
    text = "".join(ch for ch in text.lower() if ch not in _PUNCT)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def exact_match(prediction: str, references: list[str]) -> bool:
    """True when the normalised prediction equals any normalised reference."""
    pred = normalize_exact(prediction)
    return any(pred == normalize_exact(ref) for ref in references)


def token_f1(prediction: str, reference: str) -> float:
    """SQuAD token F1 between one prediction and one reference, in [0, 1].

    Two empty strings (after normalisation) agree perfectly; one empty string
    against a non-empty one scores 0, as in the SQuAD v2 script.
    """
    pred = normalize_squad(prediction).split()
    ref = normalize_squad(reference).split()
    if not pred or not ref:
        return float(pred == ref)
    common = Counter(pred) & Counter(ref)
    same = sum(common.values())
    if same == 0:
        return 0.0
    precision = same / len(pred)
    recall = same / len(ref)
    return 2 * precision * recall / (precision + recall)


def max_token_f1(prediction: str, references: list[str]) -> float:
    """Best token F1 over the references (SQuAD takes the max over gold answers)."""
    return max(token_f1(prediction, r) for r in references)


# ---- degenerate outputs -------------------------------------------------------
#: word-level rules apply from this many words, character-level rules from this many non-space characters
DEGENERATE_MIN_WORDS = 8
DEGENERATE_MIN_CHARS = 16
#: fewer distinct words than this share of all words is a loop with variations ("the cat the dog the cat ...")
DEGENERATE_MIN_DISTINCT = 0.25
#: one unit repeated back to back over at least this share of the text is a loop
DEGENERATE_MAX_REPEAT_SHARE = 0.5
_EDGE_PUNCT = string.punctuation + "\u201c\u201d\u2018\u2019"


def _word_key(word: str) -> str:
    """Lower-cased, surrounding punctuation removed (a word that is only punctuation stays as it is)."""
    return word.lower().strip(_EDGE_PUNCT) or word


def longest_repeat(seq: list[str] | str, max_period: int) -> tuple[int, int, int]:
    """(period, start, covered length) of the longest stretch of `seq` made of one unit repeated back to back.

    A stretch with period p is a run of positions where seq[i] == seq[i + p];
    it covers run + p items, i.e. (run + p) / p copies of the unit. Only
    stretches with at least three whole copies count. (0, 0, 0) when there is none.
    """
    best = (0, 0, 0)
    n = len(seq)
    for p in range(1, min(max_period, n // 3) + 1):
        run = 0
        for i in range(n - p):
            run = run + 1 if seq[i] == seq[i + p] else 0
            covered = run + p
            if covered >= 3 * p and covered > best[2]:
                best = (p, i - run + 1, covered)
    return best


def degenerate_reason(text: str | None) -> str | None:
    """Why a generated text is degenerate (no answer at all), or None for ordinary text.

    The rule, fixed in advance (not fitted to any benchmark's outputs):

    1. empty, or whitespace only;
    2. with at least 8 words (whitespace-separated, compared lower-cased
       without surrounding punctuation): fewer than 25% of them distinct, or
       one unit of 1-50 words repeated back to back (3+ copies) covering at
       least half of the words;
    3. with at least 16 non-space characters: one unit of 1-16 characters
       repeated back to back (3+ copies) covering at least half of them
       (loops without spaces: "ckckckckckckckck", "!!!!!!!!!!!!!!!!").

    Ordinary answers, short ones included ("No.", "Paris", "ha ha ha"), are
    not flagged; a long run of one digit or symbol is.
    """
    if text is None or text == "":
        return "empty output"
    if not text.strip():
        return "whitespace-only output"
    words = [_word_key(w) for w in text.split()]
    if len(words) >= DEGENERATE_MIN_WORDS:
        distinct = len(set(words))
        if distinct < DEGENERATE_MIN_DISTINCT * len(words):
            return f"repetitive output: {distinct} distinct of {len(words)} words"
        period, start, covered = longest_repeat(words, 50)
        if period and covered >= DEGENERATE_MAX_REPEAT_SHARE * len(words):
            unit = " ".join(words[start:start + period])
            return f"repetitive output: {unit!r} repeated over {covered} of {len(words)} words"
    chars = "".join(text.split())
    if len(chars) >= DEGENERATE_MIN_CHARS:
        period, start, covered = longest_repeat(chars, 16)
        if period and covered >= DEGENERATE_MAX_REPEAT_SHARE * len(chars):
            unit = chars[start:start + period]
            return f"repetitive output: {unit!r} repeated over {covered} of {len(chars)} characters"
    return None
