"""Spans made with the official OpenTelemetry SDK, and what their rows should hold."""

from __future__ import annotations

import json
from typing import Any

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Link, SpanKind, Status, StatusCode

from omium.warehouse import Warehouse

KIND = {
    SpanKind.INTERNAL: "Internal",
    SpanKind.SERVER: "Server",
    SpanKind.CLIENT: "Client",
    SpanKind.PRODUCER: "Producer",
    SpanKind.CONSUMER: "Consumer",
}
STATUS = {StatusCode.UNSET: "Unset", StatusCode.OK: "Ok", StatusCode.ERROR: "Error"}


def stringify(value: Any) -> str:
    """What the contrib exporter stores for an attribute value."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return json.dumps(list(value), separators=(",", ":"))
    if isinstance(value, float) and value == int(value):
        return str(int(value))
    return str(value)


def emit_workflow(exporter: SpanExporter, service: str = "kyc-service") -> list[ReadableSpan]:
    """Emit a small agent workflow through ``exporter``; returns the spans as the SDK saw them."""
    memory = InMemorySpanExporter()
    provider = TracerProvider(
        resource=Resource.create({"service.name": service, "deployment.environment": "test"})
    )
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("omium.tests", "9.9.9")
    with tracer.start_as_current_span(
        "invoke_workflow onboarding",
        kind=SpanKind.SERVER,
        attributes={"gen_ai.operation.name": "invoke_workflow", "omium.run_id": "run-1"},
    ) as root:
        with tracer.start_as_current_span(
            "invoke_agent kyc",
            attributes={
                "gen_ai.agent.name": "kyc",
                "omium.step_index": 0,
                "score": 0.25,
                "approved": True,
                "tags": ["pep", "sanctions"],
                "limits": [1, 2, 3],
                "amount": 12.0,
            },
        ) as agent:
            agent.add_event("checkpoint", {"omium.checkpoint": "kyc_done", "attempt": 2})
            with tracer.start_as_current_span(
                "execute_tool credit_bureau",
                kind=SpanKind.CLIENT,
                links=[Link(root.get_span_context(), {"reason": "hand-off"})],
            ) as tool:
                tool.set_status(Status(StatusCode.ERROR, "bureau timed out"))
                tool.add_event("exception", {"exception.type": "TimeoutError"})
    provider.shutdown()
    return list(memory.get_finished_spans())


def assert_rows_match(warehouse: Warehouse, spans: list[ReadableSpan]) -> None:
    """Every span is stored once, exactly as sent."""
    trace_id = format(spans[0].context.trace_id, "032x")
    rows = {
        r["SpanId"]: r
        for r in warehouse.query_rows(
            "SELECT SpanId, TraceId, ParentSpanId, SpanName, SpanKind, ServiceName, ScopeName, ScopeVersion, "
            "toUnixTimestamp64Nano(Timestamp) AS start_ns, Duration, StatusCode, StatusMessage, SpanAttributes, "
            "ResourceAttributes, arrayMap(t -> toUnixTimestamp64Nano(t), Events.Timestamp) AS event_ns, "
            "Events.Name AS event_names, Events.Attributes AS event_attrs, Links.TraceId AS link_traces, "
            "Links.SpanId AS link_spans, Links.Attributes AS link_attrs "
            "FROM otel_traces FINAL WHERE TraceId = {t:String}",
            {"t": trace_id},
        )
    }
    assert len(rows) == len(spans)
    total = warehouse.scalar("SELECT count() FROM otel_traces WHERE TraceId = {t:String}", {"t": trace_id})
    assert total == len(spans), "a span was stored more than once"
    for span in spans:
        row = rows[format(span.context.span_id, "016x")]
        assert row["TraceId"] == trace_id
        assert row["ParentSpanId"] == (format(span.parent.span_id, "016x") if span.parent else "")
        assert row["SpanName"] == span.name
        assert row["SpanKind"] == KIND[span.kind]
        assert row["ServiceName"] == span.resource.attributes["service.name"]
        assert (row["ScopeName"], row["ScopeVersion"]) == ("omium.tests", "9.9.9")
        assert row["start_ns"] == span.start_time
        assert row["Duration"] == span.end_time - span.start_time
        assert row["StatusCode"] == STATUS[span.status.status_code]
        assert row["StatusMessage"] == (span.status.description or "")
        assert dict(row["SpanAttributes"]) == {k: stringify(v) for k, v in span.attributes.items()}
        assert dict(row["ResourceAttributes"]) == {
            k: stringify(v) for k, v in span.resource.attributes.items()
        }
        assert row["event_ns"] == [e.timestamp for e in span.events]
        assert row["event_names"] == [e.name for e in span.events]
        assert [dict(a) for a in row["event_attrs"]] == [
            {k: stringify(v) for k, v in e.attributes.items()} for e in span.events
        ]
        assert row["link_traces"] == [format(link.context.trace_id, "032x") for link in span.links]
        assert row["link_spans"] == [format(link.context.span_id, "016x") for link in span.links]
        assert [dict(a) for a in row["link_attrs"]] == [
            {k: stringify(v) for k, v in link.attributes.items()} for link in span.links
        ]
