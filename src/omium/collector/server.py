"""Running the Omium server: warehouse, signal writers, OTLP/HTTP + APIs (uvicorn) and OTLP/gRPC."""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass

import uvicorn

from omium.collector.access import ingest_tokens
from omium.collector.app import create_app
from omium.collector.otlp_grpc import start_grpc_server
from omium.collector.otlp_logs import decode_logs_protobuf
from omium.collector.otlp_metrics import decode_metrics_protobuf
from omium.collector.protocol import bounded_protocol
from omium.collector.record_writer import RecordWriter
from omium.collector.state import ServerState
from omium.collector.writer import SpanWriter
from omium.config import Settings, ensure_home
from omium.warehouse.carry_over import carry_over
from omium.warehouse.connection import Warehouse, connect
from omium.warehouse.log_rows import log_rows
from omium.warehouse.metric_rows import metric_rows
from omium.warehouse.store import EmbeddedStore
from omium.warehouse.table_rows import TableRows

logger = logging.getLogger(__name__)

# Idle keep-alive connections are closed after this; half-sent requests by the protocol's deadlines.
KEEP_ALIVE_SECONDS = 15


def build_state(settings: Settings, warehouse: Warehouse | None = None) -> ServerState:
    """Open the warehouse (embedded unless ``OMIUM_CLICKHOUSE_URL``) and the control database
    (``OMIUM_CONTROL_URL``, else SQLite in ``$OMIUM_HOME``), migrate both, carry a 0.x home over,
    start the span writer and the outbox shipper (one ships per deployment; the others stand by)."""
    if warehouse is None:
        warehouse = connect(settings, mode="embedded" if settings.embedded else "clickhouse")
    if settings.fsync:
        # Survive power loss as well as process death: fsync each part and its directory.
        warehouse.command(
            "ALTER TABLE otel_traces MODIFY SETTING fsync_after_insert = 1, fsync_part_directory = 1"
        )
    writer = SpanWriter(
        warehouse,
        settings.home / "spool",
        max_pending_spans=settings.max_pending_spans,
        max_pending_bytes=settings.max_pending_bytes,
        native_ingest=warehouse.mode == "embedded",
    )
    writer.start()
    # Logs and metrics: the same machinery and budgets, a queue (and a thread) each.
    signal_writers = [
        RecordWriter(
            warehouse,
            settings.home / "spool",
            rows,
            signal=signal,
            max_pending_spans=settings.max_pending_spans,
            max_pending_bytes=settings.max_pending_bytes,
        )
        for rows, signal in ((_log_table_rows, "log records"), (_metric_table_rows, "data points"))
    ]
    for signal_writer in signal_writers:
        signal_writer.start()
    log_writer, metric_writer = signal_writers
    if not settings.control_url:
        ensure_home(settings.home)
    # The control store with this server's shipper into its warehouse; runs executed in this
    # process (the demo's) write their spans straight into the warehouse too.
    store = EmbeddedStore(settings.control_database, warehouse, fsync=settings.fsync, owns_warehouse=False)
    try:
        carry_over(store, warehouse, settings.home / "journal")
    except BaseException:
        for started in (writer, log_writer, metric_writer):
            started.stop()
        store.close()
        raise
    return ServerState(
        settings=settings,
        warehouse=warehouse,
        writer=writer,
        store=store,
        log_writer=log_writer,
        metric_writer=metric_writer,
        shipper=store.shipper,
    )


def _log_table_rows(body: bytes) -> list[TableRows]:
    return [log_rows(decode_logs_protobuf(body))]


def _metric_table_rows(body: bytes) -> list[TableRows]:
    return metric_rows(decode_metrics_protobuf(body))


def ensure_token(settings: Settings) -> Settings:
    """A server with no configured token makes one and leaves it in ``$OMIUM_HOME/api-token``
    (mode 0600, in a 0700 home), where local clients (`omium`, the SDK) pick it up: every API
    call needs a token. A token read from that file earlier is kept, so clients stay valid."""
    ensure_home(settings.home)
    if settings.api_token:
        return settings
    import secrets

    token = secrets.token_urlsafe(32)
    path = settings.token_path
    # Write a new file and rename it over the old one: never follows a link planted at the path,
    # never leaves a half-written token, and a file of the wrong mode is replaced, not reused.
    scratch = path.with_name(f".api-token.{os.getpid()}")
    fd = os.open(scratch, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    try:
        with os.fdopen(fd, "w") as out:
            out.write(token)
        os.replace(scratch, path)
    except BaseException:
        scratch.unlink(missing_ok=True)
        raise
    return settings.with_(api_token=token, api_token_from_file=True)


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # Accepted connections inherit this: without it a response written in two parts waits ~40 ms
    # for the client's delayed ACK (measured: every API call took 44 ms instead of ~2 ms).
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.setblocking(False)
    return sock


@dataclass
class RunningServer:
    """A started server: its ports, and how to stop it."""

    state: ServerState
    http_port: int
    grpc_port: int
    _uvicorn: uvicorn.Server
    _thread: threading.Thread | None
    _grpc: object | None

    @property
    def url(self) -> str:
        """Base URL of the HTTP side."""
        return f"http://{self.state.settings.host}:{self.http_port}"

    def stop(self) -> None:
        """Stop accepting, drain the writer, close the warehouse."""
        self._uvicorn.should_exit = True
        if self._thread is not None:
            self._thread.join(30)
        if self._grpc is not None:
            self._grpc.stop(grace=5).wait()  # type: ignore[attr-defined]
        for writer in (self.state.writer, self.state.log_writer, self.state.metric_writer):
            writer.stop()
        self.state.store.close()  # ships what is queued, then lets the shipper lease go


def start(settings: Settings, warehouse: Warehouse | None = None, *, in_thread: bool = True) -> RunningServer:
    """Start the server. With ``in_thread`` (tests, the demo) uvicorn runs in a background thread.

    A port of 0 picks a free one; the bound ports are on the returned :class:`RunningServer`.
    """
    # Before a token is generated: a generated token must never make exposing the server possible.
    settings.check_bind()
    settings = ensure_token(settings)
    # Bind first: a taken port fails before anything was opened or started.
    sock = _bind(settings.host, settings.http_port)
    http_port = sock.getsockname()[1]
    try:
        state = build_state(settings, warehouse)
    except BaseException:
        sock.close()
        raise
    grpc_server = None
    grpc_port = 0
    if settings.grpc_port >= 0:
        try:
            grpc_server, grpc_port = start_grpc_server(
                state.writer,
                settings.host,
                settings.grpc_port,
                max_message_bytes=settings.max_body_bytes,
                tokens=ingest_tokens(settings),
                log_writer=state.log_writer,
                metric_writer=state.metric_writer,
            )
        except (OSError, RuntimeError) as exc:
            sock.close()
            for writer in (state.writer, state.log_writer, state.metric_writer):
                writer.stop()
            raise OSError(f"cannot serve OTLP/gRPC on port {settings.grpc_port}: {exc}") from exc
    config = uvicorn.Config(
        create_app(state),
        log_level="warning",
        # Connections and requests are bounded by the protocol and AccessControl instead: uvicorn's
        # limit counts idle sockets, so a few hundred of them refused every client (503).
        limit_concurrency=None,
        http=bounded_protocol(
            max_connections=settings.max_connections,
            header_timeout=settings.header_timeout,
            body_timeout=settings.body_timeout,
        ),
        timeout_keep_alive=KEEP_ALIVE_SECONDS,
        # On SIGTERM, requests still running after this are cancelled (their queries too).
        timeout_graceful_shutdown=max(1, round(settings.shutdown_seconds)),
        access_log=False,
    )
    server = uvicorn.Server(config)
    running = RunningServer(state, http_port, grpc_port, server, None, grpc_server)
    if in_thread:
        thread = threading.Thread(
            target=server.run, kwargs={"sockets": [sock]}, daemon=True, name="omium-http"
        )
        thread.start()
        running._thread = thread
        while not server.started and thread.is_alive():
            thread.join(0.01)
    else:
        logger.info(
            "Omium server on http://%s:%d (OTLP/HTTP, API), gRPC on %d", settings.host, http_port, grpc_port
        )
        try:
            server.run(sockets=[sock])
        finally:
            running.stop()
    return running


@contextlib.contextmanager
def serving(settings: Settings, warehouse: Warehouse | None = None) -> Iterator[RunningServer]:
    """Context manager around :func:`start` in a thread (used by tests and the demo)."""
    running = start(settings, warehouse, in_thread=True)
    try:
        yield running
    finally:
        running.stop()
