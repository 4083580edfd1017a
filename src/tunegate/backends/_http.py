"""HTTP plumbing for API backends: retries with exponential backoff, Retry-After, concurrency.

Kept apart from the OpenAI request/response mapping so the failure policy can be
read (and tested) on its own: which failures are retried (429, 5xx, timeouts,
dropped connections, malformed JSON), how long to wait (`backoff * 2**attempt`
capped at `max_backoff`, or what the server's `Retry-After` asks for), and what
a request that still fails becomes (a `CallFailure` the backend turns into an
errored `Response` for that request only).

Servers are untrusted: one may echo the API key back in an error, a model id,
a system fingerprint or the generated text itself. Every message that leaves
this module and every string of every parsed answer (dict keys included) goes
through the caller's `Scrubber` before the backend sees it, so the key never
reaches results, the cache, logs or reports. The scrubber masks the whole key
and any run of `PARTIAL_SECRET` or more of its characters (a server that
echoes part of the key, or splits it around other text).
"""

from __future__ import annotations

import email.utils
import json
import logging
import random
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

T = TypeVar("T")
R = TypeVar("R")

log = logging.getLogger("tunegate.http")

#: failure classes a call may retry
RETRYABLE = frozenset({"429", "5xx", "timeout", "transport", "malformed"})
#: the longest wait a Retry-After header can impose (bounded loops, always)
MAX_RETRY_AFTER_S = 600.0
#: a run of this many characters of a secret is masked wherever it appears
PARTIAL_SECRET = 12
MASK = "***"


class Scrubber:
    """Masks secrets in text and in parsed JSON: each whole secret, and every run of PARTIAL_SECRET+ of its characters."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self.secrets = sorted({s for s in secrets if s}, key=len, reverse=True)
        self._grams = {s[i : i + PARTIAL_SECRET] for s in self.secrets if len(s) > PARTIAL_SECRET
                       for i in range(len(s) - PARTIAL_SECRET + 1)}

    def __call__(self, text: str) -> str:
        for s in self.secrets:
            text = text.replace(s, MASK)
        if not self._grams or len(text) < PARTIAL_SECRET:
            return text
        covered = bytearray(len(text))
        for i in range(len(text) - PARTIAL_SECRET + 1):
            if text[i : i + PARTIAL_SECRET] in self._grams:
                covered[i : i + PARTIAL_SECRET] = b"\x01" * PARTIAL_SECRET
        if not any(covered):
            return text
        out, i = [], 0
        while i < len(text):
            if covered[i]:
                while i < len(text) and covered[i]:
                    i += 1
                out.append(MASK)
            else:
                out.append(text[i])
                i += 1
        return "".join(out)

    def value(self, data: Any) -> Any:
        """`data` (parsed JSON) with every string, dict keys included, scrubbed."""
        if not self.secrets:
            return data
        if isinstance(data, str):
            return self(data)
        if isinstance(data, list):
            return [self.value(v) for v in data]
        if isinstance(data, dict):
            return {self.value(k): self.value(v) for k, v in data.items()}
        return data


class Malformed(ValueError):
    """A 2xx answer whose body is not the JSON shape we asked for (retryable when configured)."""


@dataclass(frozen=True)
class RetryPolicy:
    """How hard to try: `max_retries` extra attempts, waits of `backoff * 2**attempt` seconds."""

    max_retries: int = 4
    backoff: float = 1.0
    max_backoff: float = 60.0
    retry_malformed: bool = True
    jitter: float = 0.1

    def delay(self, attempt: int, retry_after: float | None) -> float:
        """Seconds to wait before attempt `attempt + 1`; the server's Retry-After wins when given."""
        if retry_after is not None:
            return min(max(retry_after, 0.0), MAX_RETRY_AFTER_S)
        base = min(self.backoff * (2.0**attempt), self.max_backoff)
        return base * (1.0 + self.jitter * random.random()) if base > 0 else 0.0


@dataclass
class CallFailure:
    """Why a call failed for good: `category` is one of RETRYABLE, 'auth', 'http' (other 4xx), 'cancelled'."""

    category: str
    message: str
    status: int | None = None
    attempts: int = 1


@dataclass
class CallStats:
    """Counters shared by the worker threads (HTTP attempts, retries, successes)."""

    attempts: int = 0
    retries: int = 0
    ok: int = 0
    retried: dict[str, int] = field(default_factory=dict)  # failure category -> retries it caused
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, **counts: int) -> None:
        with self.lock:
            for k, v in counts.items():
                setattr(self, k, getattr(self, k) + v)

    def retry(self, category: str) -> None:
        with self.lock:
            self.retries += 1
            self.retried[category] = self.retried.get(category, 0) + 1


def parse_retry_after(value: str | None) -> float | None:
    """Retry-After as seconds: a number, or an HTTP date (RFC 9110); None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def error_message(body: bytes | str, limit: int = 300) -> str:
    """The human part of an error body: OpenAI `error.message`, FastAPI `detail`, or the raw text."""
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    try:
        data = json.loads(text)
    except ValueError:
        return " ".join(text.split())[:limit]
    msg: Any = data
    if isinstance(data, dict):
        err = data.get("error")
        if isinstance(err, dict):
            msg = err.get("message", err)
        elif isinstance(err, str):
            msg = err
        elif "detail" in data:
            msg = data["detail"]
        elif "message" in data:
            msg = data["message"]
    return " ".join(str(msg).split())[:limit]


class HttpCaller:
    """A JSON-over-HTTP caller with the retry policy applied; safe to share between threads.

    `secrets` are strings (the API key) scrubbed from every message this caller
    produces and from every string of every answer before `parse` sees it.
    `call` returns the parsed value or a `CallFailure`; it raises only for
    programming errors.
    """

    def __init__(self, client: Any, policy: RetryPolicy, secrets: Iterable[str] = (),
                 sleep: Callable[[float], None] = time.sleep) -> None:
        import httpx

        self.httpx = httpx
        self.client = client
        self.policy = policy
        self.scrubber = Scrubber(secrets)
        self.sleep = sleep
        self.stats = CallStats()
        #: set when the run is interrupted: no new attempts, no more waiting
        self.cancel = threading.Event()

    def scrub(self, text: str) -> str:
        return self.scrubber(text)

    def call(self, method: str, path: str, parse: Callable[[Any], T], body: dict[str, Any] | None = None,
             retry: frozenset[str] = RETRYABLE) -> T | CallFailure:
        """One logical request: attempts until success, a non-retryable failure or the retry budget ends."""
        if not self.policy.retry_malformed:
            retry = retry - {"malformed"}
        attempt = 0
        while True:
            if self.cancel.is_set():
                return CallFailure("cancelled", "cancelled: the run was interrupted", attempts=attempt)
            failure, retry_after = self._attempt(method, path, parse, body)
            if not isinstance(failure, CallFailure):
                self.stats.add(ok=1)
                return failure
            failure.attempts = attempt + 1
            if failure.category not in retry or attempt >= self.policy.max_retries:
                return failure
            self.stats.retry(failure.category)
            wait = self.policy.delay(attempt, retry_after)
            log.info("retrying %s %s in %.1f s (attempt %d of %d): %s", method, path, wait, attempt + 2,
                     self.policy.max_retries + 1, failure.message)
            if self.sleep is time.sleep:
                self.cancel.wait(wait)  # an interrupt ends the wait at once
            else:
                self.sleep(wait)
            attempt += 1

    def _attempt(self, method: str, path: str, parse: Callable[[Any], T],
                 body: dict[str, Any] | None) -> tuple[T | CallFailure, float | None]:
        httpx = self.httpx
        self.stats.add(attempts=1)
        try:
            resp = self.client.request(method, path, json=body)
        except httpx.TimeoutException as exc:
            return CallFailure("timeout", self.scrub(f"timed out ({type(exc).__name__})")), None
        except httpx.TransportError as exc:
            return CallFailure("transport", self.scrub(f"{type(exc).__name__}: {exc}")[:300]), None
        status = resp.status_code
        if status >= 400:
            # scrubbed before error_message shortens it (a key cut in half escapes the whole-key match) and after it
            # decodes JSON escapes (a key with an escaped character escapes it on the raw body)
            raw = self.scrub(resp.content.decode("utf-8", "replace"))
            msg = self.scrub(f"HTTP {status}: {error_message(raw, limit=100_000)}")[:300]
            if status in (401, 403):
                category = "auth"
            elif status == 429:
                category = "429"
            elif status >= 500:
                category = "5xx"
            else:
                category = "http"
            return CallFailure(category, msg, status), parse_retry_after(resp.headers.get("retry-after"))
        try:
            return parse(self.scrubber.value(resp.json())), None
        except (ValueError, KeyError, IndexError, TypeError) as exc:  # json.JSONDecodeError is a ValueError
            what = str(exc) if isinstance(exc, Malformed) else f"{type(exc).__name__}: {exc}"
            return CallFailure("malformed", self.scrub(f"malformed response (HTTP {status}): {what}")[:300], status), None


def run_concurrently(fn: Callable[[T], R], items: list[T], concurrency: int,
                     cancel: threading.Event | None = None) -> list[R]:
    """`[fn(x) for x in items]` on up to `concurrency` threads, in order.

    `fn` is expected to turn its own failures into values; an exception still
    propagates. On any exception (a KeyboardInterrupt above all) `cancel` is set
    so calls in flight stop retrying and waiting, and calls not yet started are
    dropped: the run stops within one request timeout.
    """
    if concurrency <= 1 or len(items) <= 1:
        return [fn(x) for x in items]
    pool = ThreadPoolExecutor(max_workers=min(concurrency, len(items)), thread_name_prefix="tunegate-http")
    try:
        futures = [pool.submit(fn, x) for x in items]
        return [f.result() for f in futures]
    except BaseException:
        if cancel is not None:
            cancel.set()
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
