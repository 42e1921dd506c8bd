"""Decoding and checking OTLP metric payloads: protobuf or OTLP/JSON in, a checked request out.

:func:`prepare_metrics` counts a request's data points, drops the ones that cannot be stored
(reported as a partial success: ``rejected_data_points``) and notes the days they fall on (the
``otel_metrics_*`` tables are partitioned by day). Rows are :mod:`omium.warehouse.metric_rows`.
"""

from __future__ import annotations

from typing import Any

from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest

from omium.collector.otlp import MAX_TIME_NS, Prepared, parse_json, parse_protobuf
from omium.warehouse.otlp_rows import DAY_NS


def decode_metrics_protobuf(body: bytes) -> ExportMetricsServiceRequest:
    """Parse an ``ExportMetricsServiceRequest`` from protobuf bytes."""
    return parse_protobuf(body, ExportMetricsServiceRequest)


def decode_metrics_json(body: bytes) -> ExportMetricsServiceRequest:
    """Parse an OTLP/JSON ``ExportMetricsServiceRequest`` (exemplars' ids in hex)."""
    return parse_json(body, ExportMetricsServiceRequest)


def _valid(point: Any) -> bool:
    return (
        point.time_unix_nano <= MAX_TIME_NS
        and point.start_time_unix_nano <= MAX_TIME_NS
        and all(
            len(e.trace_id) in (0, 16) and len(e.span_id) in (0, 8) and e.time_unix_nano <= MAX_TIME_NS
            for e in getattr(point, "exemplars", ())
        )
    )


def _points(request: ExportMetricsServiceRequest) -> Any:
    """Every metric's repeated data points (metrics without data have none)."""
    for resource_metrics in request.resource_metrics:
        for scope_metrics in resource_metrics.scope_metrics:
            for metric in scope_metrics.metrics:
                kind = metric.WhichOneof("data")
                if kind is not None:
                    yield getattr(metric, kind).data_points


def prepare_metrics(request: ExportMetricsServiceRequest, body: bytes | None = None) -> Prepared:
    """Count a request's data points and drop the ones that cannot be stored.

    ``Prepared.spans`` counts data points here.
    """
    points = rejected = 0
    first, last = MAX_TIME_NS, 0
    for data_points in _points(request):
        for point in data_points:
            if not _valid(point):
                rejected += 1
                continue
            points += 1
            first = min(first, point.time_unix_nano)
            last = max(last, point.time_unix_nano)
    first_day, last_day = (first // DAY_NS, last // DAY_NS) if points else (0, 0)
    if rejected == 0:
        body = body if body is not None else request.SerializeToString()
        return Prepared(body, points, 0, "", first_day, last_day)
    for data_points in _points(request):
        keep = [point for point in data_points if _valid(point)]
        del data_points[:]
        data_points.extend(keep)
    message = (
        f"{rejected} data point(s) rejected: times must be before the year 2262 and exemplar "
        "ids empty or whole (trace_id 16 bytes, span_id 8)"
    )
    return Prepared(request.SerializeToString(), points, rejected, message, first_day, last_day)


__all__ = ["decode_metrics_json", "decode_metrics_protobuf", "prepare_metrics"]
