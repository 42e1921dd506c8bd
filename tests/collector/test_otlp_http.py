"""OTLP/HTTP answers as the specification says, and bad input loses nothing else."""

from __future__ import annotations

import gzip
import json

import httpx
import pytest
from google.rpc import status_pb2
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, ArrayValue, KeyValue, KeyValueList

from omium.collector import sample
from omium.collector.server import RunningServer
from omium.warehouse import ClickHouseWarehouse

PB = {"content-type": "application/x-protobuf"}


def _post(server: RunningServer, body: bytes, **headers: str) -> httpx.Response:
    return httpx.post(f"{server.url}/v1/traces", content=body, headers=PB | headers, timeout=30)


def _one_request(n: int = 12, seed: int = 1) -> ExportTraceServiceRequest:
    request = ExportTraceServiceRequest()
    request.ParseFromString(sample.requests(1, n, seed=seed)[0])
    return request


def _count(warehouse: ClickHouseWarehouse) -> int:
    return int(warehouse.scalar("SELECT count() FROM otel_traces FINAL"))


def test_json_with_hex_ids_round_trips(server: RunningServer, warehouse: ClickHouseWarehouse) -> None:
    body = {
        "resourceSpans": [
            {
                "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "json-svc"}}]},
                "scopeSpans": [
                    {
                        "scope": {"name": "manual", "version": "1"},
                        "spans": [
                            {
                                "traceId": "5b8efff798038103d269b633813fc60c",
                                "spanId": "eee19b7ec3c1b174",
                                "parentSpanId": "eee19b7ec3c1b173",
                                "name": "invoke_agent kyc",
                                "kind": 3,
                                "startTimeUnixNano": "1544712660000000000",
                                "endTimeUnixNano": "1544712661000000000",
                                "attributes": [
                                    {"key": "gen_ai.usage.input_tokens", "value": {"intValue": "42"}},
                                    {"key": "ok", "value": {"boolValue": True}},
                                ],
                                "events": [{"timeUnixNano": "1544712660500000000", "name": "checkpoint"}],
                                "links": [
                                    {
                                        "traceId": "5b8efff798038103d269b633813fc60d",
                                        "spanId": "eee19b7ec3c1b175",
                                    }
                                ],
                                "status": {"code": 2, "message": "boom"},
                                "someFutureField": {"ignored": True},
                            }
                        ],
                    }
                ],
            }
        ]
    }
    response = httpx.post(f"{server.url}/v1/traces", json=body, timeout=30)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    assert response.json() == {}
    row = warehouse.query_rows(
        "SELECT TraceId, SpanId, ParentSpanId, SpanKind, StatusCode, StatusMessage, SpanAttributes, Duration, "
        "toUnixTimestamp64Nano(Timestamp) AS ns, Links.TraceId AS lt, Events.Name AS en FROM otel_traces"
    )[0]
    assert row["TraceId"] == "5b8efff798038103d269b633813fc60c"
    assert row["SpanId"] == "eee19b7ec3c1b174"
    assert row["ParentSpanId"] == "eee19b7ec3c1b173"
    assert row["SpanKind"] == "Client"
    assert (row["StatusCode"], row["StatusMessage"]) == ("Error", "boom")
    assert dict(row["SpanAttributes"]) == {"gen_ai.usage.input_tokens": "42", "ok": "true"}
    assert row["Duration"] == 1_000_000_000 and row["ns"] == 1544712660000000000
    assert row["lt"] == ["5b8efff798038103d269b633813fc60d"] and row["en"] == ["checkpoint"]


def test_empty_request_is_a_plain_success(server: RunningServer) -> None:
    response = _post(server, b"")
    assert response.status_code == 200
    parsed = ExportTraceServiceResponse.FromString(response.content)
    assert not parsed.HasField("partial_success")
    assert httpx.post(f"{server.url}/v1/traces", json={}, timeout=10).json() == {}


def test_invalid_spans_are_a_partial_success(server: RunningServer, warehouse: ClickHouseWarehouse) -> None:
    request = _one_request(12)
    spans = request.resource_spans[0].scope_spans[0].spans
    spans[0].trace_id = b"\x01" * 3
    spans[1].span_id = b""
    spans[2].trace_id = bytes(16)
    response = _post(server, request.SerializeToString())
    assert response.status_code == 200
    parsed = ExportTraceServiceResponse.FromString(response.content)
    assert parsed.partial_success.rejected_spans == 3
    assert "rejected" in parsed.partial_success.error_message
    assert _count(warehouse) == 9


@pytest.mark.parametrize("body", [b"\xff\xff\xff\xff", b"\x0a\x05abc", b"not protobuf at all" * 3])
def test_malformed_protobuf_is_400_with_status(server: RunningServer, body: bytes) -> None:
    response = _post(server, body)
    assert response.status_code == 400
    status = status_pb2.Status.FromString(response.content)
    assert status.code == 3 and "protobuf" in status.message


@pytest.mark.parametrize(
    "body",
    [
        b"{not json",
        b"[1, 2]",
        json.dumps({"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": "zz"}]}]}]}).encode(),
        json.dumps({"resourceSpans": "nope"}).encode(),
    ],
)
def test_malformed_json_is_400(server: RunningServer, body: bytes) -> None:
    response = httpx.post(
        f"{server.url}/v1/traces", content=body, headers={"content-type": "application/json"}
    )
    assert response.status_code == 400
    assert response.json()["code"] == 3 and response.json()["message"]


def test_unknown_content_type_is_415(server: RunningServer) -> None:
    response = httpx.post(f"{server.url}/v1/traces", content=b"x", headers={"content-type": "text/plain"})
    assert response.status_code == 415


def test_oversized_bodies_are_413(server: RunningServer, warehouse: ClickHouseWarehouse) -> None:
    cap = server.state.settings.max_body_bytes
    object.__setattr__(server.state.settings, "max_body_bytes", 50_000)
    try:
        big = sample.requests(1, 200)[0]
        assert len(big) > 50_000
        assert _post(server, big).status_code == 413
        # A gzip bomb: tiny on the wire, huge inflated, stopped at the cap.
        bomb = gzip.compress(b"\x00" * 5_000_000)
        assert len(bomb) < 50_000
        assert _post(server, bomb, **{"content-encoding": "gzip"}).status_code == 413
        assert _post(server, b"\x1f\x8b garbage", **{"content-encoding": "gzip"}).status_code == 400
    finally:
        object.__setattr__(server.state.settings, "max_body_bytes", cap)
    # ... and the server keeps serving.
    assert _post(server, sample.requests(1, 10)[0]).status_code == 200
    assert _count(warehouse) == 10


def test_resent_batches_do_not_double_count(server: RunningServer, warehouse: ClickHouseWarehouse) -> None:
    body = sample.requests(1, 50, seed=5)[0]
    for _ in range(3):
        assert _post(server, body).status_code == 200
    server.state.writer.native_min_spans = 0  # and once more through the engine path
    assert _post(server, body).status_code == 200
    assert _count(warehouse) == 50


def _deep_value() -> AnyValue:
    inner = AnyValue(array_value=ArrayValue(values=[AnyValue(string_value="a"), AnyValue(int_value=2)]))
    return AnyValue(kvlist_value=KeyValueList(values=[KeyValue(key="nested", value=inner)]))


def test_deeply_nested_values_take_the_python_path(
    server: RunningServer, warehouse: ClickHouseWarehouse
) -> None:
    server.state.writer.native_min_spans = 0
    request = _one_request(30, seed=9)
    request.resource_spans[0].scope_spans[0].spans[4].attributes.append(
        KeyValue(key="deep", value=_deep_value())
    )
    assert _post(server, request.SerializeToString()).status_code == 200
    assert server.state.writer.stats.fallback_batches == 1
    assert _count(warehouse) == 30
    stored = warehouse.scalar(
        "SELECT SpanAttributes['deep'] FROM otel_traces WHERE mapContains(SpanAttributes, 'deep')"
    )
    assert json.loads(stored) == {"nested": ["a", 2]}


def test_times_past_2262_are_rejected_not_fatal(
    server: RunningServer, warehouse: ClickHouseWarehouse
) -> None:
    request = _one_request(10, seed=13)
    spans = request.resource_spans[0].scope_spans[0].spans
    spans[0].start_time_unix_nano = 2**64 - 1
    spans[1].events.add(time_unix_nano=2**63 + 5, name="late")
    for native_min in (10**9, 0):
        server.state.writer.native_min_spans = native_min
        response = _post(server, request.SerializeToString())
        assert response.status_code == 200
        assert ExportTraceServiceResponse.FromString(response.content).partial_success.rejected_spans == 2
    assert _count(warehouse) == 8


def _json_post(server: RunningServer, body: bytes) -> httpx.Response:
    return httpx.post(
        f"{server.url}/v1/traces", content=body, headers={"content-type": "application/json"}, timeout=30
    )


def _healthy(server: RunningServer) -> bool:
    return httpx.get(f"{server.url}/v1/health", timeout=10).status_code == 200


@pytest.mark.parametrize(
    "body",
    [
        b"[" * 100_000 + b"]" * 100_000,
        b'{"resourceSpans": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
        b'{"resourceSpans": [{"x": ' + b'{"a": ' * 5_000 + b"1" + b"}" * 5_000 + b"}]}",
    ],
    ids=["list", "under-a-key", "objects"],
)
def test_deeply_nested_json_is_400(server: RunningServer, body: bytes) -> None:
    response = _json_post(server, body)
    assert response.status_code == 400
    assert response.json()["code"] == 3 and "nested" in response.json()["message"]
    assert _healthy(server)


@pytest.mark.parametrize(
    "body",
    [
        rb'{"resourceSpans": [{"scopeSpans": [{"spans": [{"name": "\ud800"}]}]}]}',
        rb'{"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": "\udfff\ud800"}]}]}]}',
        rb'{"\ud800": 1}',
        b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"name": "\xff\xfe"}]}]}]}',
    ],
    ids=["value", "id", "key", "not-utf8"],
)
def test_lone_surrogates_and_bad_utf8_are_400(server: RunningServer, body: bytes) -> None:
    response = _json_post(server, body)
    assert response.status_code == 400
    assert response.json()["code"] == 3
    response.content.decode("utf-8")  # the error body is valid text
    assert _healthy(server)


def _kvlist(depth: int) -> dict[str, object]:
    value: dict[str, object] = {"stringValue": "leaf"}
    for level in range(depth):
        value = {"kvlistValue": {"values": [{"key": f"k{level}", "value": value}]}}
    return value


def test_structured_attributes_of_real_depth_are_taken(
    server: RunningServer, warehouse: ClickHouseWarehouse
) -> None:
    # Ten levels of key-value lists inside an event's attribute: deeper than instrumentations nest.
    span = {
        "traceId": "5b8efff798038103d269b633813fc60c",
        "spanId": "eee19b7ec3c1b174",
        "name": "deep",
        "startTimeUnixNano": "1544712660000000000",
        "events": [{"name": "e", "attributes": [{"key": "payload", "value": _kvlist(10)}]}],
        "attributes": [{"key": "payload", "value": _kvlist(10)}],
    }
    body = {"resourceSpans": [{"scopeSpans": [{"spans": [span]}]}]}
    response = _json_post(server, json.dumps(body).encode())
    assert response.status_code == 200, response.text
    stored = warehouse.scalar("SELECT SpanAttributes['payload'] FROM otel_traces")
    assert json.loads(stored)["k9"]["k8"]["k7"]
    # ... while nesting past the limit is refused, not parsed.
    span["attributes"] = [{"key": "payload", "value": _kvlist(20)}]
    assert _json_post(server, json.dumps(body).encode()).status_code == 400


DAY_NS = 86_400 * 10**9


@pytest.mark.parametrize("native_min", [10**9, 0], ids=["python", "engine"])
def test_a_request_over_200_days_is_stored_whole(
    server: RunningServer, warehouse: ClickHouseWarehouse, native_min: int
) -> None:
    # otel_traces is partitioned by day and one insert may touch only 100 partitions; spans of
    # 200 different days are valid all the same: split, stored, answered 200 (never 503 for ever).
    server.state.writer.native_min_spans = native_min
    request = _one_request(400, seed=17)
    spans = request.resource_spans[0].scope_spans[0].spans
    for index, span in enumerate(spans):
        span.start_time_unix_nano = 1_600_000_000 * 10**9 + (index % 200) * DAY_NS
        span.end_time_unix_nano = span.start_time_unix_nano + 1_000
    response = _post(server, request.SerializeToString())
    assert response.status_code == 200, response.content
    assert not ExportTraceServiceResponse.FromString(response.content).HasField("partial_success")
    assert _count(warehouse) == 400
    assert warehouse.scalar("SELECT uniqExact(toDate(Timestamp)) FROM otel_traces") == 200
    assert server.state.writer.stats.split_inserts == 1


def test_multi_member_gzip_is_read_whole(server: RunningServer, warehouse: ClickHouseWarehouse) -> None:
    # Two protobuf requests concatenated are one request holding both's spans (repeated fields
    # append); gzipped separately and concatenated, they are one valid gzip body.
    first, second = sample.requests(1, 10, seed=41)[0], sample.requests(1, 15, seed=42)[0]
    body = gzip.compress(first) + gzip.compress(second) + b"\x00" * 8
    response = _post(server, body, **{"content-encoding": "gzip"})
    assert response.status_code == 200
    assert _count(warehouse) == 25


def test_multi_member_gzip_is_capped_across_members(server: RunningServer) -> None:
    cap = server.state.settings.max_body_bytes
    object.__setattr__(server.state.settings, "max_body_bytes", 50_000)
    try:
        member = gzip.compress(b"\x00" * 30_000)
        assert _post(server, member, **{"content-encoding": "gzip"}).status_code == 400  # not OTLP
        assert _post(server, member * 2, **{"content-encoding": "gzip"}).status_code == 413
        assert _post(server, member + b"garbage", **{"content-encoding": "gzip"}).status_code == 400
    finally:
        object.__setattr__(server.state.settings, "max_body_bytes", cap)


@pytest.mark.parametrize("encoding", ["br", "compress"])
def test_other_encodings_are_415(server: RunningServer, encoding: str) -> None:
    # gzip, zstd and deflate are decoded (tests/collector/test_encodings.py); others are refused.
    response = _post(server, b"\x28\xb5\x2f\xfd", **{"content-encoding": encoding})
    assert response.status_code == 415
    assert response.headers["accept-encoding"] == "gzip, zstd, deflate, identity"
    assert encoding in status_pb2.Status.FromString(response.content).message
