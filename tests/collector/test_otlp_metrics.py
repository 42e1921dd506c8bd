"""OTLP metrics into the ``otel_metrics_*`` tables: the official exporters (HTTP and gRPC, with each
compression) with the SDK's MeterProvider produce sum, gauge, histogram and exponential histogram
points; a hand-built request adds a summary (the Python SDK cannot make one). Rows are compared
field by field with what the SDK exported; bad input stores nothing; retries read once."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import grpc
import httpx
import pytest
from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter as GrpcMetricExporter
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter as HttpMetricExporter
from opentelemetry.metrics import Observation
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    ExponentialHistogram,
    Gauge,
    Histogram,
    MetricExporter,
    MetricExportResult,
    MetricsData,
    PeriodicExportingMetricReader,
    Sum,
)
from opentelemetry.sdk.metrics.view import ExponentialBucketHistogramAggregation, View
from opentelemetry.sdk.resources import Resource

from omium.collector.server import RunningServer
from omium.warehouse import ClickHouseWarehouse

SERVICE = "support-agents"
PROTOBUF = {"content-type": "application/x-protobuf"}
TABLES = {
    Sum: "otel_metrics_sum",
    Gauge: "otel_metrics_gauge",
    Histogram: "otel_metrics_histogram",
    ExponentialHistogram: "otel_metrics_exponential_histogram",
}


class _Capturing(MetricExporter):
    """Forwards to a real OTLP exporter and keeps what it exported."""

    def __init__(self, inner: Any) -> None:
        super().__init__(
            preferred_temporality=inner._preferred_temporality,
            preferred_aggregation=inner._preferred_aggregation,
        )
        self.inner = inner
        self.exported: list[MetricsData] = []

    def export(
        self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any
    ) -> MetricExportResult:
        self.exported.append(metrics_data)
        return self.inner.export(metrics_data, timeout_millis=timeout_millis)  # type: ignore[no-any-return]

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return True

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        self.inner.shutdown()


def _emit(inner: Any, tag: str) -> list[MetricsData]:
    exporter = _Capturing(inner)
    reader = PeriodicExportingMetricReader(exporter, export_interval_millis=3_600_000)
    provider = MeterProvider(
        metric_readers=[reader],
        resource=Resource.create({"service.name": SERVICE, "deployment": tag}),
        views=[View(instrument_name="latency.exp", aggregation=ExponentialBucketHistogramAggregation())],
    )
    meter = provider.get_meter("omium.tests", "1.2.3")
    calls = meter.create_counter("agent.calls", unit="{call}", description="calls made")
    calls.add(3, {"agent": "triage", "tag": tag})
    calls.add(4, {"agent": "triage", "tag": tag})
    calls.add(1, {"agent": "billing", "tag": tag})
    meter.create_up_down_counter("queue.depth").add(-2, {"tag": tag})
    meter.create_gauge("temperature", unit="Cel").set(21.5, {"tag": tag})
    meter.create_observable_gauge(
        "tokens.left", callbacks=[lambda _options: [Observation(1234, {"tag": tag})]]
    )
    latency = meter.create_histogram("latency", unit="ms")
    exp = meter.create_histogram("latency.exp", unit="ms")
    for value in (1.0, 5.0, 50.0, 0.003, 2500.0):
        latency.record(value, {"tag": tag})
        exp.record(value, {"tag": tag})
    provider.shutdown()  # one collection, exported once
    return exporter.exported


def _expected(exported: Sequence[MetricsData]) -> dict[str, list[dict[str, Any]]]:
    """What each table must hold, from the SDK's own exported objects."""
    out: dict[str, list[dict[str, Any]]] = {table: [] for table in TABLES.values()}
    for data in exported:
        for resource_metrics in data.resource_metrics:
            resource = {k: str(v) for k, v in resource_metrics.resource.attributes.items()}
            for scope_metrics in resource_metrics.scope_metrics:
                for metric in scope_metrics.metrics:
                    for point in metric.data.data_points:
                        row: dict[str, Any] = {
                            "ResourceAttributes": resource,
                            "ScopeName": scope_metrics.scope.name,
                            "ScopeVersion": scope_metrics.scope.version,
                            "ServiceName": SERVICE,
                            "MetricName": metric.name,
                            "MetricDescription": metric.description or "",
                            "MetricUnit": metric.unit or "",
                            "Attributes": {k: str(v) for k, v in (point.attributes or {}).items()},
                            "start": point.start_time_unix_nano or 0,
                            "time": point.time_unix_nano,
                        }
                        data_ = metric.data
                        if isinstance(data_, (Sum, Gauge)):
                            row["Value"] = float(point.value)
                        if isinstance(data_, Sum):
                            row["IsMonotonic"] = bool(data_.is_monotonic)
                        if isinstance(data_, (Sum, Histogram, ExponentialHistogram)):
                            row["AggregationTemporality"] = int(data_.aggregation_temporality)
                        if isinstance(data_, (Histogram, ExponentialHistogram)):
                            row |= {
                                "Count": point.count,
                                "Sum": point.sum,
                                "Min": point.min,
                                "Max": point.max,
                            }
                        if isinstance(data_, Histogram):
                            row["BucketCounts"] = list(point.bucket_counts)
                            row["ExplicitBounds"] = [float(b) for b in point.explicit_bounds]
                        if isinstance(data_, ExponentialHistogram):
                            row |= {
                                "Scale": point.scale,
                                "ZeroCount": point.zero_count,
                                "PositiveOffset": point.positive.offset,
                                "PositiveBucketCounts": list(point.positive.bucket_counts),
                                "NegativeOffset": point.negative.offset,
                                "NegativeBucketCounts": list(point.negative.bucket_counts),
                            }
                        out[TABLES[type(data_)]].append(row)
    return out


def _stored(warehouse: ClickHouseWarehouse, table: str, tag: str) -> list[dict[str, Any]]:
    rows = warehouse.query_rows(
        "SELECT toUnixTimestamp64Nano(StartTimeUnix) AS start, toUnixTimestamp64Nano(TimeUnix) AS time, * "
        f"FROM {table} FINAL WHERE Attributes['tag'] = {{tag:String}} ORDER BY MetricName, toString(Attributes)",
        {"tag": tag},
    )
    for row in rows:
        for key in ("ResourceAttributes", "Attributes", "ScopeAttributes"):
            row[key] = dict(row[key])
    return rows


def _assert_stored(warehouse: ClickHouseWarehouse, exported: Sequence[MetricsData], tag: str) -> None:
    expected = _expected(exported)
    assert all(expected.values()), "the SDK made every kind of point"
    for table, points in expected.items():
        stored = _stored(warehouse, table, tag)
        assert len(stored) == len(points), table
        key = lambda row: (row["MetricName"], str(sorted(row["Attributes"].items())))  # noqa: E731
        for row, want in zip(sorted(stored, key=key), sorted(points, key=key), strict=True):
            for column, value in want.items():
                assert row[column] == value, (table, column, row[column], value)
            assert row["ScopeSchemaUrl"] == "" and row["Flags"] == 0


@pytest.mark.parametrize("compression", [Compression.NoCompression, Compression.Gzip, Compression.Deflate])
def test_http_exporter(
    server: RunningServer, warehouse: ClickHouseWarehouse, compression: Compression
) -> None:
    tag = f"http-{compression.value}"
    exported = _emit(HttpMetricExporter(endpoint=f"{server.url}/v1/metrics", compression=compression), tag)
    _assert_stored(warehouse, exported, tag)
    sums = {
        r["MetricName"]: r
        for r in _stored(warehouse, "otel_metrics_sum", tag)
        if r["Attributes"].get("agent") != "billing"
    }
    assert sums["agent.calls"]["Value"] == 7.0 and sums["agent.calls"]["IsMonotonic"]
    assert sums["queue.depth"]["Value"] == -2.0 and not sums["queue.depth"]["IsMonotonic"]
    histogram = _stored(warehouse, "otel_metrics_histogram", tag)[0]
    assert (histogram["Count"], histogram["Min"], histogram["Max"]) == (5, 0.003, 2500.0)


@pytest.mark.parametrize(
    "compression", [grpc.Compression.NoCompression, grpc.Compression.Gzip, grpc.Compression.Deflate]
)
def test_grpc_exporter(
    server: RunningServer, warehouse: ClickHouseWarehouse, compression: grpc.Compression
) -> None:
    tag = f"grpc-{compression.name}"
    inner = GrpcMetricExporter(
        endpoint=f"127.0.0.1:{server.grpc_port}", insecure=True, compression=compression
    )
    _assert_stored(warehouse, _emit(inner, tag), tag)


def summary_request(
    tag: str, *, bad_exemplar: bool = False
) -> metrics_service_pb2.ExportMetricsServiceRequest:
    """A summary (only other SDKs and collectors make them) and a gauge with an exemplar."""
    request = metrics_service_pb2.ExportMetricsServiceRequest()
    resource = request.resource_metrics.add(schema_url="https://opentelemetry.io/schemas/1.26.0")
    resource.resource.attributes.add(key="service.name").value.string_value = SERVICE
    scope = resource.scope_metrics.add(schema_url="https://scope/1")
    scope.scope.name, scope.scope.version, scope.scope.dropped_attributes_count = "prom", "2", 3
    scope.scope.attributes.add(key="origin").value.bool_value = True
    now = time.time_ns()
    summary = scope.metrics.add(name="rpc.latency", description="p-quantiles", unit="s")
    point = summary.summary.data_points.add(
        start_time_unix_nano=now - 10**9, time_unix_nano=now, count=12, sum=3.5, flags=1
    )
    point.attributes.add(key="tag").value.string_value = tag
    for quantile, value in ((0.5, 0.2), (0.99, 1.25)):
        point.quantile_values.add(quantile=quantile, value=value)
    gauge = scope.metrics.add(name="queue.size")
    number = gauge.gauge.data_points.add(time_unix_nano=now, as_int=42)
    number.attributes.add(key="tag").value.string_value = tag
    exemplar = number.exemplars.add(
        time_unix_nano=now - 5,
        as_double=41.5,
        trace_id=b"\x01" * 16,
        span_id=b"\x02" * (7 if bad_exemplar else 8),
    )
    exemplar.filtered_attributes.add(key="user").value.string_value = "u1"
    scope.metrics.add(name="no.data")  # a metric without points: nothing to store, nothing rejected
    return request


def test_summary_and_exemplars_land_field_by_field(
    server: RunningServer, warehouse: ClickHouseWarehouse
) -> None:
    request = summary_request("summary")
    response = httpx.post(f"{server.url}/v1/metrics", content=request.SerializeToString(), headers=PROTOBUF)
    assert response.status_code == 200
    assert not metrics_service_pb2.ExportMetricsServiceResponse.FromString(response.content).HasField(
        "partial_success"
    )
    point = request.resource_metrics[0].scope_metrics[0].metrics[0].summary.data_points[0]
    row = _stored(warehouse, "otel_metrics_summary", "summary")[0]
    assert (row["start"], row["time"]) == (point.start_time_unix_nano, point.time_unix_nano)
    assert (row["Count"], row["Sum"], row["Flags"]) == (12, 3.5, 1)
    assert (row["ValueAtQuantiles.Quantile"], row["ValueAtQuantiles.Value"]) == ([0.5, 0.99], [0.2, 1.25])
    assert (row["MetricName"], row["MetricDescription"], row["MetricUnit"]) == (
        "rpc.latency",
        "p-quantiles",
        "s",
    )
    assert row["ResourceSchemaUrl"] == "https://opentelemetry.io/schemas/1.26.0"
    assert (row["ScopeSchemaUrl"], row["ScopeName"], row["ScopeVersion"]) == ("https://scope/1", "prom", "2")
    assert row["ScopeDroppedAttrCount"] == 3 and row["ScopeAttributes"] == {"origin": "true"}
    gauge = _stored(warehouse, "otel_metrics_gauge", "summary")[0]
    assert gauge["Value"] == 42.0  # an integer point, as a double
    assert dict(gauge["Exemplars.FilteredAttributes"][0]) == {"user": "u1"}
    assert gauge["Exemplars.Value"] == [41.5]
    assert (gauge["Exemplars.TraceId"], gauge["Exemplars.SpanId"]) == (["01" * 16], ["02" * 8])


def test_json_request(server: RunningServer, warehouse: ClickHouseWarehouse) -> None:
    from google.protobuf import json_format

    document = json_format.MessageToDict(summary_request("json"))
    # OTLP/JSON carries ids in hex where protobuf's JSON mapping has base64.
    exemplar = document["resourceMetrics"][0]["scopeMetrics"][0]["metrics"][1]["gauge"]["dataPoints"][0][
        "exemplars"
    ][0]
    exemplar["traceId"], exemplar["spanId"] = "01" * 16, "02" * 8
    response = httpx.post(f"{server.url}/v1/metrics", json=document)
    assert response.status_code == 200 and response.json() == {}
    gauge = _stored(warehouse, "otel_metrics_gauge", "json")[0]
    assert (gauge["Exemplars.TraceId"], gauge["Exemplars.SpanId"]) == (["01" * 16], ["02" * 8])
    assert _stored(warehouse, "otel_metrics_summary", "json")[0]["Count"] == 12


def test_invalid_points_are_a_partial_success(server: RunningServer, warehouse: ClickHouseWarehouse) -> None:
    request = summary_request("partial", bad_exemplar=True)
    response = httpx.post(f"{server.url}/v1/metrics", content=request.SerializeToString(), headers=PROTOBUF)
    assert response.status_code == 200
    partial = metrics_service_pb2.ExportMetricsServiceResponse.FromString(response.content).partial_success
    assert partial.rejected_data_points == 1 and "exemplar" in partial.error_message
    assert len(_stored(warehouse, "otel_metrics_summary", "partial")) == 1
    assert _stored(warehouse, "otel_metrics_gauge", "partial") == []


@pytest.mark.parametrize(
    ("content_type", "body"),
    [("application/x-protobuf", b"\x0a\xff"), ("application/json", b'{"resourceMetrics": 5}')],
)
def test_bad_input_is_400_and_stores_nothing(
    server: RunningServer, warehouse: ClickHouseWarehouse, content_type: str, body: bytes
) -> None:
    response = httpx.post(f"{server.url}/v1/metrics", content=body, headers={"content-type": content_type})
    assert response.status_code == 400
    assert "ExportMetricsServiceRequest" in response.text
    for table in TABLES.values():
        assert warehouse.scalar(f"SELECT count() FROM {table}") == 0


def test_retried_requests_read_as_one_row(server: RunningServer, warehouse: ClickHouseWarehouse) -> None:
    for table in (*TABLES.values(), "otel_metrics_summary"):
        warehouse.command(f"SYSTEM STOP MERGES {table}")
    body = summary_request("retry").SerializeToString()
    for _ in range(3):
        assert httpx.post(f"{server.url}/v1/metrics", content=body, headers=PROTOBUF).status_code == 200
    with grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}") as channel:
        from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2_grpc

        stub = metrics_service_pb2_grpc.MetricsServiceStub(channel)
        stub.Export(metrics_service_pb2.ExportMetricsServiceRequest.FromString(body), timeout=30)
    for table in ("otel_metrics_summary", "otel_metrics_gauge"):
        # Plain count() is 1 when the writer's ledger caught the retries, 4 when it could not.
        assert warehouse.scalar(f"SELECT count() FROM {table}") in (1, 4)
        assert warehouse.scalar(f"SELECT count() FROM {table} FINAL") == 1
