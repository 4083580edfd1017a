"""report.html: one self-contained file rendered by Jinja2 with autoescaping on.

Everything the page needs is inline: CSS, SVG charts drawn from numbers the
view model computed, and one small script (sorting and filtering the example
explorer) that the Content-Security-Policy allows by its SHA-256 hash alone.
No template uses a filter that marks text safe, so model and dataset text
can only ever appear as text.
"""

from __future__ import annotations

import base64
import hashlib
from functools import lru_cache
from pathlib import Path

import jinja2

from tunegate.core.format import fmt
from tunegate.report.context import ReportContext

TEMPLATES = Path(__file__).resolve().parent / "templates"


@lru_cache(maxsize=1)
def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATES)),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["num"] = lambda x, digits=4: fmt(x, digits)
    env.filters["pval"] = lambda p: "n/a" if p is None else ("< 0.0001" if p < 1e-4 else fmt(p, 3))
    env.filters["pct"] = lambda x: f"{100 * x:.4g}%"
    return env


def script_hash() -> str:
    """CSP source for the one inline script: 'sha256-<base64 digest>' of its exact text."""
    text = environment().get_template("explorer.js").render()
    return "sha256-" + base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode("ascii")


def render_html(ctx: ReportContext) -> str:
    return environment().get_template("report.html.j2").render(ctx=ctx, script_hash=script_hash())
