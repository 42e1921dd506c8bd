"""A fake OpenAI-compatible server on loopback: chat completions (plain, tool calls, streaming with
usage) and embeddings, with fixed token counts, so the real ``openai`` client and the
instrumentations around it run offline.

Scripted like a model that uses its tools: offered tools and not yet called, it calls one (a
``transfer_to_*`` hand-off first, as an Agents SDK triage agent would); after a hand-off it calls
the first other tool; after a tool's result it answers in text.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

# Fixed usage of every chat completion: the tests price exactly this.
USAGE = {
    "prompt_tokens": 100,
    "completion_tokens": 20,
    "total_tokens": 120,
    "prompt_tokens_details": {"cached_tokens": 40, "audio_tokens": 0},
    "completion_tokens_details": {"reasoning_tokens": 5, "audio_tokens": 0},
}
EMBEDDING_TOKENS = 8
ANSWER = "The answer is 42."


def _arguments(tool: dict[str, Any]) -> str:
    schema = tool.get("function", {}).get("parameters") or {}
    props = schema.get("properties") or {}
    return json.dumps({k: "omium" for k in schema.get("required", list(props))})


def _tool_call(messages: list[dict[str, Any]], tools: list[dict[str, Any]]) -> dict[str, Any] | None:
    if not tools:
        return None
    names = {t["function"]["name"]: t for t in tools if t.get("type") == "function"}
    called = [
        c["function"]["name"] for m in messages if m.get("role") == "assistant" for c in m.get("tool_calls") or []
    ]
    last = messages[-1] if messages else {}
    transfers = [n for n in names if n.startswith("transfer_to_")]
    others = [n for n in names if not n.startswith("transfer_to_") and n not in called]
    if last.get("role") == "tool":
        # After a hand-off the new agent uses its own tool; after a tool's result, answer.
        if called and called[-1].startswith("transfer_to_") and others:
            name = others[0]
        else:
            return None
    elif transfers:
        name = transfers[0]
    elif others:
        name = others[0]
    else:
        return None
    return {"id": f"call_{len(called) + 1}", "type": "function",
            "function": {"name": name, "arguments": _arguments(names[name])}}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def _json(self, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self) -> None:
        request = json.loads(self.rfile.read(int(self.headers.get("content-length") or 0)) or b"{}")
        self.server.requests.append((self.path, request))  # type: ignore[attr-defined]
        if self.path.endswith("/embeddings"):
            inputs = request.get("input")
            count = len(inputs) if isinstance(inputs, list) else 1
            self._json({
                "object": "list",
                "model": request.get("model", ""),
                "data": [{"object": "embedding", "index": i, "embedding": [0.1, 0.2, 0.3]} for i in range(count)],
                "usage": {"prompt_tokens": EMBEDDING_TOKENS, "total_tokens": EMBEDDING_TOKENS},
            })
        elif self.path.endswith("/chat/completions"):
            self._chat(request)
        else:
            self.send_response(404)
            self.send_header("content-length", "0")
            self.end_headers()

    def _chat(self, request: dict[str, Any]) -> None:
        call = _tool_call(request.get("messages") or [], request.get("tools") or [])
        message: dict[str, Any] = {"role": "assistant", "content": None if call else ANSWER}
        if call:
            message["tool_calls"] = [call]
        finish = "tool_calls" if call else "stop"
        base = {"id": "chatcmpl-omium", "created": 1_700_000_000, "model": request.get("model", ""),
                "system_fingerprint": "fp_omium"}
        if not request.get("stream"):
            self._json({**base, "object": "chat.completion", "usage": USAGE,
                        "choices": [{"index": 0, "message": message, "finish_reason": finish, "logprobs": None}]})
            return
        chunks: list[dict[str, Any]] = []
        if call:
            chunks.append({"index": 0, "delta": {"role": "assistant", "tool_calls": [{"index": 0, **call}]}})
        else:
            chunks += [{"index": 0, "delta": {"role": "assistant", "content": ""}}]
            chunks += [{"index": 0, "delta": {"content": word}} for word in ANSWER.split(" ")[:1]]
            chunks += [{"index": 0, "delta": {"content": " " + " ".join(ANSWER.split(" ")[1:])}}]
        events = [{**base, "object": "chat.completion.chunk", "choices": [c]} for c in chunks]
        events.append({**base, "object": "chat.completion.chunk",
                       "choices": [{"index": 0, "delta": {}, "finish_reason": finish}]})
        if (request.get("stream_options") or {}).get("include_usage"):
            events.append({**base, "object": "chat.completion.chunk", "choices": [], "usage": USAGE})
        body = "".join(f"data: {json.dumps(e)}\n\n" for e in events) + "data: [DONE]\n\n"
        data = body.encode()
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@contextmanager
def serving() -> Iterator[tuple[str, list[tuple[str, dict[str, Any]]]]]:
    """The server's base URL (``http://127.0.0.1:PORT/v1``) and the requests it received."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.requests = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1", server.requests  # type: ignore[attr-defined]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
