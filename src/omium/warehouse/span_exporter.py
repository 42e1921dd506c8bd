"""An OpenTelemetry span exporter that writes into the warehouse directly.

For a script run with no Omium server: its spans land in the same ``otel_traces`` table, through
the same row conversion as the collector's, so the console and pipelines see them alike.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from omium.errors import WarehouseError
from omium.semconv import OTEL_TRACES_COLUMNS
from omium.warehouse.connection import Warehouse
from omium.warehouse.otlp_rows import to_columns

logger = logging.getLogger(__name__)


class WarehouseSpanExporter(SpanExporter):
    """Exports finished spans as ``otel_traces`` rows of ``warehouse``."""

    def __init__(self, warehouse: Warehouse) -> None:
        self._warehouse = warehouse

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        """Convert with the OTLP encoder and insert in one statement."""
        columns = to_columns(encode_spans(spans))
        if not len(columns):
            return SpanExportResult.SUCCESS
        try:
            self._warehouse.insert("otel_traces", columns.columns, OTEL_TRACES_COLUMNS)
        except WarehouseError as exc:
            # One line: the exporter runs on the span processor's thread, at exit too, where a
            # traceback tells the user nothing they can act on.
            logger.error("could not write %d spans to the warehouse: %s", len(columns), exc)
            return SpanExportResult.FAILURE
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        """Nothing to release: the warehouse belongs to the caller."""


__all__ = ["WarehouseSpanExporter"]
