"""OTLP/gRPC on port 4317: ``TraceService/Export``, ``LogsService/Export`` and
``MetricsService/Export`` (``opentelemetry.proto.collector.{trace,logs,metrics}.v1``).

Compressed messages (``grpc-encoding: gzip`` or ``deflate``, all grpcio offers) are decompressed
by grpcio itself, bounded by ``max_message_bytes`` after decompression.

Overload answers ``UNAVAILABLE`` with a ``google.rpc.RetryInfo`` detail (the OTLP throttling
signal), whether the writer's budget is spent or too many calls are in progress; invalid data
answers ``INVALID_ARGUMENT`` (logged at most once a minute per client, never a traceback per
call); dropped spans answer a partial success.

The service is registered through a generic handler of our own rather than the generated one:
its request deserializer turns an undecodable message into a value the handler refuses (grpc
would answer ``INTERNAL`` and log a traceback), and it admits a call only while the worker pool
holds fewer than the limit (grpc's own ``maximum_concurrent_rpcs`` answers without RetryInfo).
"""

from __future__ import annotations

import hmac
import logging
import threading
import time
from collections.abc import Callable, Iterator
from concurrent import futures
from typing import Any, NamedTuple, NoReturn, ParamSpec, TypeVar

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.protobuf.message import Message
from google.rpc import code_pb2, error_details_pb2, status_pb2

from omium.collector.jsonbody import printable
from omium.collector.otlp import Prepared
from omium.collector.signals import LOGS, METRICS, TRACES, Signal
from omium.collector.writer import SpanWriter
from omium.errors import DecodeError, OverloadedError

logger = logging.getLogger(__name__)

MAX_MESSAGE_BYTES = 64 * 1024 * 1024
ACK_TIMEOUT_SECONDS = 60.0
EXPORT_METHOD = TRACES.grpc_method
# How often one client's malformed requests are logged at most, and how many clients are remembered.
LOG_INTERVAL_SECONDS = 60.0
_MAX_LOGGED_CLIENTS = 1024

_P = ParamSpec("_P")
_T = TypeVar("_T")


def _abort_with_retry(context: grpc.ServicerContext, message: str, retry_after: float) -> NoReturn:
    seconds = int(retry_after)
    retry = error_details_pb2.RetryInfo(
        retry_delay=duration_pb2.Duration(seconds=seconds, nanos=int((retry_after - seconds) * 1e9))
    )
    detail = any_pb2.Any()
    detail.Pack(retry)
    message = printable(message)
    status = status_pb2.Status(code=code_pb2.UNAVAILABLE, message=message, details=[detail])
    context.set_trailing_metadata((("grpc-status-details-bin", status.SerializeToString()),))
    context.abort(grpc.StatusCode.UNAVAILABLE, message)
    raise AssertionError("unreachable: abort raises")


class _Decoded(NamedTuple):
    request: Any
    body: bytes


class _Malformed(NamedTuple):
    message: str


def _deserializer(signal: Signal) -> Callable[[bytes], _Decoded | _Malformed]:
    def deserialize(body: bytes) -> _Decoded | _Malformed:
        # Never raises and never returns None: either makes grpc answer INTERNAL with a traceback.
        try:
            return _Decoded(signal.decode_protobuf(body), body)
        except DecodeError as exc:
            return _Malformed(str(exc))

    return deserialize


class _OncePerMinute:
    """Logs a message per client at most once per interval, counting what it left out."""

    def __init__(
        self, interval: float = LOG_INTERVAL_SECONDS, max_clients: int = _MAX_LOGGED_CLIENTS
    ) -> None:
        self._interval = interval
        self._max_clients = max_clients
        self._last: dict[str, float] = {}
        self._skipped: dict[str, int] = {}
        self._lock = threading.Lock()

    def warning(self, client: str, message: str) -> None:
        now = time.monotonic()
        with self._lock:
            if client not in self._last and len(self._last) >= self._max_clients:
                for known, logged in list(self._last.items()):
                    if now - logged >= self._interval:
                        del self._last[known]
                        self._skipped.pop(known, None)
                if len(self._last) >= self._max_clients:
                    client = "other clients"  # memory stays bounded however many addresses
            last = self._last.get(client)
            if last is not None and now - last < self._interval:
                self._skipped[client] = self._skipped.get(client, 0) + 1
                return
            self._last[client] = now
            skipped = self._skipped.pop(client, 0)
        more = f" ({skipped} more since last logged)" if skipped else ""
        logger.warning("malformed OTLP/gRPC request from %s: %s%s", client, message, more)


def _client(context: grpc.ServicerContext) -> str:
    """The caller's address without its port (a client reconnecting is the same client)."""
    peer = context.peer() or "unknown"
    return peer.rsplit(":", 1)[0] if peer.count(":") >= 2 else peer


class ExportService:
    """One signal's OTLP ``Export``, writing through that signal's writer."""

    def __init__(self, writer: SpanWriter, signal: Signal = TRACES) -> None:
        self._writer = writer
        self.signal = signal
        self._malformed_log = _OncePerMinute()

    def Export(self, request: Any, context: grpc.ServicerContext) -> Message:
        """Store one export request; answer once its records are durable."""
        return self._store(self.signal.prepare(request, None), context)

    def export_received(self, received: _Decoded | _Malformed, context: grpc.ServicerContext) -> Message:
        """:meth:`Export` for what the server's deserializer made of the message."""
        if isinstance(received, _Malformed):
            self._malformed_log.warning(_client(context), received.message)
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, printable(received.message))
            raise AssertionError("unreachable: abort raises")
        return self._store(self.signal.prepare(received.request, received.body), context)

    def _store(self, prepared: Prepared, context: grpc.ServicerContext) -> Message:
        unit = self.signal.unit
        try:
            future = self._writer.submit(
                prepared.body, prepared.spans, days=(prepared.first_day, prepared.last_day)
            )
        except OverloadedError as exc:
            _abort_with_retry(context, str(exc), exc.retry_after)
        # Wait for the records to be durable, or for the call to end (the client cancelled or its
        # deadline passed): a call nobody waits for must not hold a worker and a slot.
        settled = threading.Event()
        future.add_done_callback(lambda _: settled.set())
        context.add_callback(settled.set)
        settled.wait(ACK_TIMEOUT_SECONDS)
        if not future.done():
            _abort_with_retry(context, f"{unit} were not stored in time, retry", 2.0)
        error = future.exception()
        if error is not None:
            _abort_with_retry(context, f"{unit} were not stored, retry: {error}", 2.0)
        return self.signal.response(prepared)


class TraceService(ExportService):
    """The OTLP trace service, writing through the shared :class:`SpanWriter`."""

    def __init__(self, writer: SpanWriter) -> None:
        super().__init__(writer, TRACES)


class _CountingPool(futures.ThreadPoolExecutor):
    """The server's worker pool, counting the calls it holds (waiting for a worker or running).

    grpc submits one task per admitted call, and the task ends however the call does
    (answered, aborted, cancelled before it ran), so the count cannot leak.
    """

    def __init__(self, workers: int) -> None:
        super().__init__(max_workers=workers, thread_name_prefix="omium-grpc")
        self._count_lock = threading.Lock()
        self.calls = 0

    def submit(self, fn: Callable[_P, _T], /, *args: _P.args, **kwargs: _P.kwargs) -> futures.Future[_T]:
        with self._count_lock:
            self.calls += 1
        try:
            future = super().submit(fn, *args, **kwargs)
        except BaseException:
            self._done(None)
            raise
        future.add_done_callback(self._done)
        return future

    def _done(self, _future: object) -> None:
        with self._count_lock:
            self.calls -= 1


class _Refuse:
    """Answers a call over the concurrency limit without reading its message, on a pool of its own
    (so that refusing does not wait behind the calls that filled the limit)."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self.experimental_thread_pool = futures.ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="omium-grpc-refuse"
        )

    def __call__(self, requests: Iterator[Any], context: grpc.ServicerContext) -> NoReturn:
        _abort_with_retry(context, f"more than {self._limit} OTLP/gRPC calls in progress", 1.0)


class _Unauthenticated:
    """Answers a call without an accepted token, without reading its message."""

    def __init__(self) -> None:
        self.experimental_thread_pool = futures.ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="omium-grpc-refuse"
        )

    def __call__(self, requests: Iterator[Any], context: grpc.ServicerContext) -> NoReturn:
        context.abort(
            grpc.StatusCode.UNAUTHENTICATED,
            "OTLP ingest on this server needs a token ('authorization: Bearer <token>' metadata)",
        )
        raise AssertionError("unreachable: abort raises")


def _token_accepted(metadata: Any, tokens: tuple[str, ...]) -> bool:
    """True when the call's ``authorization: Bearer`` metadata holds one of ``tokens``."""
    for key, value in metadata or ():
        if key == "authorization" and isinstance(value, str) and value[:7].lower() == "bearer ":
            given = value[7:].strip().encode()
            return any(hmac.compare_digest(given, token.encode()) for token in tokens)
    return False


class _ExportHandler(grpc.GenericRpcHandler):
    """Routes each signal's ``Export`` to its service while the pool holds fewer calls than
    ``limit``; with ``tokens``, only calls that present one of them."""

    def __init__(
        self,
        services: list[ExportService],
        pool: _CountingPool,
        limit: int,
        tokens: tuple[str, ...] = (),
    ) -> None:
        self._pool = pool
        self._limit = limit
        self._tokens = tokens
        unauthenticated = _Unauthenticated()
        refuse = _Refuse(limit)
        # method -> (its export, refusal without a token, refusal over the limit)
        self._routes: dict[str, tuple[grpc.RpcMethodHandler, ...]] = {}
        for service in services:
            serialize = service.signal.response_type.SerializeToString
            self._routes[service.signal.grpc_method] = (
                grpc.unary_unary_rpc_method_handler(
                    service.export_received,
                    request_deserializer=_deserializer(service.signal),
                    response_serializer=serialize,
                ),
                grpc.stream_unary_rpc_method_handler(unauthenticated, response_serializer=serialize),
                # A stream handler: its behaviour runs without the request message having been received.
                grpc.stream_unary_rpc_method_handler(refuse, response_serializer=serialize),
            )

    def service(self, handler_call_details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler | None:
        route = self._routes.get(handler_call_details.method)
        if route is None:
            return None
        export, unauthenticated, refuse = route
        if self._tokens and not _token_accepted(handler_call_details.invocation_metadata, self._tokens):
            return unauthenticated
        # grpc asks on its one serving thread, right before it submits the admitted call's task.
        return refuse if self._pool.calls >= self._limit else export


def start_grpc_server(
    writer: SpanWriter,
    host: str,
    port: int,
    workers: int = 8,
    *,
    max_message_bytes: int = MAX_MESSAGE_BYTES,
    max_concurrent_calls: int | None = None,
    tokens: tuple[str, ...] = (),
    log_writer: SpanWriter | None = None,
    metric_writer: SpanWriter | None = None,
) -> tuple[grpc.Server, int]:
    """Start the gRPC server; returns it and the bound port (``port=0`` picks a free one).

    Args:
        writer: Where spans go.
        host: Address to bind.
        port: Port to bind (0 picks a free one).
        workers: Threads serving calls.
        max_message_bytes: The largest message taken (the server's ``max_body_bytes``); grpc
            answers ``RESOURCE_EXHAUSTED`` past it, which clients do not retry.
        max_concurrent_calls: Calls held at once (running or waiting for a worker) before more are
            answered ``UNAVAILABLE`` + RetryInfo; default four per worker, as more would only
            queue in memory.
        tokens: When given, a call must present one of them (``authorization: Bearer``
            metadata) or is answered ``UNAUTHENTICATED`` (an exposed server, or
            ``OMIUM_INGEST_TOKEN`` set).
        log_writer: Where log records go; without it ``LogsService`` is not served.
        metric_writer: Where data points go; without it ``MetricsService`` is not served.
    """
    limit = max_concurrent_calls if max_concurrent_calls is not None else workers * 4
    pool = _CountingPool(workers)
    server = grpc.server(
        pool,
        options=[
            ("grpc.max_receive_message_length", max_message_bytes),
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
        ],
    )
    services: list[ExportService] = [TraceService(writer)]
    if log_writer is not None:
        services.append(ExportService(log_writer, LOGS))
    if metric_writer is not None:
        services.append(ExportService(metric_writer, METRICS))
    server.add_generic_rpc_handlers((_ExportHandler(services, pool, limit, tokens),))
    address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    try:
        bound = server.add_insecure_port(address)
    except RuntimeError:  # newer grpcio raises instead of returning 0
        bound = 0
    if bound == 0:
        raise OSError(f"cannot bind OTLP/gRPC to {address}")
    server.start()
    return server, bound
