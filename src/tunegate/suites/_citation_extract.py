"""Finding citations in model output: case law, U.S. Code sections, DOIs, arXiv ids, URLs, pip packages.

Extraction is deliberately literal (regular expressions, no model): the point
is to find the *checkable* references a model wrote, so each one can be looked
up in a closed reference list. The tricky parts are the edges of a match:

- trailing sentence punctuation is not part of a URL or DOI ("see
  https://x.org/a." ends at "a"), but balanced parentheses inside one are
  ("10.1016/S0140-6736(97)11096-0", "https://en.wikipedia.org/wiki/Foo_(bar)");
- a DOI or arXiv id written as a URL (doi.org/..., arxiv.org/abs/...) counts
  once, as the DOI or arXiv id, not again as a URL;
- a bare number such as "2101.00001" is only an arXiv id when it is marked as
  one ("arXiv:", "arXiv ", or an arxiv.org link), so prices and versions are
  not mistaken for papers;
- `pip install` lines carry options, version pins, extras, requirement files
  and paths; only the package names are kept, normalised as PEP 503 does.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

CitationKind = Literal["case", "statute", "doi", "arxiv", "url", "package"]
KINDS: tuple[CitationKind, ...] = ("case", "statute", "doi", "arxiv", "url", "package")


@dataclass(frozen=True)
class Citation:
    """One reference found in a text: its kind, the text as written, and the normalised lookup key."""

    kind: str
    text: str
    key: str
    start: int
    name: str = ""  # case name ("Brown v. Board of Education"), when a case citation has one


_TRAIL = ".,;:!?'\"`*>"


def trim_trailing(s: str) -> str:
    """Strip sentence punctuation and unbalanced closing brackets from the end of a URL or DOI."""
    while s:
        last = s[-1]
        if last in _TRAIL:
            s = s[:-1]
        elif last in ")]}":
            opening = {")": "(", "]": "[", "}": "{"}[last]
            if s.count(opening) < s.count(last):
                s = s[:-1]
            else:
                break
        else:
            break
    return s


# ---- DOIs and arXiv ids ------------------------------------------------------
_DOI = re.compile(r"\b(10\.\d{4,9}/[^\s\"<>]+)")
_ARXIV_URL = re.compile(r"arxiv\.org/(?:abs|pdf)/([A-Za-z\-]+(?:\.[A-Z]{2})?/\d{7}|\d{4}\.\d{4,5})(?:v\d+)?(?:\.pdf)?", re.I)
_ARXIV_NEW = re.compile(r"\barxiv(?::|\s+|\s*id:?\s*)(\d{4}\.\d{4,5})(?:v\d+)?\b", re.I)
_ARXIV_OLD = re.compile(r"\barxiv(?::|\s+)([a-z\-]+(?:\.[A-Z]{2})?/\d{7})(?:v\d+)?\b", re.I)


def normalize_doi(doi: str) -> str:
    return trim_trailing(doi).lower()


def normalize_arxiv(arxiv_id: str) -> str:
    """Without version; old-style archive names are case-insensitive, the subject class is kept upper case."""
    arxiv_id = re.sub(r"v\d+$", "", arxiv_id.strip())
    if "/" in arxiv_id:
        archive, num = arxiv_id.split("/", 1)
        parts = archive.split(".")
        archive = parts[0].lower() + ("." + parts[1].upper() if len(parts) > 1 else "")
        return f"{archive}/{num}"
    return arxiv_id


# ---- URLs ----------------------------------------------------------------------
_URL = re.compile(r"(?:\bhttps?://|\bwww\.)[^\s<>\"'`]+", re.I)


def normalize_url(url: str) -> str:
    """Scheme-less, lower-case host without 'www.', no trailing slash, no fragment."""
    u = re.sub(r"^https?://", "", url.strip(), flags=re.I).split("#", 1)[0]
    host, _, rest = u.partition("/")
    host = host.lower()
    host = host[4:] if host.startswith("www.") else host
    rest = rest.rstrip("/")
    return f"{host}/{rest}" if rest else host


def url_host(url: str) -> str:
    return normalize_url(url).split("/", 1)[0].split(":", 1)[0]


# ---- case law and statutes -----------------------------------------------------
_REPORTERS = r"U\.\s?S\.|S\.\s?Ct\.|L\.\s?Ed\.(?:\s?2d)?|F\.\s?Supp\.(?:\s?[23]d)?|F\.(?:\s?(?:2d|3d|4th))?"
_CITE = re.compile(rf"\b(\d{{1,3}})\s+({_REPORTERS})\s+(\d{{1,5}})\b")
_PARTY = r"(?:[A-Z][\w'&\-]*\.?|of|the|and|for|ex\s+rel\.|de|du)"
_CASE_NAME = re.compile(rf"\b((?:[A-Z][\w'&\-]*\.?)(?:\s+{_PARTY}){{0,7}})\s+v\.?\s+((?:[A-Z][\w'&\-]*\.?)(?:\s+{_PARTY}){{0,7}})")
_STATUTE = re.compile(r"\b(\d{1,2})\s+U\.\s?S\.\s?C\.?\s*(?:§§?|[Ss]ec(?:tion|\.)?)\s*(\d+[a-z]?(?:-\d+)?)")


def normalize_reporter(rep: str) -> str:
    """Reporter abbreviation without spaces ('S. Ct.' -> 'S.Ct.', 'F. 2d' -> 'F.2d'), so spacing variants match."""
    return re.sub(r"\s+", "", rep)


def normalize_cite(volume: str, reporter: str, page: str) -> str:
    return f"{int(volume)} {normalize_reporter(reporter)} {int(page)}"


def normalize_case_name(name: str) -> str:
    """Lower-case party words without punctuation: 'Roe v. Wade' -> 'roe v wade'."""
    name = re.sub(r"\bv\.?(?=\s)", " v ", name)
    return " ".join(re.sub(r"[^\w\s]", " ", name.lower()).split())


def _case_names(text: str) -> list[tuple[int, int, str]]:
    out = []
    for m in _CASE_NAME.finditer(text):
        left = re.sub(r"^(?:(?:In|See|Cf|The|Under|And|But|After|Before|Like|In the|Compare)\.?\s+)+", "", m.group(1))
        right = re.sub(r"(?:\s+(?:of|the|and|for|de|du))+$", "", m.group(2)).rstrip(".")
        out.append((m.start(1) + (len(m.group(1)) - len(left)), m.end(), f"{left} v. {right}"))
    return out


def extract_cases(text: str) -> list[Citation]:
    """Reporter citations (with the case name written before them, when there is one) and name-only cases."""
    names = _case_names(text)
    found: list[Citation] = []
    used_names: set[int] = set()
    for m in _CITE.finditer(text):
        name = ""
        for i, (_s, e, n) in enumerate(names):
            between = text[e : m.start()]
            if e <= m.start() and len(between) <= 4 and re.fullmatch(r"[\s,]*", between):
                name = n
                used_names.add(i)
        key = normalize_cite(*m.groups())
        cite = text[m.start() : m.end()]
        found.append(Citation("case", f"{name}, {cite}" if name else cite, key, m.start(), name=name))
    for i, (s, _e, n) in enumerate(names):
        if i not in used_names:
            found.append(Citation("case", n, "name:" + normalize_case_name(n), s, name=n))
    return found


def extract_statutes(text: str) -> list[Citation]:
    return [Citation("statute", m.group(0), f"{int(m.group(1))} U.S.C. § {m.group(2)}", m.start()) for m in _STATUTE.finditer(text)]


# ---- pip packages --------------------------------------------------------------
_PIP = re.compile(r"\b(?:python3?\s+-m\s+)?pip3?\s+install\b([^\n`;|&]*)", re.I)
_PIP_VALUE_OPTS = {
    "-r", "--requirement", "-c", "--constraint", "-i", "--index-url", "--extra-index-url", "-f", "--find-links",
    "-t", "--target", "--prefix", "--root", "--src", "--cache-dir", "--log", "--upgrade-strategy", "--platform",
    "--python-version", "--implementation", "--abi", "-e", "--editable", "--trusted-host", "--proxy", "--progress-bar",
}
_PKG = re.compile(r"^([A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?)(?:\[[^\]]*\])?(?:\s*(?:[=<>!~]=?|===).*)?$")


def normalize_package(name: str) -> str:
    """PEP 503 normalised project name."""
    return re.sub(r"[-_.]+", "-", name).lower()


def extract_packages(text: str) -> list[Citation]:
    found = []
    for m in _PIP.finditer(text):
        args = m.group(1).split()
        skip_next = False
        for tok in args:
            tok = tok.strip("\"'()")
            if skip_next:
                skip_next = False
                continue
            if not tok:
                continue
            if tok.startswith("-"):
                skip_next = tok in _PIP_VALUE_OPTS
                continue
            if tok.startswith((".", "/", "~")) or "/" in tok or "\\" in tok or tok.endswith((".whl", ".tar.gz", ".zip")):
                continue  # a path, a URL or a VCS requirement: not a package-index name
            pm = _PKG.match(tok.rstrip(".,:"))
            if not pm:
                continue
            start = m.start(1) + m.group(1).find(tok)
            found.append(Citation("package", pm.group(1), normalize_package(pm.group(1)), start))
    return found


# ---- everything ---------------------------------------------------------------
def extract_citations(text: str) -> list[Citation]:
    """Every citation in `text`, in order of appearance, each counted once."""
    found: list[Citation] = []
    claimed: list[tuple[int, int]] = []  # spans of URLs that were read as DOIs / arXiv ids

    for m in _URL.finditer(text):
        url = trim_trailing(m.group(0))
        low = url.lower()
        doi = _DOI.search(url)
        arx = _ARXIV_URL.search(url)
        if doi and re.search(r"(?:^|//|\.)(?:dx\.)?doi\.org/", low):
            found.append(Citation("doi", url, normalize_doi(doi.group(1)), m.start()))
        elif arx:
            found.append(Citation("arxiv", url, normalize_arxiv(arx.group(1)), m.start()))
        else:
            found.append(Citation("url", url, normalize_url(url), m.start()))
        claimed.append((m.start(), m.start() + len(url)))

    def free(pos: int) -> bool:
        return not any(s <= pos < e for s, e in claimed)

    for m in _DOI.finditer(text):
        if free(m.start()):
            found.append(Citation("doi", trim_trailing(m.group(1)), normalize_doi(m.group(1)), m.start()))
    for rx in (_ARXIV_NEW, _ARXIV_OLD):
        for m in rx.finditer(text):
            if free(m.start()):
                found.append(Citation("arxiv", m.group(0), normalize_arxiv(m.group(1)), m.start()))
    found += [c for c in extract_cases(text) + extract_statutes(text) + extract_packages(text) if free(c.start)]
    return sorted(found, key=lambda c: c.start)
