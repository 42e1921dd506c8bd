"""Decoding and checking OTLP log payloads: protobuf or OTLP/JSON in, a checked request out.

:func:`prepare_logs` counts a request's log records, drops the ones that cannot be stored
(reported as a partial success: ``rejected_log_records``) and notes the days they fall on
(``otel_logs`` is partitioned by day). Turning records into rows is :mod:`omium.warehouse.log_rows`.
"""

from __future__ import annotations

from typing import Any

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

from omium.collector.otlp import MAX_TIME_NS, Prepared, parse_json, parse_protobuf
from omium.warehouse.log_rows import log_time
from omium.warehouse.otlp_rows import DAY_NS


def decode_logs_protobuf(body: bytes) -> ExportLogsServiceRequest:
    """Parse an ``ExportLogsServiceRequest`` from protobuf bytes."""
    return parse_protobuf(body, ExportLogsServiceRequest)


def decode_logs_json(body: bytes) -> ExportLogsServiceRequest:
    """Parse an OTLP/JSON ``ExportLogsServiceRequest`` (hex ids)."""
    return parse_json(body, ExportLogsServiceRequest)


def _valid(record: Any) -> bool:
    # Ids are optional on a log record (absent: not inside a span), but when given, whole.
    return (
        len(record.trace_id) in (0, 16)
        and len(record.span_id) in (0, 8)
        and record.time_unix_nano <= MAX_TIME_NS
        and record.observed_time_unix_nano <= MAX_TIME_NS
    )


def prepare_logs(request: ExportLogsServiceRequest, body: bytes | None = None) -> Prepared:
    """Count a request's log records and drop the ones that cannot be stored.

    ``body`` is the request's protobuf encoding when the caller has it (re-used when every
    record is valid). ``Prepared.spans`` counts log records here.
    """
    records = rejected = 0
    first, last = MAX_TIME_NS, 0
    for resource_logs in request.resource_logs:
        for scope_logs in resource_logs.scope_logs:
            for record in scope_logs.log_records:
                if not _valid(record):
                    rejected += 1
                    continue
                records += 1
                at = log_time(record)
                first = min(first, at)
                last = max(last, at)
    first_day, last_day = (first // DAY_NS, last // DAY_NS) if records else (0, 0)
    if rejected == 0:
        body = body if body is not None else request.SerializeToString()
        return Prepared(body, records, 0, "", first_day, last_day)
    for resource_logs in request.resource_logs:
        for scope_logs in resource_logs.scope_logs:
            keep = [record for record in scope_logs.log_records if _valid(record)]
            del scope_logs.log_records[:]
            scope_logs.log_records.extend(keep)
    message = (
        f"{rejected} log record(s) rejected: trace_id must be empty or 16 bytes, span_id empty or "
        "8 bytes, and times before the year 2262"
    )
    return Prepared(request.SerializeToString(), records, rejected, message, first_day, last_day)


__all__ = ["decode_logs_json", "decode_logs_protobuf", "prepare_logs"]
