"""uvicorn's h11 protocol with the read deadlines and connection cap it lacks.

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

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

logger = logging.getLogger(__name__)


class BoundedH11Protocol(H11Protocol):
    """An ``H11Protocol`` with header/body deadlines and a connection cap (see the module doc).

    Configure through :func:`bounded_protocol`, which returns a subclass with the limits set.
    """

    max_connections: int = 512
    header_timeout: float = 10.0
    body_timeout: float = 60.0
    _last_cap_log: float = 0.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._deadline: asyncio.TimerHandle | None = None
        self._phase: str | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self.max_connections:
            now = time.monotonic()
            if now - BoundedH11Protocol._last_cap_log > 60:
                BoundedH11Protocol._last_cap_log = now
                logger.warning("more than %d open connections: closing new ones", self.max_connections)
            transport.close()
            return
        self._watch()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        self._watch()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._watch()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel()
        super().connection_lost(exc)

    def _watch(self) -> None:
        """Arm the deadline of the phase the client is in; the app's own time is not limited."""
        state = self.conn.their_state
        if state is h11.IDLE and self.timeout_keep_alive_task is None:
            phase, timeout = "headers", self.header_timeout
        elif state is h11.SEND_BODY:
            phase, timeout = "body", self.body_timeout
        else:  # idle between requests (uvicorn's keep-alive timer), request complete, or closed
            self._cancel()
            return
        if phase != self._phase:
            self._cancel()
            self._phase = phase
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


def bounded_protocol(
    *, max_connections: int, header_timeout: float, body_timeout: float
) -> type[H11Protocol]:
    """A :class:`BoundedH11Protocol` subclass with these limits (uvicorn takes a class)."""
    return type(
        "ConfiguredH11Protocol",
        (BoundedH11Protocol,),
        {"max_connections": max_connections, "header_timeout": header_timeout, "body_timeout": body_timeout},
    )


__all__ = ["BoundedH11Protocol", "bounded_protocol"]
