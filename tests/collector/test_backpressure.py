"""Backpressure answers and poison isolation, made deterministic with a writer held still."""

from __future__ import annotations

import gzip
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import pytest
from google.rpc import error_details_pb2, status_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

from omium.collector import sample
from omium.collector.otlp_grpc import start_grpc_server
from omium.collector.server import RunningServer
from omium.collector.writer import SpanWriter
from omium.errors import OverloadedError, WarehouseError
from omium.warehouse import ClickHouseWarehouse

BODY = sample.requests(1, 100, seed=21)[0]


@pytest.fixture
def held_writer(warehouse: ClickHouseWarehouse, tmp_path: Path) -> SpanWriter:
    """A writer whose threads are not started: what is submitted stays pending."""
    writer = SpanWriter(warehouse, tmp_path / "spool", max_pending_spans=150)
    writer.submit(BODY, 100)
    return writer


def test_submit_refuses_past_the_budget(held_writer: SpanWriter) -> None:
    with pytest.raises(OverloadedError) as refused:
        held_writer.submit(BODY, 100)
    assert refused.value.retry_after >= 1
    assert held_writer.pending_spans == 100
    assert held_writer.stats.overloaded == 1


@pytest.fixture
def grpc_port(held_writer: SpanWriter) -> Iterator[int]:
    server, port = start_grpc_server(held_writer, "127.0.0.1", 0)
    yield port
    server.stop(grace=0)


def test_grpc_overload_is_unavailable_with_retry_info(grpc_port: int) -> None:
    request = trace_service_pb2.ExportTraceServiceRequest.FromString(BODY)
    with grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
        stub = trace_service_pb2_grpc.TraceServiceStub(channel)
        with pytest.raises(grpc.RpcError) as failed:
            stub.Export(request, timeout=10)
    error = failed.value
    assert error.code() == grpc.StatusCode.UNAVAILABLE  # type: ignore[attr-defined]
    details = dict(error.trailing_metadata())  # type: ignore[attr-defined]
    status = status_pb2.Status.FromString(details["grpc-status-details-bin"])
    retry = error_details_pb2.RetryInfo()
    assert status.details[0].Unpack(retry)
    assert retry.retry_delay.seconds >= 1


def test_http_overload_is_503_with_retry_after(
    server: RunningServer, warehouse: ClickHouseWarehouse, tmp_path: Path
) -> None:
    held = SpanWriter(warehouse, tmp_path / "held", max_pending_spans=150)
    held.submit(BODY, 100)
    live, server.state.writer = server.state.writer, held
    try:
        response = httpx.post(
            f"{server.url}/v1/traces", content=BODY, headers={"content-type": "application/x-protobuf"}
        )
    finally:
        server.state.writer = live
    assert response.status_code == 503
    assert int(response.headers["retry-after"]) >= 1
    assert status_pb2.Status.FromString(response.content).code == 14  # UNAVAILABLE


class _FailsOn:
    """The real warehouse, except that inserts carrying one marked span fail (fault injection)."""

    def __init__(self, real: ClickHouseWarehouse, marker: str) -> None:
        self._real = real
        self._marker = marker
        self.mode = real.mode
        self.database = real.database

    def insert(self, table, columns, column_names):  # type: ignore[no-untyped-def]
        if any(self._marker in str(attrs) for attrs in columns[11]):
            raise WarehouseError("injected failure")
        self._real.insert(table, columns, column_names)

    def command(self, sql, parameters=None):  # type: ignore[no-untyped-def]
        self._real.command(sql, parameters)

    def clone(self) -> _FailsOn:
        return self


def test_one_failing_request_does_not_fail_its_batch(warehouse: ClickHouseWarehouse, tmp_path: Path) -> None:
    good = [sample.requests(1, 50, seed=s)[0] for s in (31, 32, 33)]
    bad = sample.requests(1, 50, seed=34)[0]
    faulty = _FailsOn(warehouse, "run-34-")
    writer = SpanWriter(faulty, tmp_path / "spool", native_ingest=False, writers=1)  # type: ignore[arg-type]
    # Queued before the writer starts, so all four land in one batch.
    futures = [writer.submit(body, 50) for body in (*good[:2], bad, good[2])]
    writer.start()
    try:
        for index, future in enumerate(futures):
            if index == 2:
                with pytest.raises(WarehouseError, match="injected"):
                    future.result(30)
            else:
                future.result(30)
    finally:
        writer.stop()
    assert warehouse.scalar("SELECT count() FROM otel_traces FINAL") == 150
    assert writer.stats.requests_written == 3


def test_submit_refuses_past_the_byte_budget(warehouse: ClickHouseWarehouse, tmp_path: Path) -> None:
    writer = SpanWriter(warehouse, tmp_path / "spool", max_pending_bytes=len(BODY) - 100)
    writer.submit(BODY, 100)  # larger than the whole budget: taken, as nothing else waits
    with pytest.raises(OverloadedError, match="bytes"):
        writer.submit(BODY, 100)
    with pytest.raises(OverloadedError):
        writer.reserve()  # the budget is spent: refused before a body is even read
    assert writer.pending_bytes == len(BODY)
    assert writer.stats.overloaded == 2


def test_a_reservation_becomes_the_queued_request(warehouse: ClickHouseWarehouse, tmp_path: Path) -> None:
    writer = SpanWriter(warehouse, tmp_path / "spool", max_pending_bytes=5 * len(BODY) // 2)
    with writer.reserve() as reading:
        reading.grow(len(BODY))
        writer.submit(BODY, 100, reservation=reading)
    assert writer.pending_bytes == len(BODY)
    with writer.reserve() as other:
        other.grow(len(BODY))
        with pytest.raises(OverloadedError):
            other.grow(len(BODY))  # two bodies' worth would pass the budget
        assert writer.pending_bytes == 2 * len(BODY)
    assert writer.pending_bytes == len(BODY)  # given back when the request was refused


def test_http_byte_budget_is_503_with_retry_after(
    server: RunningServer, warehouse: ClickHouseWarehouse, tmp_path: Path
) -> None:
    # 59 KiB of gzip that inflate to several MiB each: counted as they inflate, not on the wire.
    bomb = gzip.compress(b"\x0a\x00" * 2_000_000)
    held = SpanWriter(warehouse, tmp_path / "held", max_pending_bytes=1_000_000)
    held.submit(BODY, 100)
    live, server.state.writer = server.state.writer, held
    try:
        response = httpx.post(
            f"{server.url}/v1/traces",
            content=bomb,
            headers={"content-type": "application/x-protobuf", "content-encoding": "gzip"},
            timeout=30,
        )
        assert response.status_code == 503
        assert int(response.headers["retry-after"]) >= 1
        assert "bytes" in status_pb2.Status.FromString(response.content).message
        assert held.pending_bytes == len(BODY)  # the refused body's bytes were given back
        json_response = httpx.post(f"{server.url}/v1/traces", json={"resourceSpans": []}, timeout=30)
        assert json_response.status_code == 200  # nothing to store: no budget needed
    finally:
        server.state.writer = live


def test_a_group_spanning_too_many_days_is_split(warehouse: ClickHouseWarehouse, tmp_path: Path) -> None:
    # Each request spans 40 days; all three in one insert would touch 120 partitions.
    bodies = []
    for index, seed in enumerate((51, 52, 53)):
        request = trace_service_pb2.ExportTraceServiceRequest.FromString(sample.requests(1, 40, seed=seed)[0])
        for offset, span in enumerate(request.resource_spans[0].scope_spans[0].spans):
            span.start_time_unix_nano = 1_700_000_000 * 10**9 + (index * 40 + offset) * 86_400 * 10**9
        bodies.append(request.SerializeToString())
    writer = SpanWriter(warehouse, tmp_path / "spool", native_min_spans=0, writers=1)
    futures = [writer.submit(body, 40) for body in bodies]  # queued before the writer starts
    writer.start()
    try:
        for future in futures:
            future.result(60)
    finally:
        writer.stop()
    assert warehouse.scalar("SELECT count() FROM otel_traces FINAL") == 120
    assert writer.stats.native_batches == 2 and writer.stats.fallback_batches == 0


def test_grpc_over_the_call_limit_is_unavailable_with_retry_info(
    warehouse: ClickHouseWarehouse, tmp_path: Path
) -> None:
    writer = SpanWriter(warehouse, tmp_path / "spool")  # not started: a call waits, holding its slot
    server, port = start_grpc_server(writer, "127.0.0.1", 0, max_concurrent_calls=1)
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = trace_service_pb2_grpc.TraceServiceStub(channel)
            request = trace_service_pb2.ExportTraceServiceRequest.FromString(BODY)
            first = stub.Export.future(request, timeout=30)
            deadline = time.monotonic() + 10
            while writer.pending_spans < 100 and time.monotonic() < deadline:
                time.sleep(0.02)
            with pytest.raises(grpc.RpcError) as refused:
                stub.Export(request, timeout=10)
            writer.start()  # drains the queue: the first call is answered
            first.result(30)
            stub.Export(request, timeout=30)  # and the slot is free again
    finally:
        server.stop(grace=0)
        writer.stop()
    error = refused.value
    assert error.code() == grpc.StatusCode.UNAVAILABLE  # type: ignore[attr-defined]
    trailers = dict(error.trailing_metadata())  # type: ignore[attr-defined]
    status = status_pb2.Status.FromString(trailers["grpc-status-details-bin"])
    retry = error_details_pb2.RetryInfo()
    assert status.details[0].Unpack(retry) and retry.retry_delay.seconds >= 1
