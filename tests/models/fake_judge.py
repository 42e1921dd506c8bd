"""A scripted OpenAI-compatible chat-completions server on a free loopback port, for the LLM judge.

A real HTTP server in a thread, so the judge's real httpx path runs. Each request is recorded
(path, headers, JSON body) and answered by the script: a list consumed in order, each entry either
the answer's text, or a :class:`Reply` (a status and raw body, or a hold that answers only once
released: a provider that does not answer in time), or a function of the request's user prompt
giving either of those. With the script exhausted, the last entry keeps answering.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

TOKENS_PER_CALL = 100  # the usage every scripted completion reports


@dataclass
class Reply:
    """A scripted reply other than a plain answer."""

    status: int = 200
    body: bytes = b""
    hold: threading.Event | None = None  # wait for this before answering (a slow provider)


Entry = str | Reply | Callable[[str], "str | Reply"]


@dataclass
class Request:
    """One request the server received."""

    path: str
    headers: dict[str, str]
    body: dict[str, Any]

    @property
    def prompt(self) -> str:
        """The user message's text."""
        return str(next(m["content"] for m in self.body["messages"] if m["role"] == "user"))


@dataclass
class FakeJudge:
    """The running server: its base URL (``.../v1``), its script and what it received."""

    url: str
    script: list[Entry]
    requests: list[Request] = field(default_factory=list)
    served: int = 0

    def next_reply(self, prompt: str) -> str | Reply:
        entry = self.script[min(self.served, len(self.script) - 1)]
        self.served += 1
        return entry(prompt) if callable(entry) else entry


def completion(text: str, model: str) -> bytes:
    """An OpenAI chat completion answering ``text``."""
    return json.dumps(
        {
            "id": "chatcmpl-judge",
            "object": "chat.completion",
            "created": 1_700_000_000,
            "model": model,
            "choices": [
                {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
            ],
            "usage": {
                "prompt_tokens": TOKENS_PER_CALL - 10,
                "completion_tokens": 10,
                "total_tokens": TOKENS_PER_CALL,
            },
        }
    ).encode()


def _handler(fake: FakeJudge) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:  # quiet
            pass

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers.get("content-length") or 0)) or b"{}")
            request = Request(self.path, {k.lower(): v for k, v in self.headers.items()}, body)
            fake.requests.append(request)
            if not self.path.endswith("/chat/completions"):
                self._send(404, b'{"error": "not found"}')
                return
            reply = fake.next_reply(request.prompt)
            if isinstance(reply, str):
                self._send(200, completion(reply, body.get("model", "")))
                return
            if reply.hold is not None:
                reply.hold.wait(30)
            self._send(reply.status, reply.body or completion("", body.get("model", "")))

        def _send(self, status: int, data: bytes) -> None:
            try:
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            except OSError:  # the client gave up waiting (a timeout test): nobody to answer
                pass

    return Handler


@contextmanager
def serving(*script: Entry) -> Iterator[FakeJudge]:
    """A scripted judge server on a free loopback port for the ``with`` block."""
    fake = FakeJudge("", list(script))
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(fake))
    fake.url = f"http://127.0.0.1:{server.server_address[1]}/v1"
    # A short poll interval: shutdown waits for one, and every test starts its own server.
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    try:
        yield fake
    finally:
        for entry in fake.script:  # release any held reply so its thread ends
            if isinstance(entry, Reply) and entry.hold is not None:
                entry.hold.set()
        server.shutdown()
        server.server_close()
        thread.join(5)
