"""Dropping secrets from option dicts before they are written into results.

Why: results, logs and reports must never hold an API key or token (DESIGN,
"Rules that hold everywhere"). The built-in backends already refuse a key in
their options (only the *name* of an environment variable is accepted), but a
third-party scorer or backend may take anything, and a scorer's options are
now recorded per suite in `SuiteResult.scorers`. So every option dict that
goes into results passes through `redact_secrets`, which errs on the side of
hiding: a key whose name looks like a credential has its value replaced, and
credentials embedded in URLs are cut out.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

REDACTED = "[redacted]"

#: words that, anywhere in an option's name, mark its value as a possible credential
SECRET_WORDS = frozenset({
    "key", "apikey", "token", "secret", "password", "passwd", "pwd", "auth", "authorization",
    "credential", "credentials", "cookie", "bearer", "signature", "private",
})
# snake_case, kebab-case and camelCase words: `api_key`, `x-api-key`, `apiKey`, `HFToken`
_WORD = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z0-9]+")


def is_secret_name(name: str) -> bool:
    """True when an option called `name` may hold a credential.

    A name ending in `env` (`api_key_env`) names an environment variable: the
    project's way of pointing at a key without holding it, so it is kept.
    Plural words (`max_new_tokens`, `batch_tokens`) are counts, not secrets.
    """
    words = [w.lower() for w in _WORD.findall(name)]
    if not words or words[-1] == "env":
        return False
    return any(w in SECRET_WORDS for w in words)


def _scrub_url(text: str) -> str:
    """A URL without user:password@ and with credential-looking query values replaced; other text unchanged."""
    if "://" not in text:
        return text
    try:
        parts = urlsplit(text)
        host = parts.hostname
        port = parts.port
    except ValueError:
        return REDACTED  # unparseable, yet URL-like: not worth the risk
    if not parts.scheme or not host:
        return text
    netloc = parts.netloc
    if parts.username is not None or parts.password is not None:
        netloc = (f"[{host}]" if ":" in host else host) + (f":{port}" if port is not None else "")
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        if any(is_secret_name(k) for k, _ in pairs):
            query = urlencode([(k, REDACTED if is_secret_name(k) else v) for k, v in pairs])
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def redact_secrets(value: Any) -> Any:
    """A copy of `value` (JSON-like: dicts, lists, scalars) with every possible credential replaced by `REDACTED`.

    Dict entries whose key `is_secret_name` lose their value; strings lose
    URL credentials and `Bearer ...` tokens. Nothing else changes, so the
    record stays useful (model ids, paths, thresholds).
    """
    if isinstance(value, dict):
        return {k: (REDACTED if isinstance(k, str) and is_secret_name(k) and v not in (None, "") else redact_secrets(v))
                for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact_secrets(v) for v in value]
    if isinstance(value, str):
        if value.lower().startswith("bearer "):
            return REDACTED
        return _scrub_url(value)
    return value
