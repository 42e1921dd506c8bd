"""The span writer: group commit of OTLP requests into ``otel_traces``, with backpressure.

Requests wait in a bounded queue (counted in spans). One writer thread takes everything that is
waiting, appends it to a spool file and inserts it with one statement, then acknowledges every
request in the group. A request is acknowledged only after the insert returned, i.e. after its
part is on disk: a ``kill -9`` after a 200 loses nothing. When the queue is full, ``submit``
raises :class:`OverloadedError` and the caller answers 503 + ``Retry-After``, so memory stays
bounded however hard clients push.
"""

from __future__ import annotations

import itertools
import logging
import os
import threading
import time
from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path

from google.protobuf.internal.encoder import _VarintBytes

from omium.collector import native
from omium.collector.otlp import decode_protobuf
from omium.errors import OverloadedError, WarehouseError
from omium.semconv import OTEL_TRACES_COLUMNS
from omium.warehouse.connection import Warehouse
from omium.warehouse.otlp_rows import SpanColumns, to_columns

logger = logging.getLogger(__name__)


@dataclass
class WriterStats:
    """Counters a health endpoint and benchmarks read."""

    spans_written: int = 0
    requests_written: int = 0
    batches: int = 0
    native_batches: int = 0
    python_batches: int = 0
    fallback_batches: int = 0
    failed_batches: int = 0
    overloaded: int = 0
    last_batch_seconds: float = 0.0
    last_batch_spans: int = 0


@dataclass
class _Request:
    body: bytes
    spans: int
    future: Future[None] = field(default_factory=Future)


class SpanWriter:
    """Accepts prepared OTLP request bodies and makes them durable in batches.

    Args:
        warehouse: where ``otel_traces`` lives (the server's own connection).
        spool_dir: directory for the batch files the engine reads.
        max_pending_spans: spans accepted but not yet written before ``submit`` refuses.
        max_batch_spans: spans in one insert at most.
        native_ingest: let the engine decode protobuf (embedded chdb); otherwise, and for
            batches the engine path cannot take, decode in Python.
        native_min_spans: smaller batches, when nothing else is waiting, are decoded in Python:
            the engine path has a fixed cost of ~0.15 s a statement (planning its expression),
            which light traffic should not pay in latency; under load every batch takes the
            engine path, since Python decoding would hold the GIL the server needs.
        writers: threads writing batches concurrently, each on its own session.
    """

    def __init__(
        self,
        warehouse: Warehouse,
        spool_dir: Path,
        *,
        max_pending_spans: int = 200_000,
        max_batch_spans: int = 100_000,
        native_ingest: bool = True,
        native_min_spans: int = 2_000,
        writers: int = 2,
    ) -> None:
        self._warehouse = warehouse
        self._spool_dir = spool_dir
        self._max_pending = max_pending_spans
        self._max_batch = max_batch_spans
        self._native = native_ingest
        self.native_min_spans = native_min_spans
        self._writers = max(1, writers)
        self._queue: deque[_Request] = deque()
        self._pending_spans = 0
        self._cond = threading.Condition()
        self._stopping = False
        self._threads: list[threading.Thread] = []
        self._seq = itertools.count()
        self.stats = WriterStats()

    @property
    def pending_spans(self) -> int:
        """Spans accepted and not yet durable."""
        return self._pending_spans

    def start(self) -> None:
        """Start the writer thread."""
        self._spool_dir.mkdir(parents=True, exist_ok=True)
        for stale in self._spool_dir.glob("batch-*.bin"):
            # Spool files of a crashed process were never acknowledged: clients re-send them.
            stale.unlink(missing_ok=True)
        for index in range(self._writers):
            # Each writer has its own session: one statement's planning (single-threaded) overlaps
            # another's execution, which a single writer would leave idle.
            warehouse = self._warehouse if index == 0 else self._warehouse.clone()
            thread = threading.Thread(
                target=self._run, args=(warehouse,), name=f"omium-span-writer-{index}", daemon=True
            )
            thread.start()
            self._threads.append(thread)

    def stop(self, timeout: float = 30.0) -> None:
        """Write what is queued, then stop."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        for thread in self._threads:
            thread.join(timeout)

    def retry_after(self) -> float:
        """Seconds a refused client should wait: the time to drain what is queued, at least 1."""
        rate = (
            self.stats.last_batch_spans / self.stats.last_batch_seconds
            if self.stats.last_batch_seconds
            else 0
        )
        if rate <= 0:
            return 1.0
        return max(1.0, min(30.0, round(self._pending_spans / rate, 1)))

    def submit(self, body: bytes, spans: int) -> Future[None]:
        """Queue a request body holding ``spans`` valid spans; the future resolves once durable.

        Raises:
            OverloadedError: the queue is full (the caller answers 503 with Retry-After).
        """
        request = _Request(body, spans)
        if spans == 0:
            request.future.set_result(None)
            return request.future
        with self._cond:
            if self._stopping:
                raise OverloadedError("the server is shutting down", retry_after=5.0)
            # A request larger than the whole budget is still taken when nothing else waits,
            # or it could never be written.
            if self._pending_spans + spans > self._max_pending and self._pending_spans > 0:
                self.stats.overloaded += 1
                raise OverloadedError(
                    f"{self._pending_spans} spans are waiting to be written (limit {self._max_pending})",
                    retry_after=self.retry_after(),
                )
            self._queue.append(request)
            self._pending_spans += spans
            self._cond.notify()
        return request.future

    def _take(self) -> tuple[list[_Request], bool]:
        with self._cond:
            while not self._queue and not self._stopping:
                self._cond.wait()
            batch: list[_Request] = []
            total = 0
            while self._queue and (not batch or total + self._queue[0].spans <= self._max_batch):
                request = self._queue.popleft()
                batch.append(request)
                total += request.spans
            return batch, not self._queue

    def _run(self, warehouse: Warehouse) -> None:
        while True:
            batch, light = self._take()
            if not batch:
                return  # stopping and drained
            spans = sum(r.spans for r in batch)
            started = time.perf_counter()
            errors: dict[int, BaseException] = {}
            try:
                self._write(batch, warehouse, light=light)
            except Exception as exc:  # every failure must reach the waiting clients
                self.stats.failed_batches += 1
                if len(batch) == 1:
                    errors[0] = exc
                else:
                    # One bad request must not fail the others grouped with it: write each alone.
                    logger.warning(
                        "a batch of %d requests failed (%s); writing them one by one", len(batch), exc
                    )
                    for index, request in enumerate(batch):
                        try:
                            self._write([request], warehouse, light=True)
                        except Exception as single:
                            errors[index] = single
                for error in set(map(str, errors.values())):
                    logger.error("writing spans failed: %s", error)
            elapsed = time.perf_counter() - started
            with self._cond:
                self._pending_spans -= spans
            written = [r for i, r in enumerate(batch) if i not in errors]
            self.stats.batches += 1
            self.stats.spans_written += sum(r.spans for r in written)
            self.stats.requests_written += len(written)
            if not errors:
                self.stats.last_batch_seconds = elapsed
                self.stats.last_batch_spans = spans
            for index, request in enumerate(batch):
                if index in errors:
                    request.future.set_exception(errors[index])
                else:
                    request.future.set_result(None)

    def _write(self, batch: list[_Request], warehouse: Warehouse, *, light: bool = False) -> None:
        # Python decoding holds the GIL: worth it for latency only when nothing else waits.
        small = light and sum(r.spans for r in batch) < self.native_min_spans
        if self._native and not small:
            path = self._spool_dir / f"batch-{os.getpid()}-{next(self._seq)}.bin"
            try:
                with open(path, "wb") as spool:
                    for request in batch:
                        spool.write(_VarintBytes(len(request.body)))
                        spool.write(request.body)
                warehouse.command(native.INSERT_FROM_FILE, native.insert_parameters(path))
                self.stats.native_batches += 1
                return
            except WarehouseError as exc:
                if native.DEEP_VALUE_MARK not in str(exc):
                    logger.warning("engine-side decoding failed, decoding in Python instead: %s", exc)
                self.stats.fallback_batches += 1
            finally:
                path.unlink(missing_ok=True)
        columns = SpanColumns()
        for request in batch:
            columns.extend(to_columns(decode_protobuf(request.body)))
        if len(columns):
            warehouse.insert("otel_traces", columns.columns, OTEL_TRACES_COLUMNS)
        self.stats.python_batches += 1


__all__ = ["SpanWriter", "WriterStats"]
