"""OTLP/gRPC answers: malformed messages are INVALID_ARGUMENT (logged sparingly), size is capped."""

from __future__ import annotations

import logging
from pathlib import Path

import grpc
import httpx
import pytest
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

from omium.collector import sample
from omium.collector.otlp_grpc import EXPORT_METHOD, start_grpc_server
from omium.collector.server import RunningServer
from omium.collector.writer import SpanWriter
from omium.warehouse import ClickHouseWarehouse

DAY_NS = 86_400 * 10**9


def _raw_export(port: int) -> grpc.UnaryUnaryMultiCallable:
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    return channel.unary_unary(
        EXPORT_METHOD, request_serializer=lambda body: body, response_deserializer=lambda body: body
    )


def test_malformed_messages_are_invalid_argument_logged_once(
    server: RunningServer, caplog: pytest.LogCaptureFixture
) -> None:
    export = _raw_export(server.grpc_port)
    caplog.set_level(logging.DEBUG)
    for body in [b"\xff\xff\xff\xff", b"\x0a\x05abc", b"\x0a\x02\x12\x00\xff"] * 20:
        with pytest.raises(grpc.RpcError) as failed:
            export(body, timeout=10)
        assert failed.value.code() == grpc.StatusCode.INVALID_ARGUMENT  # type: ignore[attr-defined]
        assert "protobuf" in failed.value.details()  # type: ignore[attr-defined]
    # 60 bad calls from one client: one line, and no traceback at all.
    lines = [r for r in caplog.records if "malformed" in r.getMessage()]
    assert len(lines) == 1
    assert not [r for r in caplog.records if r.exc_info or "deserializ" in r.getMessage()]
    # ... and good calls still go through.
    assert export(sample.requests(1, 5)[0], timeout=30) == b""
    assert httpx.get(f"{server.url}/v1/health", timeout=10).status_code == 200


def test_messages_past_the_body_cap_are_refused_for_good(
    warehouse: ClickHouseWarehouse, tmp_path: Path
) -> None:
    writer = SpanWriter(warehouse, tmp_path / "spool")
    writer.start()
    server, port = start_grpc_server(writer, "127.0.0.1", 0, max_message_bytes=50_000)
    try:
        export = _raw_export(port)
        big = sample.requests(1, 200)[0]
        assert len(big) > 50_000
        with pytest.raises(grpc.RpcError) as failed:
            export(big, timeout=10)
        # RESOURCE_EXHAUSTED without RetryInfo: OTLP clients do not retry it.
        assert failed.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED  # type: ignore[attr-defined]
        trailers = dict(failed.value.trailing_metadata() or ())  # type: ignore[attr-defined]
        assert "grpc-status-details-bin" not in trailers
        assert export(sample.requests(1, 20)[0], timeout=30) == b""
    finally:
        server.stop(grace=0)
        writer.stop()


def test_a_request_over_200_days_is_stored_whole(
    server: RunningServer, warehouse: ClickHouseWarehouse
) -> None:
    request = trace_service_pb2.ExportTraceServiceRequest.FromString(sample.requests(1, 300, seed=61)[0])
    for index, span in enumerate(request.resource_spans[0].scope_spans[0].spans):
        span.start_time_unix_nano = 1_650_000_000 * 10**9 + index * DAY_NS
    export = _raw_export(server.grpc_port)
    assert export(request.SerializeToString(), timeout=60) == b""
    assert warehouse.scalar("SELECT count() FROM otel_traces FINAL") == 300
