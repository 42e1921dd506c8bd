"""OTLP logs into ``otel_logs``: the official exporters (HTTP with each compression, gRPC), OTLP/JSON,
the response rules, deduplication of re-sent requests, and Grafana's logs queries over the rows."""

from __future__ import annotations

import datetime as dt
import json

import grpc
import httpx
import pytest
from google.rpc import status_pb2
from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter as GrpcLogExporter
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter as HttpLogExporter
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2, logs_service_pb2_grpc

from omium.collector.server import RunningServer
from omium.dashboards import grafana
from omium.warehouse import ClickHouseWarehouse
from tests.collector.logs_and_metrics import (
    SERVICE,
    SPAN_ID,
    TRACE_ID,
    assert_logs_stored,
    emit_logs,
    logs_request,
)

PROTOBUF = {"content-type": "application/x-protobuf"}


def _count(warehouse: ClickHouseWarehouse, final: bool = True) -> int:
    return int(warehouse.scalar(f"SELECT count() FROM otel_logs{' FINAL' if final else ''}"))


@pytest.mark.parametrize("compression", [Compression.NoCompression, Compression.Gzip, Compression.Deflate])
def test_http_exporter(
    server: RunningServer, warehouse: ClickHouseWarehouse, compression: Compression
) -> None:
    tag = f"http-{compression.value}"
    sent = emit_logs(HttpLogExporter(endpoint=f"{server.url}/v1/logs", compression=compression), tag)
    assert_logs_stored(warehouse, sent, tag)
    assert server.state.log_writer.stats.spans_written == len(sent)


@pytest.mark.parametrize(
    "compression", [grpc.Compression.NoCompression, grpc.Compression.Gzip, grpc.Compression.Deflate]
)
def test_grpc_exporter(
    server: RunningServer, warehouse: ClickHouseWarehouse, compression: grpc.Compression
) -> None:
    tag = f"grpc-{compression.name}"
    exporter = GrpcLogExporter(
        endpoint=f"127.0.0.1:{server.grpc_port}", insecure=True, compression=compression
    )
    sent = emit_logs(exporter, tag)
    assert_logs_stored(warehouse, sent, tag)


def test_json_with_hex_ids_and_structured_bodies(
    server: RunningServer, warehouse: ClickHouseWarehouse
) -> None:
    document = {
        "resourceLogs": [
            {
                "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": SERVICE}}]},
                "schemaUrl": "https://opentelemetry.io/schemas/1.26.0",
                "scopeLogs": [
                    {
                        "scope": {"name": "json-scope", "version": "9"},
                        "logRecords": [
                            {
                                "observedTimeUnixNano": "1700000000000000123",
                                "severityNumber": 17,
                                "severityText": "ERROR",
                                "traceId": f"{TRACE_ID:032x}",
                                "spanId": f"{SPAN_ID:016x}",
                                "flags": 257,
                                "body": {
                                    "kvlistValue": {"values": [{"key": "k", "value": {"intValue": "7"}}]}
                                },
                                "attributes": [{"key": "n", "value": {"doubleValue": 2.5}}],
                                "unknownField": True,
                            }
                        ],
                    }
                ],
            }
        ]
    }
    response = httpx.post(f"{server.url}/v1/logs", json=document)
    assert response.status_code == 200 and response.headers["content-type"].startswith("application/json")
    assert response.json() == {}
    row = warehouse.query_rows("SELECT toUnixTimestamp64Nano(Timestamp) AS ts, * FROM otel_logs FINAL")[0]
    assert row["ts"] == 1700000000000000123  # no time: the observed time, as the exporter
    assert (row["TraceId"], row["SpanId"]) == (f"{TRACE_ID:032x}", f"{SPAN_ID:016x}")
    assert row["TraceFlags"] == 1  # the low byte of the flags
    assert (row["SeverityText"], row["SeverityNumber"]) == ("ERROR", 17)
    assert row["Body"] == '{"k":7}'
    assert dict(row["LogAttributes"]) == {"n": "2.5"}
    assert row["ResourceSchemaUrl"] == "https://opentelemetry.io/schemas/1.26.0"
    assert (row["ScopeName"], row["ScopeVersion"]) == ("json-scope", "9")


def test_empty_request_is_a_plain_success(server: RunningServer) -> None:
    response = httpx.post(f"{server.url}/v1/logs", content=b"", headers=PROTOBUF)
    assert response.status_code == 200
    assert not logs_service_pb2.ExportLogsServiceResponse.FromString(response.content).HasField(
        "partial_success"
    )


def test_invalid_records_are_a_partial_success(server: RunningServer, warehouse: ClickHouseWarehouse) -> None:
    request = logs_request("partial", count=3)
    bad = request.resource_logs[0].scope_logs[0].log_records.add(trace_id=b"\x01" * 5)
    bad.attributes.add(key="tag").value.string_value = "partial"
    response = httpx.post(f"{server.url}/v1/logs", content=request.SerializeToString(), headers=PROTOBUF)
    assert response.status_code == 200
    partial = logs_service_pb2.ExportLogsServiceResponse.FromString(response.content).partial_success
    assert partial.rejected_log_records == 1 and "trace_id" in partial.error_message
    assert _count(warehouse) == 3


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        ("application/x-protobuf", b"\xff\xff\xff"),
        ("application/json", b"{not json"),
        ("application/json", b"[1]"),
    ],
)
def test_bad_input_is_400_and_stores_nothing(
    server: RunningServer, warehouse: ClickHouseWarehouse, content_type: str, body: bytes
) -> None:
    response = httpx.post(f"{server.url}/v1/logs", content=body, headers={"content-type": content_type})
    assert response.status_code == 400
    if content_type == "application/json":
        message = response.json()["message"]
        assert "JSON" in message if body.startswith(b"{") else "ExportLogsServiceRequest" in message
    else:
        assert "ExportLogsServiceRequest" in status_pb2.Status.FromString(response.content).message
    assert _count(warehouse, final=False) == 0


def test_unknown_content_type_is_415(server: RunningServer) -> None:
    response = httpx.post(f"{server.url}/v1/logs", content=b"x", headers={"content-type": "text/plain"})
    assert response.status_code == 415


def test_retried_requests_read_as_one_row(server: RunningServer, warehouse: ClickHouseWarehouse) -> None:
    warehouse.command("SYSTEM STOP MERGES otel_logs")  # keep the duplicates apart: FINAL must collapse them
    body = logs_request("retry", count=4).SerializeToString()
    for _ in range(3):
        assert httpx.post(f"{server.url}/v1/logs", content=body, headers=PROTOBUF).status_code == 200
    with grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}") as channel:
        stub = logs_service_pb2_grpc.LogsServiceStub(channel)
        stub.Export(logs_service_pb2.ExportLogsServiceRequest.FromString(body), timeout=30)
    # The writer's ledger answers retries of a written body without writing it (so plain count()
    # is 4 too); past it (a crash between insert and ledger, two servers), FINAL collapses them.
    assert _count(warehouse, final=False) in (4, 16)
    assert _count(warehouse) == 4


def test_overload_is_503_with_retry_after(server: RunningServer, warehouse: ClickHouseWarehouse) -> None:
    writer = server.state.log_writer
    limit = writer._max_pending
    writer._max_pending = 1
    writer._pending_spans = 1  # as if a record were waiting to be written
    try:
        body = logs_request("overload").SerializeToString()
        response = httpx.post(f"{server.url}/v1/logs", content=body, headers=PROTOBUF)
        assert response.status_code == 503 and int(response.headers["retry-after"]) >= 1
        with grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}") as channel:
            stub = logs_service_pb2_grpc.LogsServiceStub(channel)
            with pytest.raises(grpc.RpcError) as refused:
                stub.Export(logs_service_pb2.ExportLogsServiceRequest.FromString(body), timeout=10)
            assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        writer._pending_spans = 0
        writer._max_pending = limit
    assert _count(warehouse, final=False) == 0


def test_ingest_token_is_required_when_set(server: RunningServer) -> None:
    settings = server.state.settings
    object.__setattr__(settings, "ingest_token", "ingest-secret")
    try:
        body = logs_request("token").SerializeToString()
        assert httpx.post(f"{server.url}/v1/logs", content=body, headers=PROTOBUF).status_code == 401
        allowed = PROTOBUF | {"authorization": "Bearer ingest-secret"}
        assert httpx.post(f"{server.url}/v1/logs", content=body, headers=allowed).status_code == 200
    finally:
        object.__setattr__(settings, "ingest_token", None)


# --- Grafana's ClickHouse data source (grafana-clickhouse-datasource), OTel logs mode -------------
# The SQL its query builder generates for otel_logs (src/data/sqlGenerator.ts generateLogsQuery with
# the OTel 1.29 log column map: Timestamp, Body, SeverityText, LogAttributes, TraceId), the
# "Logs for service" and trace-to-logs filters it adds, and the logs volume query it wraps around a
# logs query (src/data/logsVolumeSql.ts), with the plugin's macros substituted.
_LOGS = (
    'SELECT Timestamp as "timestamp", Body as "body", SeverityText as "level", LogAttributes as "labels", '
    'TraceId as "traceID" FROM "{db}"."otel_logs"'
)
_IN_RANGE = "( timestamp >= $__fromTime AND timestamp <= $__toTime )"
PLUGIN_QUERIES = {
    "logs": f"{_LOGS} WHERE {_IN_RANGE} ORDER BY timestamp DESC LIMIT 1000",
    "logs for service": f"{_LOGS} WHERE {_IN_RANGE} AND ( ServiceName = '{SERVICE}' ) ORDER BY timestamp DESC LIMIT 1000",
    "trace to logs": f"{_LOGS} WHERE {_IN_RANGE} AND ( traceID = '{TRACE_ID:032x}' ) ORDER BY timestamp DESC LIMIT 1000",
    "span to logs": (
        f"{_LOGS} WHERE {_IN_RANGE} AND ( traceID = '{TRACE_ID:032x}' ) AND ( SpanId = '{SPAN_ID:016x}' ) "
        "ORDER BY timestamp DESC LIMIT 1000"
    ),
    "logs volume": (
        'SELECT toStartOfInterval(toDateTime(src."timestamp"), INTERVAL 1 HOUR) AS "time", '
        "sum(ifNull(toString(src.\"level\"), '') IN ('error','err','eror','ERROR','ERR','EROR','Error','Err','Eror')) "
        'AS "error", count(*) AS "logs"\nFROM (\n'
        'SELECT Timestamp as "timestamp", Body as "body", SeverityText as "level" FROM "{db}"."otel_logs" '
        f"WHERE {_IN_RANGE}\n) AS src\n"
        'WHERE toDateTime(src."timestamp") >= $__fromTime AND toDateTime(src."timestamp") <= $__toTime\n'
        'GROUP BY "time"\nORDER BY "time" ASC'
    ),
}


def test_grafana_plugin_logs_queries_run(server: RunningServer, warehouse: ClickHouseWarehouse) -> None:
    sent = emit_logs(HttpLogExporter(endpoint=f"{server.url}/v1/logs"), "grafana", count=6)
    now = dt.datetime.now(dt.UTC)
    results = {}
    for name, sql in PLUGIN_QUERIES.items():
        query = grafana.substitute_macros(
            sql.replace("{db}", warehouse.database), now - dt.timedelta(hours=2), now, 60, {}
        )
        results[name] = warehouse.query_rows(query)
    logs = results["logs"]
    assert len(logs) == len(sent)
    assert [r["body"] for r in logs] == [s.body for s in reversed(sent)]
    assert list(logs[0]) == ["timestamp", "body", "level", "labels", "traceID"]
    assert {r["level"] for r in logs} == {"INFO", "ERROR"}
    assert dict(logs[-1]["labels"])["tag"] == "grafana"
    assert len(results["logs for service"]) == len(sent)
    in_span = [s for s in sent if s.in_span]
    assert len(results["trace to logs"]) == len(in_span) == len(results["span to logs"])
    assert {r["traceID"] for r in results["trace to logs"]} == {f"{TRACE_ID:032x}"}
    volume = results["logs volume"]
    assert sum(r["logs"] for r in volume) == len(sent)
    assert sum(r["error"] for r in volume) == sum(s.severity_text == "ERROR" for s in sent)
    # Outside the time range: nothing.
    past = grafana.substitute_macros(
        PLUGIN_QUERIES["logs"].replace("{db}", warehouse.database),
        now - dt.timedelta(days=30),
        now - dt.timedelta(days=29),
        60,
        {},
    )
    assert warehouse.query_rows(past) == []


def test_records_are_durable_when_acknowledged(server: RunningServer, warehouse: ClickHouseWarehouse) -> None:
    # The answer comes after the insert returned: a read right after the 200 sees every record.
    for round_ in range(5):
        body = logs_request(f"durable-{round_}", count=20).SerializeToString()
        assert httpx.post(f"{server.url}/v1/logs", content=body, headers=PROTOBUF).status_code == 200
        assert _count(warehouse) == 20 * (round_ + 1)
    assert (
        json.loads(httpx.get(f"{server.url}/v1/stats", headers={"authorization": "Bearer test-token"}).text)[
            "logs"
        ]["spans_written"]
        == 100
    )
