"""The official OTLP exporters (HTTP and gRPC) into a running server: rows equal what was sent."""

from __future__ import annotations

import pytest
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter

from omium.collector.server import RunningServer
from omium.warehouse import ClickHouseWarehouse
from tests.collector.spans import assert_rows_match, emit_workflow

# Small batches are decoded in Python, large ones by the engine: run both on the same spans.
PATHS = {"python": 10**9, "engine": 0}


@pytest.mark.parametrize("path", PATHS)
def test_http_exporter(server: RunningServer, warehouse: ClickHouseWarehouse, path: str) -> None:
    server.state.writer.native_min_spans = PATHS[path]
    spans = emit_workflow(HttpExporter(endpoint=f"{server.url}/v1/traces"))
    assert_rows_match(warehouse, spans)
    stats = server.state.writer.stats
    assert (stats.native_batches > 0) == (path == "engine")
    assert stats.fallback_batches == 0


def test_http_exporter_gzip(server: RunningServer, warehouse: ClickHouseWarehouse) -> None:
    spans = emit_workflow(HttpExporter(endpoint=f"{server.url}/v1/traces", compression=Compression.Gzip))
    assert_rows_match(warehouse, spans)


@pytest.mark.parametrize("path", PATHS)
def test_grpc_exporter(server: RunningServer, warehouse: ClickHouseWarehouse, path: str) -> None:
    server.state.writer.native_min_spans = PATHS[path]
    spans = emit_workflow(GrpcExporter(endpoint=f"127.0.0.1:{server.grpc_port}", insecure=True))
    assert_rows_match(warehouse, spans)
