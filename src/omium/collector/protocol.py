"""uvicorn's HTTP protocol (httptools, its C parser) with the read deadlines and connection cap it lacks.

uvicorn times out idle keep-alive connections, but not a client that opens a socket and sends
half a request line, or headers and then a trickle of body: 300 such sockets held every slot of
``limit_concurrency`` (which counts connections) and every endpoint answered 503 for 70 s. Here:

* a client has ``header_timeout`` seconds from its first byte (or from connecting) to finish a
  request's line and headers, and ``body_timeout`` seconds from then to finish its body; past
  either, the socket is closed;
* more than ``max_connections`` open sockets: the newest is closed at once, so a flood costs
  file descriptors only up to the cap;
* requests in progress are bounded separately (:mod:`omium.collector.access`), so idle sockets
  never make a working client wait.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

logger = logging.getLogger(__name__)


class _Deadlines:
    """The read deadlines and the connection cap, for either of uvicorn's HTTP protocols.

    A subclass says which phase the client is in (``_arm("headers" | "body")`` or ``_cancel()``);
    the app's own time is never limited here.
    """

    max_connections: int = 512
    header_timeout: float = 10.0
    body_timeout: float = 60.0
    _last_cap_log: float = 0.0
    # Provided by the uvicorn protocol this is mixed into.
    connections: set[Any]
    loop: asyncio.AbstractEventLoop
    transport: asyncio.Transport
    client: Any

    def _init_deadlines(self) -> None:
        self._deadline: asyncio.TimerHandle | None = None
        self._phase: str | None = None

    def _over_cap(self, transport: asyncio.Transport) -> bool:
        """Close a connection past the cap at once (logged at most once a minute)."""
        if len(self.connections) <= self.max_connections:
            return False
        now = time.monotonic()
        if now - _Deadlines._last_cap_log > 60:
            _Deadlines._last_cap_log = now
            logger.warning("more than %d open connections: closing new ones", self.max_connections)
        transport.close()
        return True

    def _arm(self, phase: str) -> None:
        if phase == self._phase:
            return
        self._cancel()
        self._phase = phase
        timeout = self.header_timeout if phase == "headers" else self.body_timeout
        self._deadline = self.loop.call_later(timeout, self._expire)

    def _cancel(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
        self._deadline = None
        self._phase = None

    def _expire(self) -> None:
        logger.debug("closing %s: request %s not received in time", self.client, self._phase)
        self._deadline = None
        if not self.transport.is_closing():
            self.transport.close()


class BoundedHttpToolsProtocol(_Deadlines, HttpToolsProtocol):
    """uvicorn's httptools protocol (a C parser, uvicorn's default when installed) with
    :class:`_Deadlines`, driven by the parser's callbacks."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._init_deadlines()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if not self._over_cap(transport):
            self._arm("headers")

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._arm("headers")  # the first byte of a request: its line and headers are due

    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        self._arm("body")

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._cancel()  # the whole request arrived: the app's time from here

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._cancel()  # idle between requests: uvicorn's keep-alive timer

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel()
        super().connection_lost(exc)


def bounded_protocol(*, max_connections: int, header_timeout: float, body_timeout: float) -> type:
    """A :class:`BoundedHttpToolsProtocol` subclass with these limits (uvicorn takes a class)."""
    return type(
        "ConfiguredHttpToolsProtocol",
        (BoundedHttpToolsProtocol,),
        {"max_connections": max_connections, "header_timeout": header_timeout, "body_timeout": body_timeout},
    )


__all__ = ["BoundedHttpToolsProtocol", "bounded_protocol"]
