"""The span writer: group commit of OTLP requests into ``otel_traces``, with backpressure.

Requests wait in a bounded queue, counted in spans and in bytes. One writer thread takes
everything that is waiting, appends it to a spool file and inserts it with one statement, then
acknowledges every request in the group. A request is acknowledged only after the insert returned,
i.e. after its part is on disk: a ``kill -9`` after a 200 loses nothing. When either budget is
spent, ``submit`` (or :meth:`SpanWriter.reserve`, which counts a body while it is still being read)
raises :class:`OverloadedError` and the caller answers 503 + ``Retry-After``, so memory stays
bounded however hard clients push.

``otel_traces`` is partitioned by day and ClickHouse refuses an insert that touches more than
``max_partitions_per_insert_block`` (100) partitions, for ever: a group only takes requests whose
span starts fit in that many days together, and a request that alone spans more is inserted a
range of days at a time.

A retried request is written once. Its body's digest is looked up before a group is written: in
the writer's memory of what it wrote, then in ``omium_ingest_requests`` (what any server on the
warehouse wrote, recorded in groups at most 0.5 s apart, or once the writer is idle; an embedded
warehouse has one writing process, which reads the ledger's latest digests once at start); a retry of
a written request is answered without writing it again, and one that arrives while its twin is
being written shares the twin's outcome. ClickHouse's
own insert deduplication (``insert_deduplication_token``, ``non_replicated_deduplication_window``)
does not fit: it works per inserted block, and a block here is a group of requests that a retry,
grouped with whatever else is waiting then, does not reproduce. What is left: a crash between an
insert and its digest's record, a retry reaching another server within that half second, or two
servers writing the same body at the same moment, store a span twice until ``otel_traces`` (a
ReplacingMergeTree keyed by span) merges them; readers using FINAL never see it.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import os
import threading
import time
from collections import OrderedDict, deque
from concurrent.futures import Future
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from google.protobuf.internal.encoder import _VarintBytes

from omium.collector import native
from omium.collector.otlp import decode_protobuf, prepare
from omium.errors import OverloadedError, WarehouseError
from omium.semconv import OTEL_TRACES_COLUMNS
from omium.warehouse.connection import Warehouse
from omium.warehouse.otlp_rows import SpanColumns, to_columns

logger = logging.getLogger(__name__)

# ClickHouse's default max_partitions_per_insert_block.
MAX_PARTITIONS_PER_INSERT = 100
# How ClickHouse words the refusal (a server configured below the default says it too).
_PARTITION_LIMIT_ERROR = "max_partitions_per_insert_block"
# Requests a group passes over (their days do not fit with the group's) before it stops looking.
_MAX_PASSED_OVER = 64


@dataclass
class WriterStats:
    """Counters a health endpoint and benchmarks read."""

    spans_written: int = 0
    requests_written: int = 0
    batches: int = 0
    native_batches: int = 0
    python_batches: int = 0
    fallback_batches: int = 0
    duplicate_requests: int = 0
    failed_batches: int = 0
    split_inserts: int = 0
    overloaded: int = 0
    last_batch_seconds: float = 0.0
    last_batch_spans: int = 0
    last_batch_bytes: int = 0


@dataclass
class _Request:
    body: bytes
    spans: int
    first_day: int
    last_day: int
    digest: str = ""
    future: Future[None] = field(default_factory=Future)


def request_digest(body: bytes, signal: str = "spans") -> str:
    """The digest under which a request body of ``signal`` is recorded as written (hex, 128 bits).

    The signal is part of it: the writers of all three signals share the ledger, and one body's
    bytes can be a valid request of two signals (an empty one is of all three).
    """
    # SHA-256 (truncated): a cryptographic digest, so no client can craft a body that passes for
    # another's, and the one OpenSSL computes with the CPU's SHA instructions: half BLAKE2b's time
    # here (1.7 ms against 3.4 ms per MiB), which was about 4% of the writer's time at full load.
    digest = hashlib.sha256(signal.encode())
    digest.update(b"\0")
    digest.update(body)
    return digest.hexdigest()[:32]


def _follow(twin: Future[None], owner: Future[None]) -> None:
    """Give ``twin`` the outcome of ``owner`` (done)."""
    error = owner.exception()
    if error is None:
        twin.set_result(None)
    else:
        twin.set_exception(error)


# Digests of requests this writer wrote, kept in memory: its own clients' retries are answered
# without a look-up, and the ledger is written in groups (a part per insert costs ~10 ms of CPU).
_RECENT_DIGESTS = 65_536
# The ledger is written at most this often under load, and when the writer has been idle this long.
_RECORD_EVERY_SECONDS = 0.5
_IDLE_SECONDS = 0.05

# Omium's ledger of written request bodies (schema.INGEST_REQUESTS).
_WRITTEN = "SELECT digest FROM omium_ingest_requests WHERE digest IN {digests:Array(String)}"
_LATEST_WRITTEN = "SELECT digest FROM omium_ingest_requests ORDER BY written_at DESC LIMIT {n:UInt32}"


class Reservation:
    """Bytes of one request counted against the writer's byte budget while it is read and decoded.

    Taken with :meth:`SpanWriter.reserve` before a body is read and grown as it arrives, so that
    many large bodies in flight at once are refused before they are all in memory. Handed to
    :meth:`SpanWriter.submit`, its bytes become the queued request's; whatever is left is given
    back by :meth:`release` (or on leaving a ``with`` block).
    """

    def __init__(self, writer: SpanWriter) -> None:
        self._writer = writer
        self.held = 0

    def grow(self, nbytes: int) -> None:
        """Count ``nbytes`` more of this request.

        Raises:
            OverloadedError: the budget is spent by other requests (answer 503 + Retry-After).
        """
        self._writer._grow(self, nbytes)

    def release(self) -> None:
        """Give back what this reservation still holds."""
        self._writer._release(self)

    def __enter__(self) -> Reservation:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


class SpanWriter:
    """Accepts prepared OTLP request bodies and makes them durable in batches.

    Args:
        warehouse: where ``otel_traces`` lives (the server's own connection).
        spool_dir: directory for the batch files the engine reads.
        max_pending_spans: spans accepted but not yet written before ``submit`` refuses.
        max_pending_bytes: bytes of request bodies accepted (or being read, see :meth:`reserve`)
            but not yet written before ``submit`` refuses. A single request larger than either
            budget is still taken when nothing else waits.
        max_batch_spans: spans in one insert at most.
        native_ingest: let the engine decode protobuf (embedded chdb); otherwise, and for
            batches the engine path cannot take, decode in Python.
        native_min_spans: smaller batches, when nothing else is waiting, are decoded in Python:
            the engine path has a fixed cost of ~0.15 s a statement (planning its expression),
            which light traffic should not pay in latency; under load every batch takes the
            engine path, since Python decoding would hold the GIL the server needs.
        writers: threads writing batches concurrently, each on its own session.
        max_partitions_per_insert: ClickHouse's ``max_partitions_per_insert_block``; one insert
            covers one day fewer than that, as a day in UTC can fall on two in the server's zone.
    """

    # What is counted (log lines, the ledger's digests): RecordWriter names its own.
    signal = "spans"

    def __init__(
        self,
        warehouse: Warehouse,
        spool_dir: Path,
        *,
        max_pending_spans: int = 200_000,
        max_pending_bytes: int = 256 * 1024 * 1024,
        max_batch_spans: int = 100_000,
        native_ingest: bool = True,
        native_min_spans: int = 2_000,
        writers: int = 2,
        max_partitions_per_insert: int = MAX_PARTITIONS_PER_INSERT,
    ) -> None:
        self._warehouse = warehouse
        self._spool_dir = spool_dir
        self._max_pending = max_pending_spans
        self._max_bytes = max_pending_bytes
        self._max_batch = max_batch_spans
        self._max_days = max(1, max_partitions_per_insert - 1)
        self._native = native_ingest
        self.native_min_spans = native_min_spans
        self._writers = max(1, writers)
        self._queue: deque[_Request] = deque()
        self._pending_spans = 0
        self._pending_bytes = 0
        self._cond = threading.Condition()
        self._stopping = False
        self._threads: list[threading.Thread] = []
        self._seq = itertools.count()
        # Requests being written, by digest: a retry taken meanwhile waits for its twin's outcome.
        self._inflight: dict[str, Future[None]] = {}
        self._recent: OrderedDict[str, None] = OrderedDict()
        self._unrecorded: list[str] = []
        self._recorded_at = time.monotonic()
        self._local = False
        self.stats = WriterStats()

    @property
    def pending_spans(self) -> int:
        """Spans accepted and not yet durable."""
        return self._pending_spans

    @property
    def pending_bytes(self) -> int:
        """Bytes of request bodies accepted or being read, and not yet durable."""
        return self._pending_bytes

    def start(self) -> None:
        """Start the writer thread."""
        if self._warehouse.mode == "embedded":
            # Only this process opens an embedded warehouse: what it wrote is all there is to find.
            # The ledger's latest digests (what was written before a restart) are read once, and
            # no batch pays a look-up.
            self._local = True
            try:
                rows = self._warehouse.query_rows(_LATEST_WRITTEN, {"n": _RECENT_DIGESTS})
                self._recent.update((row["digest"], None) for row in reversed(rows))
            except Exception as exc:  # as in _written_before
                logger.warning("could not read the ledger of written requests: %s", exc)
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
        stats = self.stats
        if not stats.last_batch_seconds:
            return 1.0
        drain = max(
            self._pending_spans * stats.last_batch_seconds / max(1, stats.last_batch_spans),
            self._pending_bytes * stats.last_batch_seconds / max(1, stats.last_batch_bytes),
        )
        return max(1.0, min(30.0, round(drain, 1)))

    def _refuse_if_full(self, spans: int, nbytes: int, held: int) -> None:
        """Raise :class:`OverloadedError` unless ``spans`` and ``nbytes`` more fit (lock held).

        ``held`` is what the asking request has counted already; a request is taken past a
        budget only when nothing but itself waits, or it could never be written.
        """
        if self._stopping:
            raise OverloadedError("the server is shutting down", retry_after=5.0)
        if self._pending_spans + spans > self._max_pending and self._pending_spans > 0:
            reason = f"{self._pending_spans} spans are waiting to be written (limit {self._max_pending})"
        elif self._pending_bytes + nbytes > self._max_bytes and self._pending_bytes > held:
            reason = f"{self._pending_bytes} bytes are waiting to be written (limit {self._max_bytes})"
        else:
            return
        self.stats.overloaded += 1
        raise OverloadedError(reason, retry_after=self.retry_after())

    def reserve(self) -> Reservation:
        """Start counting a request's body against the byte budget before it is read.

        Raises:
            OverloadedError: either budget is already spent (answer 503 + Retry-After).
        """
        reservation = Reservation(self)
        with self._cond:
            self._refuse_if_full(1, 1, 0)
        return reservation

    def _grow(self, reservation: Reservation, nbytes: int) -> None:
        with self._cond:
            self._refuse_if_full(0, nbytes, reservation.held)
            reservation.held += nbytes
            self._pending_bytes += nbytes

    def _release(self, reservation: Reservation) -> None:
        with self._cond:
            self._pending_bytes -= reservation.held
            reservation.held = 0

    def submit(
        self,
        body: bytes,
        spans: int,
        *,
        days: tuple[int, int] | None = None,
        reservation: Reservation | None = None,
    ) -> Future[None]:
        """Queue a request body holding ``spans`` valid spans; the future resolves once durable.

        Args:
            body: The request, protobuf-encoded, holding only valid spans (see ``otlp.prepare``).
            spans: How many spans it holds.
            days: The first and last UTC day its spans start on (``Prepared.first_day`` and
                ``last_day``); decoded from ``body`` when not given.
            reservation: The bytes counted while the body was read: they become the request's.

        Raises:
            OverloadedError: the queue is full (the caller answers 503 with Retry-After).
        """
        if spans == 0:
            done: Future[None] = Future()
            done.set_result(None)
            return done
        if days is None:
            prepared = prepare(decode_protobuf(body), body)
            days = (prepared.first_day, prepared.last_day)
        request = _Request(body, spans, days[0], days[1])
        with self._cond:
            held = reservation.held if reservation is not None else 0
            self._refuse_if_full(spans, len(body) - held, held)
            if reservation is not None:
                reservation.held = 0
            self._queue.append(request)
            self._pending_spans += spans
            self._pending_bytes += len(body) - held
            self._cond.notify()
        return request.future

    def _take(self) -> tuple[list[_Request], bool]:
        with self._cond:
            while not self._queue and not self._stopping:
                # Going idle with digests not yet in the ledger: come back to record them.
                if not self._cond.wait(_IDLE_SECONDS if self._unrecorded else None) and self._unrecorded:
                    return [], True
            batch: list[_Request] = []
            passed_over: list[_Request] = []
            total = first = last = 0
            while self._queue:
                request = self._queue[0]
                if batch and total + request.spans > self._max_batch:
                    break
                low = min(first, request.first_day) if batch else request.first_day
                high = max(last, request.last_day) if batch else request.last_day
                if batch and high - low >= self._max_days:
                    # Its days and the group's would make one insert touch too many partitions:
                    # leave it (at the head of the queue) for the next group.
                    if len(passed_over) == _MAX_PASSED_OVER:
                        break
                    passed_over.append(self._queue.popleft())
                    continue
                batch.append(self._queue.popleft())
                total += request.spans
                first, last = low, high
            self._queue.extendleft(reversed(passed_over))
            return batch, not self._queue

    def _run(self, warehouse: Warehouse) -> None:
        while True:
            batch, light = self._take()
            if not batch:
                self._record_written(warehouse, force=True)
                if self._stopping:
                    return  # stopping and drained
                continue  # idle: the ledger is up to date

            spans = sum(r.spans for r in batch)
            nbytes = sum(len(r.body) for r in batch)
            batch = self._claim(batch)
            if not batch:  # every request a retry of one being written now
                with self._cond:
                    self._pending_spans -= spans
                    self._pending_bytes -= nbytes
                continue
            started = time.perf_counter()
            errors: dict[int, BaseException] = {}
            written_before = self._written_before(batch, warehouse)
            try:
                fresh = [r for r in batch if r.digest not in written_before]
                if fresh:
                    self._write(fresh, warehouse, light=light)
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
                        if request.digest in written_before:
                            continue
                        try:
                            self._write([request], warehouse, light=True)
                        except Exception as single:
                            errors[index] = single
                for error in set(map(str, errors.values())):
                    logger.error("writing spans failed: %s", error)
            elapsed = time.perf_counter() - started
            with self._cond:
                self._pending_spans -= spans
                self._pending_bytes -= nbytes
            written = [r for i, r in enumerate(batch) if i not in errors]
            with self._cond:
                for request in written:
                    self._recent[request.digest] = None
                    if request.digest not in written_before:
                        self._unrecorded.append(request.digest)
                while len(self._recent) > _RECENT_DIGESTS:
                    self._recent.popitem(last=False)
            self._record_written(warehouse, force=False)
            self.stats.batches += 1
            self.stats.spans_written += sum(r.spans for r in written)
            self.stats.requests_written += len(written)
            if not errors:
                self.stats.last_batch_seconds = elapsed
                self.stats.last_batch_spans = spans
                self.stats.last_batch_bytes = nbytes
            with self._cond:
                for request in batch:
                    self._inflight.pop(request.digest, None)
            for index, request in enumerate(batch):
                if index in errors:
                    request.future.set_exception(errors[index])
                else:
                    request.future.set_result(None)

    def _claim(self, batch: list[_Request]) -> list[_Request]:
        """The batch's requests that are no twin of a request being written now.

        Digests are taken here, on the writer's thread, rather than in ``submit``: off the
        request's path (hashlib releases the GIL on large bodies). A twin (a client's retry of a
        request still queued or being written) is answered with that request's outcome.
        """
        for request in batch:
            request.digest = request_digest(request.body, self.signal)
        mine: list[_Request] = []
        with self._cond:
            for request in batch:
                owner = self._inflight.get(request.digest)
                if request.digest in self._recent:  # written by this writer already
                    self.stats.duplicate_requests += 1
                    request.future.set_result(None)
                elif owner is None:
                    self._inflight[request.digest] = request.future
                    mine.append(request)
                else:
                    self.stats.duplicate_requests += 1
                    owner.add_done_callback(partial(_follow, request.future))
        return mine

    def _written_before(self, batch: list[_Request], warehouse: Warehouse) -> set[str]:
        """Digests of the batch's requests that the ledger says were written already."""
        if self._local:
            return set()  # _claim has looked in memory, which holds the ledger's latest
        try:
            rows = warehouse.query_rows(_WRITTEN, {"digests": [r.digest for r in batch]})
        except Exception as exc:  # the writer's thread must survive whatever the ledger does
            # The ledger only saves rewriting: without it the table still collapses re-sent spans.
            logger.warning("could not read the ledger of written requests: %s", exc)
            return set()
        found = {row["digest"] for row in rows}
        self.stats.duplicate_requests += sum(r.digest in found for r in batch)
        return found

    def _record_written(self, warehouse: Warehouse, *, force: bool) -> None:
        """Write the digests of written requests into the ledger, at most every 0.5 s unless forced."""
        with self._cond:
            if not self._unrecorded or (
                not force and time.monotonic() - self._recorded_at < _RECORD_EVERY_SECONDS
            ):
                return
            digests, self._unrecorded = self._unrecorded, []
            self._recorded_at = time.monotonic()
        try:
            warehouse.insert("omium_ingest_requests", [digests], ["digest"])
        except Exception as exc:  # as in _written_before
            logger.warning("could not record %d written requests in the ledger: %s", len(digests), exc)

    def _write(self, batch: list[_Request], warehouse: Warehouse, *, light: bool = False) -> None:
        # Python decoding holds the GIL: worth it for latency only when nothing else waits.
        small = light and sum(r.spans for r in batch) < self.native_min_spans
        # _take groups only requests whose days fit one insert; a request that alone spans more
        # goes through Python, which inserts it a range of days at a time.
        fits = max(r.last_day for r in batch) - min(r.first_day for r in batch) < self._max_days
        if self._native and not small and fits:
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
        parts = columns.split_by_day(self._max_days)
        if len(parts) > 1:
            self.stats.split_inserts += 1
        for part in parts:
            if len(part):
                self._insert(part, warehouse)
        self.stats.python_batches += 1

    def _insert(self, columns: SpanColumns, warehouse: Warehouse) -> None:
        try:
            warehouse.insert("otel_traces", columns.columns, OTEL_TRACES_COLUMNS)
        except WarehouseError as exc:
            if _PARTITION_LIMIT_ERROR not in str(exc):
                raise
            # A server whose limit is below ClickHouse's default: one day at a time then.
            logger.warning("the warehouse refused an insert of several days; inserting day by day")
            for day in columns.split_by_day(1):
                warehouse.insert("otel_traces", day.columns, OTEL_TRACES_COLUMNS)


__all__ = ["MAX_PARTITIONS_PER_INSERT", "Reservation", "SpanWriter", "WriterStats"]
