"""A retried OTLP request never duplicates rows, even for readers that do not use FINAL.

Grafana's own trace queries read ``otel_traces`` without FINAL, so these tests count with a plain
``SELECT count()``: a retried body is not written again (the writer's ledger of written requests,
shared by every server on the warehouse, and the twin of a request still queued); spans re-sent
inside a *different* request are collapsed by the ReplacingMergeTree (FINAL at once, every reader
after a merge).
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pyarrow as pa
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from omium.collector import sample
from omium.collector.server import RunningServer
from omium.collector.writer import SpanWriter
from omium.dashboards import grafana
from omium.warehouse import ClickHouseWarehouse

PB = {"content-type": "application/x-protobuf"}


def _post(server: RunningServer, body: bytes) -> int:
    return httpx.post(f"{server.url}/v1/traces", content=body, headers=PB, timeout=60).status_code


def _plain_count(warehouse: ClickHouseWarehouse) -> int:
    return int(warehouse.scalar("SELECT count() FROM otel_traces"))


def test_a_retried_request_is_one_row_without_final(
    server: RunningServer, warehouse: ClickHouseWarehouse
) -> None:
    body = sample.requests(1, 50, seed=61)[0]
    for _ in range(3):
        assert _post(server, body) == 200
    server.state.writer.native_min_spans = 0  # and retried once more through the engine path
    assert _post(server, body) == 200
    assert _plain_count(warehouse) == 50
    assert server.state.writer.stats.duplicate_requests == 3
    # The ledger holds the request once (recorded once the writer is idle).
    deadline = time.monotonic() + 10
    while (
        warehouse.scalar("SELECT count() FROM omium_ingest_requests FINAL") == 0
        and time.monotonic() < deadline
    ):
        time.sleep(0.05)
    assert warehouse.scalar("SELECT count() FROM omium_ingest_requests FINAL") == 1


def test_retries_arriving_together_are_written_once(
    server: RunningServer, warehouse: ClickHouseWarehouse
) -> None:
    bodies = sample.requests(4, 100, seed=62)
    # Each body sent 5 times at once, all 20 posts in flight together.
    with ThreadPoolExecutor(max_workers=20) as pool:
        codes = list(pool.map(lambda body: _post(server, body), [b for b in bodies for _ in range(5)]))
    assert codes == [200] * 20
    assert _plain_count(warehouse) == 400
    assert warehouse.scalar("SELECT uniqExact(TraceId, SpanId) FROM otel_traces") == 400


class _OnAServer:
    """The real embedded warehouse, presented as a ClickHouse server's (several Omium servers may
    write to one of those: each batch then looks its requests up in the ledger)."""

    mode = "clickhouse"

    def __init__(self, real: ClickHouseWarehouse) -> None:
        self._real = real
        self.database = real.database

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)

    def clone(self) -> _OnAServer:
        return self


def _write_once(writer: SpanWriter, body: bytes, spans: int) -> None:
    writer.start()
    try:
        writer.submit(body, spans).result(60)
    finally:
        writer.stop()


def test_a_retry_to_another_server_on_the_same_warehouse_is_not_written_again(
    warehouse: ClickHouseWarehouse, tmp_path: Path
) -> None:
    body = sample.requests(1, 30, seed=63)[0]
    first = SpanWriter(warehouse, tmp_path / "one", native_min_spans=0, writers=1)
    _write_once(first, body, 30)
    assert first.stats.native_batches == 1
    # A second server on the same ClickHouse: it finds the body in the ledger.
    second = SpanWriter(_OnAServer(warehouse.clone()), tmp_path / "two", writers=1)  # type: ignore[arg-type]
    _write_once(second, body, 30)
    assert second.stats.duplicate_requests == 1 and second.stats.python_batches == 0
    # The embedded server restarted: it reads the ledger's latest digests at start.
    third = SpanWriter(warehouse.clone(), tmp_path / "three", writers=1)
    _write_once(third, body, 30)
    assert third.stats.duplicate_requests == 1 and third.stats.python_batches == 0
    assert _plain_count(warehouse) == 30


def test_spans_resent_in_another_request_collapse_by_merge(
    server: RunningServer, warehouse: ClickHouseWarehouse
) -> None:
    spans = ExportTraceServiceRequest.FromString(sample.requests(1, 20, seed=64)[0])
    first, second = ExportTraceServiceRequest(), ExportTraceServiceRequest()
    first.CopyFrom(spans)
    second.CopyFrom(spans)
    del first.resource_spans[0].scope_spans[0].spans[15:]  # spans 0-14
    del second.resource_spans[0].scope_spans[0].spans[:10]  # spans 10-19: 5 re-sent in another body
    assert _post(server, first.SerializeToString()) == 200
    assert _post(server, second.SerializeToString()) == 200
    # Until the parts merge, a reader without FINAL sees the 5 spans twice; FINAL never does.
    assert warehouse.scalar("SELECT count() FROM otel_traces FINAL") == 20
    assert _plain_count(warehouse) in (20, 25)
    # Grafana's data source, as `omium export grafana` provisions it, sends its custom settings
    # with each query (clickhouse-go query settings, what a SETTINGS clause sets): its own trace
    # query, which says no FINAL, reads each span once before any merge.
    (source,) = grafana.datasource_provisioning()["datasources"]
    custom = ", ".join(f"{s['setting']} = {s['value']}" for s in source["jsonData"]["customSettings"])
    plugin_trace_query = (
        "SELECT TraceId, SpanId, ParentSpanId, SpanName FROM otel_traces "
        f"WHERE TraceId = {{trace:String}} SETTINGS {custom}"
    )
    plain = plugin_trace_query.replace(f" SETTINGS {custom}", "")

    def grafana_reads(sql: str, trace: str) -> int:
        # Grafana's user may change settings (the embedded readers' read-only session may not).
        data = warehouse.arrow_bytes(sql, {"trace": trace}, readonly=False)
        return pa.ipc.open_stream(data).read_all().num_rows if data else 0

    twice = 0
    for row in warehouse.query_rows("SELECT TraceId, count() AS n FROM otel_traces FINAL GROUP BY TraceId"):
        assert grafana_reads(plugin_trace_query, row["TraceId"]) == row["n"]
        twice += grafana_reads(plain, row["TraceId"]) - row["n"]
    assert twice == _plain_count(warehouse) - 20  # without the setting, the copies show
    warehouse.command("OPTIMIZE TABLE otel_traces FINAL")
    assert _plain_count(warehouse) == 20
    assert warehouse.scalar("SELECT uniqExact(TraceId, SpanId) FROM otel_traces") == 20


def test_the_ledger_tells_signals_apart() -> None:
    """The three writers share one ledger: the same bytes sent as a request of another signal are
    not taken for a retry of the first (an empty body is a valid request of all three)."""
    from omium.collector.writer import request_digest

    body = b""
    assert request_digest(body) == request_digest(body, SpanWriter.signal)
    digests = {request_digest(body, signal) for signal in ("spans", "log records", "data points")}
    assert len(digests) == 3
