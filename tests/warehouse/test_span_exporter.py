"""The in-process span exporter: spans of a script with no server land in ``otel_traces``, and a
warehouse it cannot write to costs one clear log line, not a traceback."""

from __future__ import annotations

import logging

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from omium.warehouse import ClickHouseWarehouse
from omium.warehouse.span_exporter import WarehouseSpanExporter


def _spans(count: int) -> list[ReadableSpan]:
    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("test")
    for i in range(count):
        with tracer.start_as_current_span(f"step {i}", attributes={"omium.run_id": "exported"}):
            pass
    return list(memory.get_finished_spans())


def test_spans_are_written_to_otel_traces(warehouse: ClickHouseWarehouse) -> None:
    assert WarehouseSpanExporter(warehouse).export(_spans(3)) is SpanExportResult.SUCCESS
    assert warehouse.scalar("SELECT count() FROM otel_traces WHERE RunId = 'exported'") == 3


def test_a_closed_warehouse_is_one_clear_line(
    warehouse: ClickHouseWarehouse, caplog: pytest.LogCaptureFixture
) -> None:
    closed = warehouse.clone()
    closed.close()
    with caplog.at_level(logging.ERROR, logger="omium.warehouse.span_exporter"):
        assert WarehouseSpanExporter(closed).export(_spans(2)) is SpanExportResult.FAILURE
    (record,) = caplog.records
    assert record.getMessage().startswith("could not write 2 spans to the warehouse: ")
    assert record.exc_info is None  # no traceback
