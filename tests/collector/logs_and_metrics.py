"""What the logs and metrics tests send: records emitted through the official OpenTelemetry SDK
and exporters, and the rows they must become."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from opentelemetry import trace
from opentelemetry._logs import SeverityNumber
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import LogRecordExporter, SimpleLogRecordProcessor
from opentelemetry.sdk.resources import Resource
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

from omium.warehouse import ClickHouseWarehouse

SERVICE = "support-agents"
TRACE_ID = 0x5B8EFFF798038103D269B633813FC60C
SPAN_ID = 0xEEE19B7EC3C1B174


@dataclass(frozen=True)
class SentLog:
    """One log record as emitted, with the values its row must hold."""

    body: str
    severity_text: str
    severity_number: int
    attributes: dict[str, str]
    timestamp: int
    event_name: str
    in_span: bool


def emit_logs(exporter: LogRecordExporter, tag: str, count: int = 5) -> list[SentLog]:
    """Emit ``count`` records (half inside a span, one a GenAI event) through ``exporter``."""
    provider = LoggerProvider(resource=Resource.create({"service.name": SERVICE, "deployment": tag}))
    provider.add_log_record_processor(SimpleLogRecordProcessor(exporter))
    logger = provider.get_logger("omium.tests", "1.2.3", attributes={"scope.kind": "test"})
    span = trace.set_span_in_context(
        NonRecordingSpan(SpanContext(TRACE_ID, SPAN_ID, is_remote=False, trace_flags=TraceFlags(1)))
    )
    sent = []
    start = time.time_ns() - 60 * 10**9
    for index in range(count):
        in_span = index % 2 == 0
        event = "gen_ai.user.message" if index == 1 else ""
        record = SentLog(
            body=f"{tag} record {index}: ünïcode ✓",
            severity_text="ERROR" if index == 3 else "INFO",
            severity_number=(SeverityNumber.ERROR if index == 3 else SeverityNumber.INFO).value,
            attributes={"tag": tag, "index": str(index), "ratio": "0.25", "ok": "true"},
            timestamp=start + index * 1_000_000,
            event_name=event,
            in_span=in_span,
        )
        logger.emit(
            timestamp=record.timestamp,
            observed_timestamp=record.timestamp + 5,
            context=span if in_span else None,
            severity_number=SeverityNumber(record.severity_number),
            severity_text=record.severity_text,
            body=record.body,
            attributes={"tag": tag, "index": index, "ratio": 0.25, "ok": True},
            event_name=event or None,
        )
        sent.append(record)
    provider.shutdown()
    return sent


def assert_logs_stored(warehouse: ClickHouseWarehouse, sent: list[SentLog], tag: str) -> None:
    """Every sent record is one row in ``otel_logs`` (read with FINAL), field by field."""
    rows = warehouse.query_rows(
        "SELECT toUnixTimestamp64Nano(Timestamp) AS ts, toString(TimestampTime) AS tt, * "
        "FROM otel_logs FINAL WHERE LogAttributes['tag'] = {tag:String} ORDER BY Timestamp",
        {"tag": tag},
    )
    assert len(rows) == len(sent)
    for row, record in zip(rows, sent, strict=True):
        assert row["ts"] == record.timestamp
        assert row["Body"] == record.body
        assert row["SeverityText"] == record.severity_text
        assert row["SeverityNumber"] == record.severity_number
        assert row["ServiceName"] == SERVICE
        assert dict(row["ResourceAttributes"])["deployment"] == tag
        assert row["ScopeName"] == "omium.tests" and row["ScopeVersion"] == "1.2.3"
        assert dict(row["ScopeAttributes"]) == {"scope.kind": "test"}
        assert dict(row["LogAttributes"]) == record.attributes
        assert row["EventName"] == record.event_name
        if record.in_span:
            assert (row["TraceId"], row["SpanId"]) == (f"{TRACE_ID:032x}", f"{SPAN_ID:016x}")
            assert row["TraceFlags"] == 1
        else:
            assert (row["TraceId"], row["SpanId"], row["TraceFlags"]) == ("", "", 0)


def logs_request(tag: str, count: int = 3, **record: Any) -> ExportLogsServiceRequest:
    """A hand-built request of ``count`` records tagged ``tag`` (``record`` overrides fields)."""
    request = ExportLogsServiceRequest()
    resource_logs = request.resource_logs.add()
    resource_logs.resource.attributes.add(key="service.name").value.string_value = SERVICE
    scope_logs = resource_logs.scope_logs.add()
    now = time.time_ns()
    for index in range(count):
        log = scope_logs.log_records.add(
            time_unix_nano=now + index, severity_number=9, severity_text="INFO", **record
        )
        log.body.string_value = f"{tag} {index}"
        log.attributes.add(key="tag").value.string_value = tag
    return request


__all__ = ["SERVICE", "SPAN_ID", "TRACE_ID", "SentLog", "assert_logs_stored", "emit_logs", "logs_request"]
