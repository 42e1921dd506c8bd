"""Named queries over the warehouse, each returning a polars DataFrame.

SQL lives in constants with server-side parameters; functions only bind and run them. Reads of
``otel_traces`` use FINAL: OTLP delivery is at-least-once and the table collapses re-sent spans.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from omium.errors import NotFoundError
from omium.warehouse.connection import Warehouse

if TYPE_CHECKING:
    import polars as pl

SPAN_TOTALS = """
SELECT count() AS spans, uniqExact(TraceId) AS traces,
       countIf(StatusCode IN ('Error', 'STATUS_CODE_ERROR')) AS errors,
       min(Timestamp) AS first_span, max(Timestamp) AS last_span
FROM otel_traces FINAL
"""

# Lookup through the trace-id helper table first, then scan only that time window.
TRACE_SPANS = """
WITH
    (SELECT min(Start) FROM otel_traces_trace_id_ts WHERE TraceId = {trace_id:String}) AS trace_start,
    (SELECT max(End) FROM otel_traces_trace_id_ts WHERE TraceId = {trace_id:String}) AS trace_end
SELECT Timestamp, TraceId, SpanId, ParentSpanId, SpanName, SpanKind, ServiceName, Duration,
       StatusCode, StatusMessage, SpanAttributes, ResourceAttributes,
       Events.Timestamp AS EventTimes, Events.Name AS EventNames, Events.Attributes AS EventAttributes,
       Links.TraceId AS LinkTraceIds, Links.SpanId AS LinkSpanIds
FROM otel_traces FINAL
WHERE TraceId = {trace_id:String}
  AND Timestamp >= trace_start AND Timestamp <= trace_end + INTERVAL 1 SECOND
ORDER BY Timestamp, SpanId
"""

RECENT_TRACES = """
SELECT TraceId, min(Timestamp) AS start, max(Timestamp + toIntervalNanosecond(Duration)) AS end,
       count() AS spans, countIf(StatusCode IN ('Error', 'STATUS_CODE_ERROR')) AS errors,
       any(ServiceName) AS service, anyIf(SpanName, ParentSpanId = '') AS root
FROM otel_traces FINAL
GROUP BY TraceId
ORDER BY start DESC
LIMIT {limit:UInt32}
"""

# Agent resolved by the GenAI -> OpenInference -> graph cascade of REFERENCE.md section 3.
AGENT_SUMMARY = """
SELECT agent, count() AS spans,
       countIf(StatusCode IN ('Error', 'STATUS_CODE_ERROR')) AS errors,
       round(errors / spans, 4) AS error_rate,
       quantile(0.5)(Duration) / 1e6 AS p50_ms,
       quantile(0.99)(Duration) / 1e6 AS p99_ms,
       sum(toUInt64OrZero(if(SpanAttributes['gen_ai.usage.input_tokens'] != '',
           SpanAttributes['gen_ai.usage.input_tokens'],
           SpanAttributes['llm.token_count.prompt']))) AS input_tokens
FROM (
    SELECT *, multiIf(SpanAttributes['gen_ai.agent.name'] != '', SpanAttributes['gen_ai.agent.name'],
                      SpanAttributes['agent.name'] != '', SpanAttributes['agent.name'],
                      SpanAttributes['graph.node.name']) AS agent
    FROM otel_traces FINAL
)
WHERE agent != ''
GROUP BY agent
ORDER BY spans DESC
"""


def span_totals(warehouse: Warehouse) -> pl.DataFrame:
    """Spans, traces and errors stored, with the first and last span time."""
    return warehouse.query_df(SPAN_TOTALS)


def trace_spans(warehouse: Warehouse, trace_id: str) -> pl.DataFrame:
    """Every span of one trace, oldest first.

    Raises:
        NotFoundError: no span has this trace id.
    """
    frame = warehouse.query_df(TRACE_SPANS, {"trace_id": trace_id.lower()})
    if frame.height == 0:
        raise NotFoundError(f"no trace {trace_id!r} in the warehouse")
    return frame


def recent_traces(warehouse: Warehouse, limit: int = 20) -> pl.DataFrame:
    """The newest traces with their span and error counts."""
    return warehouse.query_df(RECENT_TRACES, {"limit": limit})


def agent_summary(warehouse: Warehouse) -> pl.DataFrame:
    """Spans, error rate, latency quantiles and input tokens per agent."""
    return warehouse.query_df(AGENT_SUMMARY)


__all__ = ["agent_summary", "recent_traces", "span_totals", "trace_spans"]
