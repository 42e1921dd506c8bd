"""OTLP log records as ``otel_logs`` rows, valued as the contrib ClickHouse exporter values them.

Per record: ``Timestamp`` is the record's time, or its observed time when the record has none;
ids are lowercase hex ('' when absent or all zero); ``TraceFlags`` and ``SeverityNumber`` are the low byte;
``Body`` and every attribute value are stringified as for spans (``pcommon.Value.AsString``);
``ServiceName`` is the resource's ``service.name``. ``TimestampTime`` is the table's default.
"""

from __future__ import annotations

from typing import Any

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

from omium.warehouse.otlp_rows import _any_value_str, _attributes
from omium.warehouse.table_rows import TableRows

OTEL_LOGS_COLUMNS: tuple[str, ...] = (
    "Timestamp",
    "TraceId",
    "SpanId",
    "TraceFlags",
    "SeverityText",
    "SeverityNumber",
    "ServiceName",
    "Body",
    "ResourceSchemaUrl",
    "ResourceAttributes",
    "ScopeSchemaUrl",
    "ScopeName",
    "ScopeVersion",
    "ScopeAttributes",
    "LogAttributes",
    "EventName",
)


def log_time(record: Any) -> int:
    """The time a record is stored under: its own, else when it was observed (as the exporter)."""
    return int(record.time_unix_nano or record.observed_time_unix_nano)


def log_rows(request: ExportLogsServiceRequest) -> TableRows:
    """Flatten a request's log records into ``otel_logs`` columns (records already checked)."""
    rows = TableRows("otel_logs", OTEL_LOGS_COLUMNS)
    (
        c_ts,
        c_trace,
        c_span,
        c_flags,
        c_sev_text,
        c_sev_num,
        c_service,
        c_body,
        c_res_url,
        c_res,
        c_scope_url,
        c_scope,
        c_scope_v,
        c_scope_attrs,
        c_attrs,
        c_event,
    ) = rows.columns
    for resource_logs in request.resource_logs:
        resource_attrs = _attributes(resource_logs.resource.attributes)
        service = resource_attrs.get("service.name", "")
        resource_url = resource_logs.schema_url
        for scope_logs in resource_logs.scope_logs:
            scope = scope_logs.scope
            scope_attrs = _attributes(scope.attributes)
            scope_url = scope_logs.schema_url
            for record in scope_logs.log_records:
                c_ts.append(record.time_unix_nano or record.observed_time_unix_nano)
                trace_id = record.trace_id
                span_id = record.span_id
                # All-zero ids mean none (the exporter's TraceIDToHexOrEmptyString).
                c_trace.append(trace_id.hex() if trace_id.strip(b"\0") else "")
                c_span.append(span_id.hex() if span_id.strip(b"\0") else "")
                c_flags.append(record.flags & 0xFF)
                c_sev_text.append(record.severity_text)
                c_sev_num.append(record.severity_number & 0xFF)
                c_service.append(service)
                body = record.body
                c_body.append(body.string_value if body.HasField("string_value") else _any_value_str(body))
                c_res_url.append(resource_url)
                c_res.append(resource_attrs)
                c_scope_url.append(scope_url)
                c_scope.append(scope.name)
                c_scope_v.append(scope.version)
                c_scope_attrs.append(scope_attrs)
                c_attrs.append(_attributes(record.attributes))
                c_event.append(record.event_name)
    return rows


__all__ = ["OTEL_LOGS_COLUMNS", "log_rows", "log_time"]
