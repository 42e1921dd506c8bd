"""OTLP metric data points as rows of the contrib ClickHouse exporter's five metrics tables.

One row per data point, in ``otel_metrics_gauge``, ``_sum``, ``_histogram``,
``_exponential_histogram`` or ``_summary`` by the metric's type, valued as the exporter values
them: a number point's ``Value`` is its double, or its integer as a double (0 when unset); an
unset ``Sum``, ``Min`` or ``Max`` is 0; exemplar ids are hex ('' when absent or all zero);
attribute values are stringified as for spans; ``ServiceName`` is the resource's
``service.name``.
"""

from __future__ import annotations

from typing import Any

from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest

from omium.warehouse.otlp_rows import _attributes
from omium.warehouse.table_rows import TableRows

# The columns every metrics table starts with; ``TimeUnix`` (index 13) partitions each by day.
_HEAD: tuple[str, ...] = (
    "ResourceAttributes",
    "ResourceSchemaUrl",
    "ScopeName",
    "ScopeVersion",
    "ScopeAttributes",
    "ScopeDroppedAttrCount",
    "ScopeSchemaUrl",
    "ServiceName",
    "MetricName",
    "MetricDescription",
    "MetricUnit",
    "Attributes",
    "StartTimeUnix",
    "TimeUnix",
)
_TIME_INDEX = _HEAD.index("TimeUnix")
_EXEMPLARS: tuple[str, ...] = (
    "Exemplars.FilteredAttributes",
    "Exemplars.TimeUnix",
    "Exemplars.Value",
    "Exemplars.SpanId",
    "Exemplars.TraceId",
)

METRIC_TABLE_COLUMNS: dict[str, tuple[str, ...]] = {
    "otel_metrics_gauge": (*_HEAD, "Value", "Flags", *_EXEMPLARS),
    "otel_metrics_sum": (
        *_HEAD,
        "Value",
        "Flags",
        *_EXEMPLARS,
        "AggregationTemporality",
        "IsMonotonic",
    ),
    "otel_metrics_histogram": (
        *_HEAD,
        "Count",
        "Sum",
        "BucketCounts",
        "ExplicitBounds",
        *_EXEMPLARS,
        "Flags",
        "Min",
        "Max",
        "AggregationTemporality",
    ),
    "otel_metrics_exponential_histogram": (
        *_HEAD,
        "Count",
        "Sum",
        "Scale",
        "ZeroCount",
        "PositiveOffset",
        "PositiveBucketCounts",
        "NegativeOffset",
        "NegativeBucketCounts",
        *_EXEMPLARS,
        "Flags",
        "Min",
        "Max",
        "AggregationTemporality",
    ),
    "otel_metrics_summary": (
        *_HEAD,
        "Count",
        "Sum",
        "ValueAtQuantiles.Quantile",
        "ValueAtQuantiles.Value",
        "Flags",
    ),
}

# Metric.data oneof name -> table.
TABLE_OF_TYPE: dict[str, str] = {
    "gauge": "otel_metrics_gauge",
    "sum": "otel_metrics_sum",
    "histogram": "otel_metrics_histogram",
    "exponential_histogram": "otel_metrics_exponential_histogram",
    "summary": "otel_metrics_summary",
}


def _hex(identifier: bytes) -> str:
    return identifier.hex() if identifier.strip(b"\0") else ""


def _number(point: Any) -> float:
    kind = point.WhichOneof("value")
    if kind == "as_double":
        return float(point.as_double)
    if kind == "as_int":
        return float(point.as_int)
    return 0.0


def _exemplars(point: Any) -> list[list[Any]]:
    exemplars = point.exemplars
    return [
        [_attributes(e.filtered_attributes) for e in exemplars],
        [e.time_unix_nano for e in exemplars],
        [_number(e) for e in exemplars],
        [_hex(e.span_id) for e in exemplars],
        [_hex(e.trace_id) for e in exemplars],
    ]


def metric_rows(request: ExportMetricsServiceRequest) -> list[TableRows]:
    """Flatten a request's data points into rows, one :class:`TableRows` per table with rows."""
    tables = {name: TableRows(name, names, _TIME_INDEX) for name, names in METRIC_TABLE_COLUMNS.items()}
    for resource_metrics in request.resource_metrics:
        resource_attrs = _attributes(resource_metrics.resource.attributes)
        service = resource_attrs.get("service.name", "")
        for scope_metrics in resource_metrics.scope_metrics:
            scope = scope_metrics.scope
            scope_head = (
                resource_attrs,
                resource_metrics.schema_url,
                scope.name,
                scope.version,
                _attributes(scope.attributes),
                scope.dropped_attributes_count,
                scope_metrics.schema_url,
                service,
            )
            for metric in scope_metrics.metrics:
                kind = metric.WhichOneof("data")
                if kind is None:
                    continue  # no data points to store
                data = getattr(metric, kind)
                rows = tables[TABLE_OF_TYPE[kind]]
                for point in data.data_points:
                    row: list[Any] = [
                        *scope_head,
                        metric.name,
                        metric.description,
                        metric.unit,
                        _attributes(point.attributes),
                        point.start_time_unix_nano,
                        point.time_unix_nano,
                    ]
                    if kind in ("gauge", "sum"):
                        row += [_number(point), point.flags, *_exemplars(point)]
                        if kind == "sum":
                            row += [int(data.aggregation_temporality), bool(data.is_monotonic)]
                    elif kind == "histogram":
                        row += [
                            point.count,
                            point.sum,
                            list(point.bucket_counts),
                            list(point.explicit_bounds),
                            *_exemplars(point),
                            point.flags,
                            point.min,
                            point.max,
                            int(data.aggregation_temporality),
                        ]
                    elif kind == "exponential_histogram":
                        row += [
                            point.count,
                            point.sum,
                            point.scale,
                            point.zero_count,
                            point.positive.offset,
                            list(point.positive.bucket_counts),
                            point.negative.offset,
                            list(point.negative.bucket_counts),
                            *_exemplars(point),
                            point.flags,
                            point.min,
                            point.max,
                            int(data.aggregation_temporality),
                        ]
                    else:  # summary
                        quantiles = point.quantile_values
                        row += [
                            point.count,
                            point.sum,
                            [q.quantile for q in quantiles],
                            [q.value for q in quantiles],
                            point.flags,
                        ]
                    for column, value in zip(rows.columns, row, strict=True):
                        column.append(value)
    return [rows for rows in tables.values() if len(rows)]


__all__ = ["METRIC_TABLE_COLUMNS", "TABLE_OF_TYPE", "metric_rows"]
