"""Normalised spans: one row per span with agent, operation, tool, tokens, provider and session
resolved by the attribute cascade of REFERENCE.md section 3, so that GenAI-convention, OpenInference
and Omium spans (live or imported) read alike downstream.

A run belongs to the day it started on, and all its spans are normalised into that day's
partition: features and labels of a run then never straddle two partitions. A run is taken to
start on the day of its first span; runs are looked back on for at most ``LOOKBACK_DAYS`` to
decide that (a run longer than that is split).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

LOOKBACK_DAYS = 7

# First present wins (REFERENCE.md section 3). Content: Omium's own, then OpenInference, then the
# GenAI opt-in messages.
_CASCADE = """
    coalesce(nullIf(SpanAttributes['gen_ai.agent.name'], ''), nullIf(SpanAttributes['agent.name'], ''),
             nullIf(SpanAttributes['graph.node.name'], ''), '') AS agent,
    coalesce(nullIf(SpanAttributes['gen_ai.operation.name'], ''),
             nullIf(lower(SpanAttributes['openinference.span.kind']), ''),
             nullIf(SpanAttributes['omium.step_kind'], ''), '') AS operation,
    coalesce(nullIf(SpanAttributes['gen_ai.tool.name'], ''), nullIf(SpanAttributes['tool.name'], ''), '')
        AS tool,
    coalesce(nullIf(SpanAttributes['gen_ai.provider.name'], ''), nullIf(SpanAttributes['gen_ai.system'], ''),
             nullIf(SpanAttributes['llm.system'], ''), '') AS provider,
    coalesce(nullIf(SpanAttributes['gen_ai.response.model'], ''),
             nullIf(SpanAttributes['gen_ai.request.model'], ''),
             nullIf(SpanAttributes['llm.model_name'], ''), '') AS model,
    coalesce(nullIf(SpanAttributes['gen_ai.conversation.id'], ''),
             nullIf(SpanAttributes['session.id'], ''), '')
        AS session,
    toUInt64OrZero(coalesce(nullIf(SpanAttributes['gen_ai.usage.input_tokens'], ''),
                            nullIf(SpanAttributes['llm.token_count.prompt'], ''), '0')) AS input_tokens,
    toUInt64OrZero(coalesce(nullIf(SpanAttributes['gen_ai.usage.output_tokens'], ''),
                            nullIf(SpanAttributes['llm.token_count.completion'], ''), '0')) AS output_tokens,
    coalesce(nullIf(SpanAttributes['omium.content'], ''), nullIf(SpanAttributes['output.value'], ''),
             nullIf(SpanAttributes['gen_ai.output.messages'], ''), nullIf(SpanAttributes['input.value'], ''),
             nullIf(SpanAttributes['gen_ai.input.messages'], ''), '') AS content_full
"""

COLUMNS = (
    "day, run_id, trace_id, span_id, parent_span_id, ts, duration_ms, span_name, service, agent, operation, "
    "tool, provider, model, session, input_tokens, output_tokens, status, error_type, step_index, role, "
    "handoff_verdict, producer_span_id, content, tool_calls, built_at"
)

NORMALISE = f"""
INSERT INTO omium_normalized_spans ({COLUMNS})
SELECT {COLUMNS} FROM (
WITH
    {{day:Date}} AS d,
    runs_today AS (
        SELECT DISTINCT if(RunId != '', RunId, TraceId) AS run
        FROM otel_traces
        WHERE Timestamp >= toDateTime64(d, 9) AND Timestamp < toDateTime64(d + 1, 9)
    ),
    runs_before AS (
        SELECT DISTINCT if(RunId != '', RunId, TraceId) AS run
        FROM otel_traces
        WHERE Timestamp >= toDateTime64(d - {LOOKBACK_DAYS}, 9) AND Timestamp < toDateTime64(d, 9)
    )
SELECT
    d AS day,
    if(RunId != '', RunId, TraceId) AS run_id,
    TraceId AS trace_id,
    SpanId AS span_id,
    ParentSpanId AS parent_span_id,
    Timestamp AS ts,
    Duration / 1e6 AS duration_ms,
    SpanName AS span_name,
    ServiceName AS service,
    {_CASCADE},
    if(StatusCode = 'Error', 'error', 'ok') AS status,
    SpanAttributes['error.type'] AS error_type,
    toInt32OrDefault(SpanAttributes['omium.step_index'], toInt32(-1)) AS step_index,
    coalesce(nullIf(SpanAttributes['omium.role'], ''),
             multiIf(operation IN ('chat', 'text_completion', 'generate_content', 'llm'), 'assistant',
                     operation IN ('execute_tool', 'tool'), 'tool', operation)) AS role,
    SpanAttributes['omium.handoff.verdict'] AS handoff_verdict,
    SpanAttributes['omium.handoff.producer_span_id'] AS producer_span_id,
    -- Long contents are cut: features read the start of a message; the trace keeps the rest.
    substringUTF8(content_full, 1, {{max_content:UInt32}}) AS content,
    coalesce(nullIf(SpanAttributes['omium.tool_calls'], ''), nullIf(SpanAttributes['llm.tools'], ''), '')
        AS tool_calls,
    now64(6) AS built_at
FROM otel_traces FINAL
WHERE Timestamp >= toDateTime64(d, 9)
  AND if(RunId != '', RunId, TraceId) IN runs_today
  AND if(RunId != '', RunId, TraceId) NOT IN runs_before
)
"""


def normalise_day(warehouse: Any, day: dt.date, *, max_content: int = 4000) -> int:
    """Normalise every span of the runs that started on ``day``; returns the rows written."""
    warehouse.command(NORMALISE, {"day": day, "max_content": max_content})
    return int(
        warehouse.scalar(
            "SELECT count() FROM omium_normalized_spans FINAL WHERE day = {day:Date}", {"day": day}
        )
    )


def days_with_spans(warehouse: Any) -> list[dt.date]:
    """Every day that has spans (the partitions worth materialising)."""
    rows = warehouse.query_rows("SELECT DISTINCT toDate(Timestamp) AS day FROM otel_traces ORDER BY day")
    return [r["day"] for r in rows]


def load_day(warehouse: Any, day: dt.date) -> Any:
    """The normalised spans of ``day`` as a polars DataFrame, in run and time order."""
    return warehouse.query_df(
        "SELECT * EXCEPT (built_at) FROM omium_normalized_spans FINAL WHERE day = {day:Date} "
        "ORDER BY run_id, ts, span_id",
        {"day": day},
    )


__all__ = ["LOOKBACK_DAYS", "days_with_spans", "load_day", "normalise_day"]
