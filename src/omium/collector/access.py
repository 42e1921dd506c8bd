"""Who may call which door: one ASGI middleware in front of every route of the HTTP server.

Each request passes, in order:

1. **Host** — on a loopback server the ``Host`` header must name this machine (``127.0.0.1``,
   ``localhost``, ``[::1]`` or ``OMIUM_ALLOWED_HOSTS``): a web page that rebinds its own DNS name
   to 127.0.0.1 still sends its own name, and is refused (421).
2. **Token** — ``GET /v1/health`` and ``/v1/version`` are open (liveness probes). OTLP ingest
   (``/v1/traces``, ``/v1/logs``, ``/v1/metrics``) is open on a loopback server unless
   ``OMIUM_INGEST_TOKEN`` is set; beyond loopback it needs the ingest or the API token. Every
   other call — SQL, control, runs, store, stats — needs the API token (401), compared in
   constant time.
3. **Origin** — a state-changing call that carries a browser ``Origin`` is refused (403) unless
   the origin is in ``OMIUM_ALLOWED_ORIGINS``: browsers attach it to cross-site requests.
4. **Content type** — JSON APIs take ``application/json`` only, ``/v1/insert`` Arrow only (415),
   so that no HTML form or ``text/plain`` fetch can reach them without a CORS preflight.
5. **Load** — more than ``OMIUM_MAX_REQUESTS`` requests in progress are answered 503 with
   ``Retry-After``; health checks are always answered.
6. **Body size** — a declared ``Content-Length`` past the door's cap is refused before anything
   is read, and a streamed body is counted as it arrives (413), never read whole first.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from starlette.exceptions import HTTPException

from omium.config import LOOPBACK_HOSTS, Settings

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

OPEN_PATHS = frozenset({"/v1/health", "/v1/version"})
INGEST_PATHS = frozenset({"/v1/traces", "/v1/logs", "/v1/metrics"})
ARROW_STREAM = "application/vnd.apache.arrow.stream"
JSON = "application/json"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return bytes(value).decode("latin-1")
    return None


def presented_token(scope: Scope) -> str | None:
    """The token in ``Authorization: Bearer …`` (or ``X-Omium-Token``), if any."""
    header = _header(scope, b"authorization") or ""
    if header[:7].lower() == "bearer ":
        return header[7:].strip()
    return _header(scope, b"x-omium-token")


def token_in(scope: Scope, *tokens: str | None) -> bool:
    """True when the request carries one of ``tokens`` (constant-time comparison each)."""
    presented = presented_token(scope)
    if not presented:
        return False
    given = presented.encode("utf-8", "surrogateescape")
    return any(
        token is not None and hmac.compare_digest(given, token.encode("utf-8", "surrogateescape"))
        for token in tokens
    )


def host_name(header: str) -> str:
    """The name in a ``Host`` header, without its port; IPv6 literals without brackets."""
    header = header.strip().lower()
    if header.startswith("["):
        return header[1 : header.find("]")] if "]" in header else header
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header


def ingest_tokens(settings: Settings) -> tuple[str, ...]:
    """Tokens OTLP ingest (HTTP and gRPC) accepts; empty means open: a loopback server without
    ``OMIUM_INGEST_TOKEN``."""
    if not settings.ingest_token and settings.loopback:
        return ()
    return tuple(t for t in (settings.ingest_token, settings.api_token) if t)


def body_cap(settings: Settings, path: str) -> int:
    """The largest request body the door at ``path`` reads (compressed OTLP bodies included)."""
    if path in INGEST_PATHS or path == "/v1/insert":
        return settings.max_body_bytes
    return settings.max_api_body_bytes


def expected_content_type(method: str, path: str) -> str | None:
    """The content type a state-changing call to ``path`` must carry (None: the handler decides)."""
    if method in SAFE_METHODS or path in INGEST_PATHS:
        return None  # OTLP/HTTP answers 415 itself, with the types the specification names
    return ARROW_STREAM if path == "/v1/insert" else JSON


class AccessControl:
    """The middleware. ``settings`` are the server's; ``in_flight`` counts requests in progress."""

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.settings = settings
        self.in_flight = 0
        self.refused: dict[str, int] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        refusal = self._refusal(scope)
        if refusal is not None:
            status, message, headers = refusal
            self.refused[str(status)] = self.refused.get(str(status), 0) + 1
            await _answer(send, status, message, headers)
            return
        path: str = scope["path"]
        counted = path not in OPEN_PATHS
        if counted:
            if self.in_flight >= self.settings.max_requests:
                self.refused["503"] = self.refused.get("503", 0) + 1
                await _answer(send, 503, "server busy: too many requests in progress", {"retry-after": "1"})
                return
            self.in_flight += 1
        try:
            await self.app(scope, _counted(receive, body_cap(self.settings, path)), send)
        finally:
            if counted:
                self.in_flight -= 1

    def _refusal(self, scope: Scope) -> tuple[int, str, dict[str, str]] | None:
        settings = self.settings
        method: str = scope["method"]
        path: str = scope["path"]
        if settings.loopback:
            name = host_name(_header(scope, b"host") or "")
            if name not in LOOPBACK_HOSTS and name not in settings.allowed_hosts:
                return 421, f"Host {name!r} is not this server's name (set OMIUM_ALLOWED_HOSTS)", {}
        if path in OPEN_PATHS and method in SAFE_METHODS:
            return None
        if path in INGEST_PATHS:
            tokens = ingest_tokens(settings)
            if tokens and not token_in(scope, *tokens):
                return (
                    401,
                    "OTLP ingest on this server needs a token ('Authorization: Bearer <token>')",
                    {"www-authenticate": "Bearer"},
                )
        elif not token_in(scope, settings.api_token):
            return (
                401,
                (
                    "this call needs the server's API token ('Authorization: Bearer <token>'); "
                    "local clients read it from $OMIUM_HOME/api-token"
                ),
                {"www-authenticate": "Bearer"},
            )
        if method not in SAFE_METHODS:
            origin = _header(scope, b"origin")
            if origin is not None and origin.strip().lower() not in settings.allowed_origins:
                return 403, f"cross-origin calls from {origin!r} are refused (set OMIUM_ALLOWED_ORIGINS)", {}
        expected = expected_content_type(method, path)
        if expected is not None:
            given = (_header(scope, b"content-type") or "").split(";")[0].strip().lower()
            if given != expected:
                return 415, f"{method} {path} takes Content-Type {expected}, not {given or 'none'!r}", {}
        declared = _header(scope, b"content-length")
        cap = body_cap(settings, path)
        if declared is not None and declared.strip().isdigit() and int(declared) > cap:
            return 413, f"request body larger than {cap} bytes", {}
        return None


def _counted(receive: Receive, cap: int) -> Receive:
    """``receive`` that refuses (413) once more than ``cap`` body bytes have arrived."""
    size = 0

    async def wrapped() -> Message:
        nonlocal size
        message = await receive()
        if message["type"] == "http.request":
            size += len(message.get("body", b""))
            if size > cap:
                raise HTTPException(413, f"request body larger than {cap} bytes")
        return message

    return wrapped


async def _answer(send: Send, status: int, message: str, headers: dict[str, str]) -> None:
    body = json.dumps({"error": message}).encode()
    raw_headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    raw_headers += [(k.encode(), v.encode()) for k, v in headers.items()]
    await send({"type": "http.response.start", "status": status, "headers": raw_headers})
    await send({"type": "http.response.body", "body": body})


__all__ = ["AccessControl", "body_cap", "host_name", "ingest_tokens", "presented_token", "token_in"]
