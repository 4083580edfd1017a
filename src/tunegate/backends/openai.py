"""`openai` backend: any OpenAI-compatible HTTP API (OpenAI, vLLM, TGI, `transformers serve`).

Hosted fine-tunes and served checkpoints are audited through the same runner,
cache and report as local models; only the transport differs. What this module
decides, and why:

- **Secrets.** Configuration holds only the *name* of the environment variable
  with the API key (`api_key_env`); the key goes into one request header and
  is scrubbed from every message and from every string a server sends back
  (generated text, model ids, system fingerprints, model listings: a hostile
  server may echo the key in any of them), so it never reaches results, cache,
  logs or reports. A base URL with credentials in it is refused for the same
  reason.
- **First contact** happens when the backend is built, before any suite runs:
  `GET /models` and a 1-token request on the configured endpoint. A rejected
  key is a `UserError` (exit 2) naming the variable; an unreachable server is
  an `IncompleteError` (exit 3); the model id the server reports pins the
  fingerprint.
- **Log-likelihoods** need prompt log-probabilities (`/completions` with
  `echo`, `logprobs` and `max_tokens: 0`, as vLLM serves them). One probe
  decides; a server without them drops "loglikelihood" from `supports`, and the
  runner skips those samples with a reason. Continuation tokens are those past
  the context's own token count (asked of the server once per distinct
  context), the same boundary rule as the `hf` backend.
- **Per-request failures** (after retries, see `_http`) become errored
  responses for those requests only; the rest of the run goes on.

The fingerprint identifies the endpoint (base URL, model name, server-reported
model id), not the weights: an API model's weights cannot be hashed, and the
identity says so (`weights_verifiable: False`).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import threading
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import parse_qsl, urlsplit, urlunsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from tunegate.backends._http import (
    CallFailure,
    HttpCaller,
    Malformed,
    RetryPolicy,
    run_concurrently,
)
from tunegate.backends.base import Backend
from tunegate.core.config import format_validation_error
from tunegate.core.errors import IncompleteError, MissingDependencyError, UserError
from tunegate.core.model_spec import ModelSpec
from tunegate.core.request import GenerateRequest, LoglikelihoodRequest, Response

_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_SECRET_WORDS = re.compile(r"key|token|secret|sig|pass|auth|cred", re.IGNORECASE)
_KEY_OPTIONS = {"api_key", "apikey", "key", "token", "api_token", "password", "secret"}
_NO_STATUS_RETRY = frozenset({"429", "timeout", "transport"})  # probes: an HTTP error is an answer, not a blip
PROBE_PROMPT = "Hello world"
MAX_STOPS = 4  # the OpenAI API accepts at most four stop sequences; the rest are applied client-side


class OpenAIOptions(BaseModel):
    """`ModelSpec.options` of the openai backend (`--option key=value` on the command line)."""

    model_config = ConfigDict(extra="forbid")

    base_url: str = Field("https://api.openai.com/v1", description="API root, up to and including /v1")
    model: str | None = Field(None, description="model name sent to the API (default: the spec's model)")
    api_key_env: str = Field("OPENAI_API_KEY", description="NAME of the environment variable holding the key")
    endpoint: Literal["completions", "chat"] | None = Field(None, description="default: chat with --chat-template")
    system_prompt: str | None = Field(None, description="system message for the chat endpoint")
    concurrency: int = Field(4, ge=1, le=256)
    max_retries: int = Field(4, ge=0, le=20)
    timeout: float = Field(60.0, gt=0, le=3600, description="seconds per HTTP attempt")
    backoff: float = Field(1.0, ge=0, le=600, description="first retry wait; doubles per attempt")
    max_backoff: float = Field(60.0, ge=0, le=600)
    retry_malformed: bool = True
    loglikelihood: Literal["auto", "off"] = "auto"
    bos_text: str | None = Field(None, description="text of the BOS token, used as the context of empty-context requests")
    max_tokens_param: Literal["max_tokens", "max_completion_tokens"] = "max_tokens"
    seed: bool = Field(True, description="send each request's seed")

    @field_validator("loglikelihood", mode="before")
    @classmethod
    def _yaml_off(cls, value: Any) -> Any:
        """`--option loglikelihood=off` arrives as False (YAML 1.1 reads `off` as a boolean)."""
        return {False: "off", True: "auto"}.get(value, value) if isinstance(value, bool) else value


def parse_options(spec: ModelSpec) -> OpenAIOptions:
    """Validate the spec's options; never echoes a value (it could be a misplaced key)."""
    where = f"model {spec.display_name}: options"
    placed = sorted(k for k in spec.options if k.lower() in _KEY_OPTIONS)
    if placed:
        raise UserError(f"{where}.{placed[0]}: never put an API key in configuration; export it in an environment "
                        "variable and give the variable's NAME with --option api_key_env=NAME")
    try:
        opts = OpenAIOptions.model_validate(spec.options)
    except ValidationError as err:
        raise UserError(format_validation_error(where, err)) from None
    if not _ENV_NAME.match(opts.api_key_env):
        raise UserError(f"{where}.api_key_env: give the NAME of an environment variable (letters, digits, "
                        "underscores), not the key itself")
    parts = urlsplit(opts.base_url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UserError(f"{where}.base_url: expected http(s)://host[:port]/v1")
    if parts.username or parts.password:
        raise UserError(f"{where}.base_url: contains credentials (user:password@); remove them and put the API key "
                        "in the environment variable named by api_key_env")
    if any(_SECRET_WORDS.search(k) for k, _ in parse_qsl(parts.query, keep_blank_values=True)):
        raise UserError(f"{where}.base_url: its query string carries a credential; remove it and put the API key "
                        "in the environment variable named by api_key_env")
    return opts


def public_url(url: str) -> str:
    """The base URL as recorded in results: scheme, host, port and path; no userinfo, query or fragment."""
    p = urlsplit(url)
    host = p.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{host}:{p.port}" if p.port else host
    return urlunsplit((p.scheme, netloc, p.path.rstrip("/"), "", ""))


def _first_stop(text: str, stops: tuple[str, ...]) -> int | None:
    hits = [text.find(s) for s in stops if s and s in text]
    return min(hits) if hits else None


def _choice(data: Any) -> dict[str, Any]:
    choices = data.get("choices") if isinstance(data, dict) else None
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise Malformed("the answer has no choices")
    return choices[0]


@dataclass
class _Generation:
    text: str
    finish: str | None
    tokens: int | None
    model: str | None
    system_fingerprint: str | None


@dataclass
class _Echo:
    tokens: list[str]
    logprobs: list[float | None]
    top: list[Any] | None
    n_prompt: int
    model: str | None
    system_fingerprint: str | None


class OpenAIBackend(Backend):
    name = "openai"
    implementation_version = "1"
    #: the server computes the numbers: a local torch/transformers upgrade does not retire cached answers
    numerics_packages = ()

    # ---- validation before any request ---------------------------------------
    @classmethod
    def check(cls, spec: ModelSpec) -> None:
        opts = parse_options(spec)
        if spec.adapter is not None:
            raise UserError(f"model {spec.display_name}: --adapter does not apply to the openai backend "
                            "(an API model is fine-tuned on the provider's side; name the tuned model instead)")
        if spec.revision is not None:
            raise UserError(f"model {spec.display_name}: --revision does not apply to the openai backend")
        if "api_key_env" in opts.model_fields_set and not os.environ.get(opts.api_key_env):
            raise UserError(f"model {spec.display_name}: the environment variable {opts.api_key_env} "
                            "(options.api_key_env) is not set; export the API key in it")

    # ---- first contact ---------------------------------------------------------
    def __init__(self, spec: ModelSpec) -> None:
        super().__init__(spec)
        self.check(spec)
        try:
            import httpx
        except ImportError:
            raise MissingDependencyError("httpx", extra="api", purpose="the openai backend") from None
        self.options = opts = parse_options(spec)
        self.api_model = opts.model or spec.model
        self.endpoint = opts.endpoint or ("chat" if spec.chat_template else "completions")
        self.public_url = public_url(opts.base_url)
        key = os.environ.get(opts.api_key_env) or None
        self.key_sent = key is not None
        headers = {"User-Agent": "tunegate"}
        if key:
            headers["Authorization"] = f"Bearer {key}"
        client = httpx.Client(
            base_url=opts.base_url.rstrip("/") + "/", headers=headers, timeout=httpx.Timeout(opts.timeout),
            limits=httpx.Limits(max_connections=opts.concurrency, max_keepalive_connections=opts.concurrency),
            follow_redirects=False,
        )
        policy = RetryPolicy(max_retries=opts.max_retries, backoff=opts.backoff, max_backoff=opts.max_backoff,
                             retry_malformed=opts.retry_malformed)
        self.http = HttpCaller(client, policy, secrets=[key] if key else [])
        self._lock = threading.Lock()
        self.listed_models: list[str] | None = None
        self.server_model: str | None = None
        self.response_models: set[str] = set()
        self.system_fingerprints: set[str] = set()
        self.loglikelihood_reason: str | None = None
        self._echo_max_tokens = 0
        self._context_tokens: dict[str, int] = {}
        self._fingerprint: str | None = None
        try:
            self._contact()
            if opts.loglikelihood == "off":
                self.loglikelihood_reason = "turned off by options.loglikelihood=off"
            else:
                self.loglikelihood_reason = self._probe_logprobs()
        except BaseException:
            client.close()
            raise
        kinds = {"generate"} | ({"loglikelihood"} if self.loglikelihood_reason is None else set())
        self.supports = frozenset(kinds)  # type: ignore[misc]  # per server, after the probe
        #: why a request kind is missing from `supports`; the runner adds it to each skipped sample's reason
        self.unsupported_reasons = {} if self.loglikelihood_reason is None else {"loglikelihood": self.loglikelihood_reason}

    def _fatal(self, failure: CallFailure, what: str) -> None:
        """Raise for failures that end the run before it starts: bad key (exit 2), no server (exit 3)."""
        if failure.category == "auth":
            env = self.options.api_key_env
            hint = (f"the API key in the environment variable {env} was rejected" if self.key_sent else
                    f"no API key was sent; export it in the environment variable {env} "
                    "(or name another variable with --option api_key_env=NAME)")
            raise UserError(f"{self.public_url}: authentication failed ({failure.message}): {hint}")
        if failure.category in ("timeout", "transport"):
            raise IncompleteError(f"cannot reach the API server at {self.public_url} while {what}: {failure.message} "
                                  f"(after {failure.attempts} attempt(s))")

    def _contact(self) -> None:
        listing = self.http.call("GET", "models", _parse_listing, retry=_NO_STATUS_RETRY)
        if isinstance(listing, CallFailure):
            self._fatal(listing, "listing models")  # any other answer: the server does not list models
        else:
            self.listed_models = listing
        probe = GenerateRequest(prompt=PROBE_PROMPT, max_new_tokens=1)
        out = self.http.call("POST", self._gen_path, self._parse_generation, body=self._gen_body(probe))
        if isinstance(out, CallFailure):
            self._fatal(out, "sending a 1-token test request")
            if out.category == "http":
                raise UserError(f"{self.public_url}: a 1-token test request for model {self.api_model!r} on "
                                f"/{self._gen_path} was refused ({out.message}); check --model, options.model "
                                "and options.endpoint")
            raise IncompleteError(f"{self.public_url}: the server failed a 1-token test request ({out.message}, "
                                  f"after {out.attempts} attempt(s))")
        self._note(out.model, out.system_fingerprint)
        self.server_model = out.model or (self.api_model if self.api_model in (self.listed_models or []) else None)

    def _probe_logprobs(self) -> str | None:
        """None when the server returns prompt log-probabilities, else the reason it cannot."""
        reason = ""
        for max_tokens in (0, 1):  # vLLM takes max_tokens=0; some servers need one generated token
            self._echo_max_tokens = max_tokens
            got = self.http.call("POST", "completions", self._parse_echo, body=self._echo_body(PROBE_PROMPT),
                                 retry=_NO_STATUS_RETRY)
            if not isinstance(got, CallFailure):
                if any(lp is not None for lp in got.logprobs[: got.n_prompt]):
                    return None
                reason = "its echoed prompt carries no log-probabilities"
                break
            self._fatal(got, "probing for prompt log-probabilities")
            if got.category == "429":
                raise IncompleteError(f"{self.public_url}: rate-limited while probing for prompt log-probabilities "
                                      f"({got.message}, after {got.attempts} attempt(s)); try again later")
            reason = "it ignores echo/logprobs on /completions" if got.category == "malformed" else got.message
        return (f"the server at {self.public_url} does not return prompt log-probabilities for {self.api_model!r} "
                f"({reason}); suites that need log-likelihoods are skipped for this model")

    # ---- identity ----------------------------------------------------------------
    def fingerprint(self) -> str:
        """SHA-256 of the endpoint: base URL (no credentials), model name, server-reported model id."""
        if self._fingerprint is None:
            payload = json.dumps({"base_url": self.public_url, "model": self.api_model, "server_model": self.server_model},
                                 sort_keys=True)
            self._fingerprint = hashlib.sha256(payload.encode()).hexdigest()
        return self._fingerprint

    def settings(self) -> dict[str, Any]:
        o = self.options
        return {"backend": self.name, "device": "remote", "endpoint": self.endpoint, "system_prompt": o.system_prompt,
                "bos_text": o.bos_text, "seed_sent": o.seed}

    def identity(self) -> dict[str, Any]:
        return {
            "backend": self.name, "model": self.spec.model, "api_model": self.api_model, "base_url": self.public_url,
            "endpoint": self.endpoint, "server_model": self.server_model,
            "listed_by_server": None if self.listed_models is None else self.api_model in self.listed_models,
            "response_models": sorted(self.response_models), "system_fingerprints": sorted(self.system_fingerprints),
            "api_key_env": self.options.api_key_env, "api_key_sent": self.key_sent,
            "fingerprint": self.fingerprint(),
            "fingerprint_scope": "the endpoint (base URL, model name, server-reported model id), not the weights",
            "weights_verifiable": False,
            "loglikelihood": "supported (echo + logprobs on /completions)" if self.loglikelihood_reason is None
            else f"unsupported: {self.loglikelihood_reason}",
            "http": {"attempts": self.http.stats.attempts, "retries": self.http.stats.retries,
                     "retried": dict(sorted(self.http.stats.retried.items()))},
        }

    def _note(self, model: str | None, system_fingerprint: str | None) -> None:
        with self._lock:
            if model:
                self.response_models.add(str(model))
            if system_fingerprint:
                self.system_fingerprints.add(str(system_fingerprint))

    def _answered(self) -> None:
        with self._lock:
            self.forward_passes += 1

    def _failed(self, kind: Literal["generate", "loglikelihood"], failure: CallFailure | str) -> Response:
        if isinstance(failure, CallFailure):
            msg = f"{failure.message} (after {failure.attempts} attempt(s))"
            if failure.category == "auth":
                msg += f"; check the API key in the environment variable {self.options.api_key_env}"
        else:
            msg = failure
        return Response(kind=kind, error=f"openai backend: {self.http.scrub(msg)}", finish_reason="error")

    # ---- generation --------------------------------------------------------------
    @property
    def _gen_path(self) -> str:
        return "chat/completions" if self.endpoint == "chat" else "completions"

    def _gen_body(self, req: GenerateRequest) -> dict[str, Any]:
        o = self.options
        body: dict[str, Any] = {"model": self.api_model, "temperature": req.temperature}
        if self.endpoint == "chat":
            messages = [{"role": "system", "content": o.system_prompt}] if o.system_prompt else []
            body["messages"] = messages + [{"role": "user", "content": req.prompt}]
            body[o.max_tokens_param] = req.max_new_tokens
        else:
            body["prompt"] = req.prompt
            body["max_tokens"] = req.max_new_tokens
        if req.top_p < 1.0:
            body["top_p"] = req.top_p
        if o.seed:
            body["seed"] = req.seed
        stops = [s for s in req.stop if s][:MAX_STOPS]
        if stops:
            body["stop"] = stops
        return body

    def _parse_generation(self, data: Any) -> _Generation:
        choice = _choice(data)
        if self.endpoint == "chat":
            message = choice.get("message")
            if not isinstance(message, dict):
                raise Malformed("the answer has no message")
            text = message.get("content")
            if text is None:
                text = message.get("refusal")  # OpenAI puts a safety refusal here instead of content
        else:
            text = choice.get("text")
        if not isinstance(text, str):
            raise Malformed("the answer has no text")
        usage = data.get("usage") if isinstance(data.get("usage"), dict) else {}
        tokens = usage.get("completion_tokens")
        return _Generation(text, choice.get("finish_reason"), tokens if isinstance(tokens, int) else None,
                           data.get("model"), data.get("system_fingerprint"))

    def _pool(self, fn: Any, items: list[Any]) -> list[Any]:
        self.http.cancel.clear()  # a previous interrupt does not poison a reused backend
        return run_concurrently(fn, items, self.options.concurrency, cancel=self.http.cancel)

    def generate(self, requests: list[GenerateRequest]) -> list[Response]:
        return self._pool(self._generate_one, requests)

    def _generate_one(self, req: GenerateRequest) -> Response:
        out = self.http.call("POST", self._gen_path, self._parse_generation, body=self._gen_body(req))
        if isinstance(out, CallFailure):
            return self._failed("generate", out)
        self._answered()
        self._note(out.model, out.system_fingerprint)
        text, cut = out.text, _first_stop(out.text, req.stop)  # servers may keep the stop string, or see only 4
        if cut is not None:
            text, finish = text[:cut], "stop"
        elif out.finish == "length":
            finish = "length"
        else:
            finish = "stop" if req.stop else "eos"
        return Response(kind="generate", text=text, n_tokens=out.tokens, finish_reason=finish)  # type: ignore[arg-type]

    # ---- log-likelihood ------------------------------------------------------------
    def _echo_body(self, prompt: str) -> dict[str, Any]:
        return {"model": self.api_model, "prompt": prompt, "echo": True, "logprobs": 1,
                "max_tokens": self._echo_max_tokens, "temperature": 0.0}

    def _parse_echo(self, data: Any) -> _Echo:
        choice = _choice(data)
        lp = choice.get("logprobs")
        if not isinstance(lp, dict):
            raise Malformed("the answer has no logprobs (the server ignored echo/logprobs)")
        tokens, lps, top = lp.get("tokens"), lp.get("token_logprobs"), lp.get("top_logprobs")
        if not isinstance(tokens, list) or not isinstance(lps, list) or len(tokens) != len(lps) or not lps:
            raise Malformed("logprobs.tokens and logprobs.token_logprobs are missing or of different lengths")
        if not all(x is None or isinstance(x, (int, float)) for x in lps):
            raise Malformed("logprobs.token_logprobs holds non-numbers")
        usage = data.get("usage") if isinstance(data.get("usage"), dict) else {}
        n = usage.get("prompt_tokens")
        if isinstance(n, int) and 0 < n <= len(lps):
            n_prompt = n
        elif self._echo_max_tokens == 0:
            n_prompt = len(lps)
        else:
            raise Malformed("usage.prompt_tokens is missing, so prompt and generated tokens cannot be told apart")
        return _Echo([str(t) for t in tokens], lps, top if isinstance(top, list) else None, n_prompt,
                     data.get("model"), data.get("system_fingerprint"))

    def _split(self, req: LoglikelihoodRequest) -> tuple[str, str]:
        """(context, full prompt) with the lm-evaluation-harness boundary rule of the `hf` backend."""
        context, continuation = req.context, req.continuation
        if context == "" and self.options.bos_text:
            context = self.options.bos_text
        n_spaces = len(context) - len(context.rstrip())
        if n_spaces and context.strip():
            context, continuation = context[:-n_spaces], context[-n_spaces:] + continuation
        return context, context + continuation

    def _count_tokens(self, context: str) -> int | CallFailure:
        got = self.http.call("POST", "completions", self._parse_echo, body=self._echo_body(context))
        return got if isinstance(got, CallFailure) else got.n_prompt

    def loglikelihood(self, requests: list[LoglikelihoodRequest]) -> list[Response]:
        if self.loglikelihood_reason is not None:
            return [self._failed("loglikelihood", self.loglikelihood_reason) for _ in requests]
        split = [self._split(r) for r in requests]
        contexts = sorted({c for c, _ in split if c and c not in self._context_tokens})
        counted = self._pool(self._count_tokens, contexts)
        failures = {c: n for c, n in zip(contexts, counted, strict=True) if isinstance(n, CallFailure)}
        self._context_tokens.update({c: n for c, n in zip(contexts, counted, strict=True) if isinstance(n, int)})
        return self._pool(lambda cw: self._score_one(cw[0], cw[1], failures), split)

    def _score_one(self, context: str, prompt: str, failures: dict[str, CallFailure]) -> Response:
        if context in failures:
            return self._failed("loglikelihood", failures[context])
        got = self.http.call("POST", "completions", self._parse_echo, body=self._echo_body(prompt))
        if isinstance(got, CallFailure):
            return self._failed("loglikelihood", got)
        self._answered()
        self._note(got.model, got.system_fingerprint)
        if context:
            n_ctx = self._context_tokens[context]
        elif got.logprobs[0] is None and "".join(got.tokens[1 : got.n_prompt]) == prompt:
            n_ctx = 1  # the server put a BOS token first: condition on it, as the hf backend does
        elif got.logprobs[0] is None:
            return self._failed("loglikelihood", "an empty context cannot be scored: the server adds no BOS token, so "
                                "the first token has no log-probability; set --option bos_text=<the model's BOS "
                                "text, e.g. <|endoftext|>>")
        else:
            n_ctx = 0
        span = range(n_ctx, got.n_prompt)
        if not span:
            return self._failed("loglikelihood", f"the continuation adds no tokens after the context "
                                f"({got.n_prompt} prompt tokens, {n_ctx} of them context)")
        values = [got.logprobs[j] for j in span]
        if any(v is None for v in values):
            return self._failed("loglikelihood", "the server returned no log-probability for a continuation token")
        greedy: bool | None = True
        for j in span:
            alts = got.top[j] if got.top is not None and j < len(got.top) else None
            if not isinstance(alts, dict) or not alts:
                greedy = None
                break
            if max(float(v) for v in alts.values()) > float(got.logprobs[j]) + 1e-5:  # type: ignore[arg-type]
                greedy = False
        return Response(kind="loglikelihood", loglikelihood=float(sum(values)), is_greedy=greedy,  # type: ignore[arg-type]
                        n_tokens=len(span))

    def close(self) -> None:
        self.http.client.close()


def _parse_listing(data: Any) -> list[str]:
    items = data.get("data") if isinstance(data, dict) else None
    if not isinstance(items, list):
        raise Malformed("GET /models answered without a data list")
    return [str(m["id"]) for m in items if isinstance(m, dict) and "id" in m]
