"""`tunegate card`: a Hugging Face model card and an Annex IV / XI technical documentation from an audit's records.

Three files, written together into one folder (`tunegate audit` writes them
into its output folder; `tunegate card AUDIT_DIR --out DIR` anywhere):

- `model_card.md`: the Hugging Face model-card layout with its YAML metadata
  header (license, base_model, tags, model-index with the evaluation results
  of the card's subject), so it can go straight into a model repository;
- `technical_documentation.html` (in the report's style, same strict CSP, no
  script) and `technical_documentation.md`: the same facts laid out along the
  EU AI Act's documentation headings.

Every value comes from `tunegate.report.card.build` with the recorded field it was
read from; provider-only fields come from the audit's `card:` block and are
otherwise marked "to be provided by the provider".
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime, timezone
from functools import lru_cache
from pathlib import Path

import jinja2
import yaml

from tunegate.compare.models import Comparison
from tunegate.core.io import atomic_write_text
from tunegate.core.results import RunResult
from tunegate.report.card.build import build_card
from tunegate.report.card.context import TO_PROVIDE, CardContext, Fact

CARD_FILES = ("model_card.md", "technical_documentation.html", "technical_documentation.md")
_MD_SPECIAL = re.compile(r"([\\`*_\[\]|~])")


def md(text: object) -> str:
    """One Markdown line: HTML and Markdown metacharacters escaped, no autolinks (recorded text is untrusted)."""
    flat = " ".join(str(text).split())
    flat = _MD_SPECIAL.sub(r"\\\1", flat.replace("&", "&amp;"))
    return flat.replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;").replace(":", "&#58;")


def _fact_md(f: Fact) -> str:
    if f.kind == "to_provide":
        return f"*{TO_PROVIDE}*"
    if f.kind == "missing":
        return f"*{md(f.text)}*"
    return md(f.text)


def _source(f: Fact) -> str:
    return md(f.file) + ("" if f.kind == "provided" else f" {md('.'.join(map(str, f.path)))}")


def _sections_md(card: CardContext, level: int = 2) -> list[str]:
    h = "#" * level
    lines: list[str] = []
    for n, s in enumerate(card.sections, 1):
        lines += [f"{h} {n}. {md(s.title)} ({md(s.annex)})", ""]
        if s.facts:
            lines += ["| Item | Value | Recorded in |", "|---|---|---|"]
            lines += [f"| {md(f.label)} | {_fact_md(f)} | {_source(f)} |" for f in s.facts]
            lines.append("")
        for t in s.tables:
            lines += [f"{h}# {md(t['title'])}", "", "| " + " | ".join(md(x) for x in t["head"]) + " |",
                      "|" + "---|" * len(t["head"])]
            lines += ["| " + " | ".join(md(f.text) if f.kind != "missing" else "n/a" for f in row) + " |" for row in t["rows"]]
            lines.append("")
        lines += [f"- {md(note)}" for note in s.notes]
        if s.notes:
            lines.append("")
    return lines


def render_model_card(card: CardContext) -> str:
    """Hugging Face layout: metadata header, then model details, uses, training, evaluation, limitations, compute."""
    header = yaml.safe_dump(card.metadata, sort_keys=False, allow_unicode=True).strip()
    lines = ["---", header, "---", "", f"# {md(card.title)}", "",
             f"Card compiled by tunegate from an audit's records. Subject: "
             f"{md(card.subject) if card.subject else 'none'} ({md(card.subject_reason)}). Fields marked "
             f"*{TO_PROVIDE}* must be written by the provider; a fact the audit did not record is shown as missing.", ""]
    lines += _sections_md(card)
    return "\n".join(lines).rstrip() + "\n"


def render_technical_md(card: CardContext) -> str:
    lines = [f"# Technical documentation: {md(card.title)}", "",
             "Laid out along the EU AI Act's Annex IV (high-risk systems) and Annex XI (general-purpose models). "
             f"Every value names the recorded field it was read from; *{TO_PROVIDE}* marks what the provider must write.", ""]
    return "\n".join(lines + _sections_md(card)).rstrip() + "\n"


@lru_cache(maxsize=1)
def _environment() -> jinja2.Environment:
    from tunegate.report.html import TEMPLATES as REPORT_TEMPLATES

    return jinja2.Environment(
        loader=jinja2.FileSystemLoader([str(Path(__file__).resolve().parent / "templates"), str(REPORT_TEMPLATES)]),
        autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)


def render_technical_html(card: CardContext, generated: str) -> str:
    return _environment().get_template("technical_documentation.html.j2").render(
        card=card, generated=generated, to_provide=TO_PROVIDE)


def write_card(comparison: Comparison, out: Path, runs: Mapping[str, RunResult | None],
               candidate: str | None = None) -> dict[str, Path]:
    """Render the three files from `comparison` (and the records it points at) and write each atomically into `out`."""
    out = Path(out)
    card = build_card(comparison, runs, candidate)
    generated = comparison.created_at or datetime.now(timezone.utc).isoformat(timespec="seconds")
    texts = {"model_card.md": render_model_card(card), "technical_documentation.md": render_technical_md(card),
             "technical_documentation.html": render_technical_html(card, generated)}
    for name in CARD_FILES:
        atomic_write_text(out / name, texts[name])
    return {name: out / name for name in CARD_FILES}

