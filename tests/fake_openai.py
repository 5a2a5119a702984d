"""A scripted OpenAI-compatible chat server on 127.0.0.1 for testing the HTTP teacher backend.

What it answers depends on a marker in the passage: RATE (429 with Retry-After once, then fine),
FAIL (always 500), SLOW (sleeps past the client's timeout), GARBAGE (an unparseable reply),
TRUNC (a truncated JSON body), SPLIT (grade 2 as two top tokens, "2" and " 2").
Anything else gets a valid answer, with logprobs if asked. ``refuses`` names what the server answers with
OpenAI's refusals of newer models ("max_tokens", "temperature": 400; "logprobs": 403), and ``thinks`` how many
reasoning tokens it spends before answering unless asked for reasoning_effort "minimal" or "none"; ``status``
answers every request with that HTTP error (401: a wrong key, 404: a wrong model name).
"""

from __future__ import annotations

import json
import math
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class FakeOpenAI:
    def __init__(
        self,
        *,
        grade_for=lambda text: 2,
        logprobs: bool = True,
        delay: float = 0.0,
        refuses: frozenset[str] = frozenset(),
        thinks: int = 0,
        status: int | None = None,
    ):
        self.grade_for, self.logprobs, self.delay = grade_for, logprobs, delay
        self.refuses, self.thinks, self.status = refuses, thinks, status
        self.requests: list[dict[str, Any]] = []
        self.auth_headers: list[str] = []
        self.arrivals: list[float] = []  # time.monotonic() of each request
        self.inflight = self.max_inflight = 0
        self.rate_limited: set[str] = set()
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with server._lock:
                    server.requests.append(body)
                    server.arrivals.append(time.monotonic())
                    server.auth_headers.append(self.headers.get("Authorization", ""))
                    server.inflight += 1
                    server.max_inflight = max(server.max_inflight, server.inflight)
                try:
                    server.handle(self, body)
                finally:
                    with server._lock:
                        server.inflight -= 1

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def __enter__(self) -> FakeOpenAI:
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def handle(self, h: BaseHTTPRequestHandler, body: dict[str, Any]) -> None:
        text = " ".join(m["content"] for m in body["messages"])
        if self.delay:
            time.sleep(self.delay)
        if "RATE" in text:
            with self._lock:
                first = text not in self.rate_limited
                self.rate_limited.add(text)
            if first:
                return self._send(h, 429, {"error": {"message": "slow down"}}, {"Retry-After": "0"})
        if "FAIL" in text:
            return self._send(h, 500, {"error": {"message": "internal error"}})
        if "SLOW" in text:
            time.sleep(3)
        if "TRUNC" in text:
            h.send_response(200)
            h.send_header("Content-Type", "application/json")
            h.end_headers()
            h.wfile.write(b'{"id": "x", "choices": [{"mess')
            return None
        if self.status:  # every request refused, as with a wrong key (401) or model name (404)
            return self._send(h, self.status, _error(f"refused with {self.status}", None, None))
        if refusal := self._refusal(body):
            return self._send(h, *refusal)
        grade = self.grade_for(text)
        content = "maybe relevant" if "GARBAGE" in text else str(grade)
        budget = body.get("max_completion_tokens", body.get("max_tokens", 1 << 30))
        thinking = 0 if body.get("reasoning_effort") in ("minimal", "none") else self.thinks
        if thinking >= budget:  # a reasoning model that spends the whole budget before it answers
            content, thinking = "", budget
        choice: dict[str, Any] = {
            "index": 0,
            "finish_reason": "length" if not content else "stop",
            "message": {"role": "assistant", "content": content},
        }
        if body.get("logprobs") and self.logprobs and "GARBAGE" not in text:
            top = [{"token": str(g), "logprob": math.log(0.7 if g == grade else 0.1), "bytes": None} for g in range(4)]
            if "SPLIT" in text:  # the grade offered as two tokens, each less likely than grade 1
                split = (("1", 0.4), ("2", 0.35), (" 2", 0.25))
                top = [{"token": t, "logprob": math.log(p), "bytes": None} for t, p in split]
            choice["logprobs"] = {
                "content": [{"token": str(grade), "logprob": math.log(0.7), "bytes": None, "top_logprobs": top}]
            }
        self._send(
            h,
            200,
            {
                "id": "c1",
                "object": "chat.completion",
                "created": 0,
                "model": body["model"],
                "choices": [choice],
                "usage": {"prompt_tokens": 50, "completion_tokens": 1 + thinking, "total_tokens": 51 + thinking},
            },
        )
        return None

    def _refusal(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]] | None:
        """OpenAI's answers to a request a newer model does not take (their wording, type, param and code)."""
        if "max_tokens" in self.refuses and "max_tokens" in body:
            return 400, _error(
                "Unsupported parameter: 'max_tokens' is not supported with this model. "
                "Use 'max_completion_tokens' instead.",
                "max_tokens",
                "unsupported_parameter",
            )
        if "temperature" in self.refuses and body.get("temperature", 1) != 1:
            return 400, _error(
                f"Unsupported value: 'temperature' does not support {body['temperature']} with this model. "
                "Only the default (1) value is supported.",
                "temperature",
                "unsupported_value",
            )
        if "logprobs" in self.refuses and body.get("logprobs"):
            return 403, _error("You are not allowed to request logprobs from this model", None, None)
        return None

    @staticmethod
    def _send(h: BaseHTTPRequestHandler, status: int, payload: dict[str, Any], headers: dict[str, str] | None = None):
        data = json.dumps(payload).encode()
        h.send_response(status)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            h.send_header(k, v)
        h.end_headers()
        h.wfile.write(data)


def _error(message: str, param: str | None, code: str | None) -> dict[str, Any]:
    return {"error": {"message": message, "type": "invalid_request_error", "param": param, "code": code}}
