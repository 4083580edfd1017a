"""`citations` suite kind: fabricated references in generated answers.

Method: prompts invite references (case law, statutes, papers, documentation
URLs, packages to install). Each output is searched for checkable citations
(`_citation_extract`: reporter citations such as "Brown v. Board of
Education, 347 U.S. 483 (1954)" and bare case names, U.S. Code sections, DOIs,
arXiv ids, URLs, `pip install` package names) and every one is looked up in a
reference list shipped with the suite. The approach follows the reference-
hallucination audits of Agrawal et al. (2024, "Do Language Models Know When
They're Hallucinating References?", Findings of EACL) and Dahl et al. (2024,
"Large Legal Fictions", Journal of Legal Analysis), and package hallucination
("slopsquatting", Spracklen et al. 2025, USENIX Security), with offline
look-ups instead of web search.

Closed world: a citation absent from the list counts as fabricated. That is
exact for the suite's own prompts (their honest answers are in the list) and an
upper bound elsewhere. A case citation whose reporter cite is listed but whose
case name names different parties also counts as fabricated (a real cite
attached to the wrong case). URLs are checked by host (any listed domain or its
subdomain) unless `url_match: exact`.

Metrics: `fabricated_citation_rate` = fabricated / all citations (ratio of
sums, per-answer counts as values and weights), the same per citation kind,
`answers_with_fabrication` (share of answers with at least one), and
`citations_per_answer` (neutral: a model that cites nothing fabricates nothing).
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from tunegate.core.config import format_validation_error, read_yaml
from tunegate.core.data import Row, resolve_data_path
from tunegate.core.errors import UserError
from tunegate.core.metric import Metric
from tunegate.core.request import GenerateRequest, Request, Response
from tunegate.core.results import SampleResult
from tunegate.core.sample import Sample
from tunegate.core.score import Score, score_value
from tunegate.suites._citation_extract import (
    _CITE,
    KINDS,
    Citation,
    CitationKind,
    extract_citations,
    normalize_arxiv,
    normalize_case_name,
    normalize_cite,
    normalize_doi,
    normalize_package,
    normalize_url,
    url_host,
)
from tunegate.suites.base import SuiteKind, metric_from_scores


class CaseEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    cite: str | None = None
    year: int | None = None


class ReferenceList(BaseModel):
    """The suite's reference file: what exists. Unknown keys are rejected."""

    model_config = ConfigDict(extra="forbid")

    cases: list[CaseEntry] = Field(default_factory=list)
    statutes: list[str] = Field(default_factory=list)
    dois: list[str] = Field(default_factory=list)
    arxiv: list[str] = Field(default_factory=list)
    url_domains: list[str] = Field(default_factory=list)
    urls: list[str] = Field(default_factory=list)
    packages: list[str] = Field(default_factory=list)


def _short_name(name: str) -> str:
    """First word of each party: 'Brown v. Board of Education' -> 'brown v board'."""
    parts = normalize_case_name(name).split(" v ", 1)
    if len(parts) != 2:
        return normalize_case_name(name)
    left, right = parts[0].split(), parts[1].split()
    skip = {"the", "in", "re", "united", "states", "state", "people", "city", "of"}

    def first(words: list[str]) -> str:
        return next((w for w in words if w not in skip), words[0] if words else "")

    return f"{first(left)} v {first(right)}"


class Reference:
    """Normalised look-up tables built from a `ReferenceList`."""

    def __init__(self, refs: ReferenceList, url_match: str) -> None:
        self.url_match = url_match
        self.cites: dict[str, str] = {}
        self.case_names: set[str] = set()
        for c in refs.cases:
            self.case_names.add(_short_name(c.name))
            if c.cite:
                m = _CITE.fullmatch(c.cite.strip())
                if not m:
                    raise ValueError(f"case {c.name!r}: cite {c.cite!r} is not 'volume reporter page' (e.g. 347 U.S. 483)")
                self.cites[normalize_cite(*m.groups())] = c.name
        self.statutes = {re.sub(r"\s+", " ", s.replace("§§", "§")).strip() for s in refs.statutes}
        self.dois = {normalize_doi(d) for d in refs.dois}
        self.arxiv = {normalize_arxiv(a) for a in refs.arxiv}
        self.domains = {d.lower().removeprefix("www.") for d in refs.url_domains}
        self.urls = {normalize_url(u) for u in refs.urls}
        self.packages = {normalize_package(p) for p in refs.packages}

    def check(self, c: Citation) -> tuple[bool, str]:
        """(verified, reason) for one citation."""
        if c.kind == "case":
            if c.key.startswith("name:"):
                ok = _short_name(c.name) in self.case_names
                return ok, "" if ok else "case name not in the reference list"
            listed = self.cites.get(c.key)
            if listed is None:
                return False, "reporter citation not in the reference list"
            if c.name and _short_name(c.name) != _short_name(listed) and not (
                set(_short_name(c.name).split()) - {"v"} & set(_short_name(listed).split())
            ):
                return False, f"citation belongs to {listed}"
            return True, ""
        if c.kind == "statute":
            ok = c.key in self.statutes
        elif c.kind == "doi":
            ok = c.key in self.dois
        elif c.kind == "arxiv":
            ok = c.key in self.arxiv
        elif c.kind == "package":
            ok = c.key in self.packages
        else:
            host = url_host(c.text)
            on_domain = any(host == d or host.endswith("." + d) for d in self.domains)
            ok = c.key in self.urls or (on_domain and (self.url_match == "domain" or c.key == host))
        return ok, "" if ok else f"{c.kind} not in the reference list"


class CitationsOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    #: reference list (YAML), relative to the suite file
    reference: str
    max_new_tokens: int = Field(default=256, ge=1)
    url_match: Literal["domain", "exact"] = "domain"
    #: citation kinds to count (others are ignored)
    kinds: list[CitationKind] = Field(default_factory=lambda: list(KINDS))


class Citations(SuiteKind):
    name: ClassVar[str] = "citations"
    description: ClassVar[str] = (
        "Fabricated citations: prompts invite references; case citations, U.S. Code sections, DOIs, arXiv ids, URLs "
        "and `pip install` package names are extracted from each greedy answer and looked up in the suite's reference "
        "list (closed world: unlisted = fabricated), after the reference-hallucination audits of Agrawal et al. "
        "(EACL Findings 2024) and Dahl et al. (2024, legal) and package hallucination (Spracklen et al. 2025). "
        "fabricated_citation_rate = fabricated / all citations; citations_per_answer."
    )
    Options: ClassVar[type[BaseModel]] = CitationsOptions
    default_fields: ClassVar[dict[str, str]] = {"id": "id", "prompt": "prompt", "category": "category"}

    def __init__(self, config: Any, base_dir: Path) -> None:
        super().__init__(config, base_dir)
        self.reference_path = resolve_data_path(self.options.reference, base_dir, "options.reference")
        raw = read_yaml(self.reference_path)
        try:
            refs = ReferenceList.model_validate(raw or {})
            self.reference = Reference(refs, self.options.url_match)
        except ValidationError as err:
            raise UserError(format_validation_error(str(self.reference_path), err)) from None
        except ValueError as err:
            raise UserError(f"{self.reference_path}: {err}") from None

    def samples(self) -> list[Sample]:
        """Rows as samples; the data hash also covers the reference list, which changes the scores."""
        first = self._samples is None
        out = super().samples()
        if first:
            ref_hash = hashlib.sha256(self.reference_path.read_bytes()).hexdigest()
            self.data_hash = hashlib.sha256(f"{self.data_hash}:{ref_hash}".encode()).hexdigest()
        return out

    def to_sample(self, row: Row) -> Sample:
        prompt = row.get("prompt", str)
        if not prompt.strip():
            raise row.fail("prompt", "is empty")
        return Sample(id=self.row_id(row), input=prompt, metadata={"category": str(row.get("category", str, default=""))})

    def requests(self, sample: Sample) -> list[Request]:
        seed = getattr(getattr(self, "context", None), "seed", 0)
        return [GenerateRequest(prompt=sample.input, max_new_tokens=self.options.max_new_tokens, temperature=0.0, seed=seed)]

    def check_text(self, text: str) -> list[dict[str, Any]]:
        """Every counted citation in `text` with its verdict (what the report shows)."""
        out = []
        for c in extract_citations(text):
            if c.kind not in self.options.kinds:
                continue
            ok, why = self.reference.check(c)
            out.append({"kind": c.kind, "text": c.text, "key": c.key, "verified": ok, "reason": why})
        return out

    def score(self, sample: Sample, responses: list[Response]) -> list[Score]:
        found = self.check_text(responses[0].text or "")
        fabricated = [f for f in found if not f["verified"]]
        scores = [
            score_value("citations", len(found), citations=found),
            score_value("fabricated", len(fabricated)),
            score_value("any_fabricated", bool(fabricated)),
        ]
        for kind in self.options.kinds:
            scores.append(score_value(f"citations_{kind}", sum(f["kind"] == kind for f in found)))
            scores.append(score_value(f"fabricated_{kind}", sum(f["kind"] == kind for f in fabricated)))
        return scores

    def metrics(self, results: list[SampleResult]) -> list[Metric]:
        out = [
            metric_from_scores("fabricated_citation_rate", results, "fabricated", weight_score="citations",
                               aggregation="ratio", direction="lower",
                               description="fabricated citations / all citations (closed world: unlisted = fabricated)"),
            metric_from_scores("answers_with_fabrication", results, "any_fabricated", kind="binary", direction="lower",
                               description="share of answers with at least one fabricated citation"),
            metric_from_scores("citations_per_answer", results, "citations", direction="neutral",
                               description="mean number of checkable citations per answer"),
        ]
        for kind in self.options.kinds:
            # always reported (no value when nothing of this kind was cited) so every model has the same metric set
            out.append(metric_from_scores(f"fabricated_citation_rate/{kind}", results, f"fabricated_{kind}",
                                          weight_score=f"citations_{kind}", aggregation="ratio", direction="lower",
                                          description=f"fabricated / all {kind} citations"))
        return out
