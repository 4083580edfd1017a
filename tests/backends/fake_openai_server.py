"""A small OpenAI-compatible server on 127.0.0.1 for fault injection in the openai backend tests.

It answers `/v1/models`, `/v1/completions` (with vLLM-style `echo` + `logprobs`
prompt log-probabilities) and `/v1/chat/completions`. Markers in a prompt script
the faults:

    [429]       always 429 with `Retry-After` (default "0")
    [500]       always 500
    [malformed] 200 with a truncated JSON body
    [hang]      waits `hang_s` before answering (the client times out first)
    [flaky:N]   503 for the first N hits of that prompt, then a normal answer
    [leak]      400 whose message echoes the prompt, then the Authorization header it received
    [bad]       400 (not retryable)
    [slow]      answers after 0.2 s (to observe concurrency)

`echo_key=True` makes a hostile server: every answer carries the bearer token
it received, whole and in part (a 16-character piece from its middle), in the
model id, the system fingerprint, the model listing and the generated or
echoed text.

Generation is deterministic: the prompt's words reversed and cycled, one word
per token, with server-side stop strings. The default log-probability scorer
splits the prompt into words (`\\s*\\S+`) and gives word k (k >= 1) the value
-0.5 * len(word.strip()); the first token has none, as on vLLM. Words of at
most two characters count as the greedy choice. Everything binds to loopback,
every wait is bounded, and `stop()` releases hanging handlers.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections import Counter
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from typing_extensions import Self

Scored = tuple[list[str], list[float | None], list[dict[str, float] | None]]

_FLAKY = re.compile(r"\[flaky:(\d+)\]")
MARKERS = ("[429]", "[500]", "[malformed]", "[hang]", "[leak]", "[bad]", "[slow]")


def word_scorer(prompt: str, bos: str | None = None) -> Scored:
    """Word-level tokens; lp(word k) = -0.5 * len(word.strip()); greedy when the word has <= 2 characters."""
    tokens = ([bos] if bos else []) + re.findall(r"\s*\S+|\s+$", prompt)
    lps: list[float | None] = [None]
    tops: list[dict[str, float] | None] = [None]
    for tok in tokens[1:]:
        lp = -0.5 * len(tok.strip())
        lps.append(lp)
        tops.append({tok: lp} if len(tok.strip()) <= 2 else {" zz": lp + 0.25})
    return tokens, lps, tops


def hf_scorer(model_dir: Path) -> Callable[[str], Scored]:
    """Prompt log-probabilities from a real transformers model, tokenised as vLLM does (special tokens on)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    lock = threading.Lock()

    def score(prompt: str) -> Scored:
        ids = tok(prompt)["input_ids"]
        with lock, torch.no_grad():
            logp = torch.log_softmax(model(torch.tensor([ids])).logits[0].float(), -1)
        lps: list[float | None] = [None]
        tops: list[dict[str, float] | None] = [None]
        for i in range(1, len(ids)):
            row = logp[i - 1]
            lps.append(float(row[ids[i]]))
            best = int(row.argmax())
            tops.append({tok.decode([best]) + f"#{best}": float(row[best])})
        return [tok.decode([i]) for i in ids], lps, tops

    return score


class FakeOpenAIServer:
    """Start with `with FakeOpenAIServer(...) as srv:`; `srv.url` is the base URL (ends in /v1)."""

    def __init__(self, *, api_key: str | None = None, model: str = "fake-model", logprobs: bool = True,
                 echo_zero_ok: bool = True, list_models: bool = True, bos: str | None = None,
                 scorer: Callable[[str], Scored] | None = None, hang_s: float = 3.0, retry_after: str | None = "0",
                 system_fingerprint: str = "fp_fake_1", echo_key: bool = False) -> None:
        self.api_key = api_key
        self.model = model
        self.logprobs = logprobs
        self.echo_zero_ok = echo_zero_ok
        self.list_models = list_models
        self.bos = bos
        self.scorer = scorer or (lambda p: word_scorer(p, bos))
        self.hang_s = hang_s
        self.retry_after = retry_after
        self.system_fingerprint = system_fingerprint
        self.echo_key = echo_key
        self.hits: Counter[str] = Counter()
        self.bodies: list[tuple[str, dict[str, Any]]] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ---- lifecycle ----------------------------------------------------------------
    @property
    def url(self) -> str:
        assert self._httpd is not None
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"

    def start(self) -> Self:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:  # keep test output quiet
                pass

            def do_GET(self) -> None:
                server._handle(self, "GET")

            def do_POST(self) -> None:
                server._handle(self, "POST")

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---- handling -------------------------------------------------------------------
    def _send(self, h: BaseHTTPRequestHandler, status: int, payload: Any, headers: dict[str, str] | None = None,
              raw: bytes | None = None) -> None:
        data = raw if raw is not None else json.dumps(payload).encode()
        try:
            h.send_response(status)
            h.send_header("Content-Type", "application/json")
            h.send_header("Content-Length", str(len(data)))
            for k, v in (headers or {}).items():
                h.send_header(k, v)
            h.end_headers()
            h.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (timeout); nothing to do

    def _handle(self, h: BaseHTTPRequestHandler, method: str) -> None:
        with self._lock:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            self._route(h, method)
        finally:
            with self._lock:
                self.in_flight -= 1

    def _route(self, h: BaseHTTPRequestHandler, method: str) -> None:
        length = int(h.headers.get("Content-Length") or 0)
        body = json.loads(h.rfile.read(length) or b"{}") if length else {}
        auth = h.headers.get("Authorization") or ""
        if self.api_key is not None and auth != f"Bearer {self.api_key}":
            shown = auth.removeprefix("Bearer ") or "(none)"
            return self._send(h, 401, {"error": {"message": f"Incorrect API key provided: {shown}", "type": "invalid_request_error"}})
        path = h.path.split("?")[0]
        key = auth.removeprefix("Bearer ")
        leak = f"{key} / {key[4:20]}" if self.echo_key and key else ""
        model_id = f"{self.model}:{leak}" if leak else self.model
        fingerprint = f"{self.system_fingerprint}:{leak}" if leak else self.system_fingerprint
        if method == "GET" and path == "/v1/models":
            if not self.list_models:
                return self._send(h, 404, {"detail": "Not Found"})
            listed = [{"id": m, "object": "model", "owned_by": leak or "test"} for m in dict.fromkeys([self.model, model_id])]
            return self._send(h, 200, {"object": "list", "data": listed})
        if method != "POST" or path not in ("/v1/completions", "/v1/chat/completions"):
            return self._send(h, 404, {"detail": "Not Found"})
        chat = path.endswith("chat/completions")
        prompt = body["messages"][-1]["content"] if chat else body.get("prompt", "")
        with self._lock:
            self.bodies.append((path, body))
            self.hits[prompt] += 1
            for m in MARKERS:
                if m in prompt:
                    self.hits[m] += 1
            hit = self.hits[prompt]
        if body.get("model") != self.model:
            return self._send(h, 404, {"error": {"message": f"The model `{body.get('model')}` does not exist"}})
        if "[429]" in prompt:
            extra = {"Retry-After": self.retry_after} if self.retry_after is not None else {}
            return self._send(h, 429, {"error": {"message": "Rate limit reached"}}, extra)
        if "[500]" in prompt:
            return self._send(h, 500, {"error": {"message": "internal error"}})
        flaky = _FLAKY.search(prompt)
        if flaky and hit <= int(flaky.group(1)):
            return self._send(h, 503, {"error": {"message": "overloaded"}})
        if "[malformed]" in prompt:
            return self._send(h, 200, None, raw=b'{"choices": [{"text": "tru')
        if "[leak]" in prompt:
            return self._send(h, 400, {"error": {"message": f"{prompt} rejected: bad request from {auth}"}})
        if "[bad]" in prompt:
            return self._send(h, 400, {"error": {"message": "prompt is too long"}})
        if "[hang]" in prompt:
            self._stop.wait(self.hang_s)
        if "[slow]" in prompt:
            time.sleep(0.2)
        if not chat and body.get("echo") and body.get("logprobs") is not None and self.logprobs:
            return self._echo(h, body, prompt, model_id, leak)
        text, finish, n = self._reply(prompt, int(body.get("max_tokens") or body.get("max_completion_tokens") or 16),
                                      body.get("stop") or [])
        if leak:
            text = f" {leak}{text}"
        choice: dict[str, Any] = {"index": 0, "finish_reason": finish}
        if chat:
            choice["message"] = {"role": "assistant", "content": text}
        else:
            choice["text"] = text
        return self._send(h, 200, {"id": "cmpl-1", "object": "text_completion", "model": model_id,
                                   "system_fingerprint": fingerprint, "choices": [choice],
                                   "usage": {"prompt_tokens": len(prompt.split()), "completion_tokens": n}})

    @staticmethod
    def _reply(prompt: str, max_tokens: int, stops: list[str]) -> tuple[str, str, int]:
        words = list(reversed(prompt.split())) or ["empty"]
        out = [" " + words[i % len(words)] for i in range(max_tokens)]
        text = "".join(out)
        hits = [text.find(s) for s in stops if s and s in text]
        if hits:
            return text[: min(hits)], "stop", len(out)
        return text, "length", len(out)

    def _echo(self, h: BaseHTTPRequestHandler, body: dict[str, Any], prompt: str, model_id: str, leak: str) -> None:
        max_tokens = int(body.get("max_tokens") if body.get("max_tokens") is not None else 16)
        if max_tokens == 0 and not self.echo_zero_ok:
            return self._send(h, 400, {"error": {"message": "max_tokens must be at least 1"}})
        tokens, lps, tops = self.scorer(prompt)
        n_prompt = len(tokens)
        text = prompt
        if max_tokens > 0:  # one generated token after the prompt, as a real server would add
            tokens, lps, tops = tokens + [" gen"], lps + [-0.1], tops + [{" gen": -0.1}]
            text += " gen"
        offsets, pos = [], 0
        for t in tokens:
            offsets.append(pos)
            pos += len(t)
        logprobs = {"tokens": tokens, "token_logprobs": lps, "top_logprobs": tops, "text_offset": offsets}
        if leak:
            text += f" {leak}"
        return self._send(h, 200, {"id": "cmpl-2", "object": "text_completion", "model": model_id,
                                   "choices": [{"index": 0, "text": text, "logprobs": logprobs, "finish_reason": "length"}],
                                   "usage": {"prompt_tokens": n_prompt, "completion_tokens": max(max_tokens, 0)}})
