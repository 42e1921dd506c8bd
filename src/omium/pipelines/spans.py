"""Normalised spans: one row per span with agent, operation, tool, model, provider, session, user,
tokens, content, cost and hand-offs resolved by the attribute conventions of
:mod:`omium.conventions` (GenAI, OpenInference, OpenLLMetry/traceloop, Vercel AI SDK, Omium), so
spans of any instrumentation (live or imported) read alike downstream.

The per-span expressions are generated from the conventions table; this module adds what needs
more than one span:

- a span that names no agent takes the nearest ancestor's that does (the LLM call inside an
  agent, a tool run by it);
- a span without a session or user takes its trace's;
- a hand-off's producer (``producer_span_id``): Omium's own ``omium.handoff.producer_span_id``,
  else the latest earlier span of the node named by ``graph.node.parent_id`` (OpenInference) or
  ``gen_ai.agent.handoff_parent`` (OpenLLMetry), else, for an ``invoke_agent`` span, the latest
  earlier hand-off span naming its agent as the target (``gen_ai.handoff.to_agent``,
  ``omium.handoff.to``, OpenInference's "handoff to X"), else, for an ``invoke_agent`` span under
  another agent's span, that ancestor (agent-to-agent parentage);
- content a span's GenAI event log records carry (``otel_logs``, joined by trace and span id) when
  its attributes carry none, so a conversation sent as events reads as one sent as attributes;
- cost in USD from the tokens and :mod:`omium.pipelines.prices`.

A run belongs to the day it started on, and all its spans are normalised into that day's
partition: features and labels of a run then never straddle two partitions. A run is taken to
start on the day of its first span; runs are looked back on for at most ``LOOKBACK_DAYS`` to
decide that (a run longer than that is split).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from omium import conventions
from omium.pipelines import prices

LOOKBACK_DAYS = 7
# What ``base`` selects besides the convention fields (resolved re-selects them by name).
_BASE = (
    "run_id",
    "trace_id",
    "span_id",
    "parent_span_id",
    "ts",
    "duration",
    "span_name",
    "service",
    "status_code",
    "error_type",
    "step_index",
    "own_role",
    "handoff_verdict",
    "own_producer",
    "own_content",
    *conventions.TEXT_FIELDS,
    *conventions.TOKEN_FIELDS,
)
_CONTENT = ("input_content", "output_content")
# How far up a span's ancestry an agent is looked for.
MAX_DEPTH = 64

COLUMNS = (
    "day, run_id, trace_id, span_id, parent_span_id, ts, duration_ms, span_name, service, agent, operation, "
    "tool, provider, model, session, input_tokens, output_tokens, status, error_type, step_index, role, "
    "handoff_verdict, producer_span_id, content, tool_calls, user, cached_tokens, cache_write_tokens, "
    "reasoning_tokens, input_content, output_content, cost_usd, price_source, built_at"
)

# The runs that started on day d (their first span is on d, none in the lookback window).
_RUNS = f"""
    runs_today AS (
        SELECT DISTINCT if(RunId != '', RunId, TraceId) AS run
        FROM otel_traces
        WHERE Timestamp >= toDateTime64({{day:Date}}, 9) AND Timestamp < toDateTime64({{day:Date}} + 1, 9)
    ),
    runs_before AS (
        SELECT DISTINCT if(RunId != '', RunId, TraceId) AS run
        FROM otel_traces
        WHERE Timestamp >= toDateTime64({{day:Date}} - {LOOKBACK_DAYS}, 9)
          AND Timestamp < toDateTime64({{day:Date}}, 9)
    )"""
_OF_DAY = """
    Timestamp >= toDateTime64({day:Date}, 9)
    AND if(RunId != '', RunId, TraceId) IN runs_today
    AND if(RunId != '', RunId, TraceId) NOT IN runs_before"""

# The (provider, model) pairs to price.
MODELS_OF_DAY = f"""
WITH {_RUNS}
SELECT DISTINCT provider, model FROM (
    SELECT {conventions.field_sql("provider")} AS provider, {conventions.field_sql("model")} AS model
    FROM otel_traces
    WHERE {_OF_DAY}
) WHERE model != ''
ORDER BY provider, model
"""

NORMALISE = f"""
INSERT INTO omium_normalized_spans ({COLUMNS})
WITH {_RUNS},
    base AS MATERIALIZED (
        SELECT
            if(RunId != '', RunId, TraceId) AS run_id,
            TraceId AS trace_id,
            SpanId AS span_id,
            ParentSpanId AS parent_span_id,
            Timestamp AS ts,
            Duration AS duration,
            SpanName AS span_name,
            ServiceName AS service,
            StatusCode AS status_code,
            SpanAttributes['error.type'] AS error_type,
            toInt32OrDefault(SpanAttributes['omium.step_index'], toInt32(-1)) AS step_index,
            SpanAttributes['omium.role'] AS own_role,
            SpanAttributes['omium.handoff.verdict'] AS handoff_verdict,
            SpanAttributes['omium.handoff.producer_span_id'] AS own_producer,
            SpanAttributes['omium.content'] AS own_content,
            {conventions.DEFAULT.select_sql()}
        FROM otel_traces FINAL
        WHERE {_OF_DAY}
    ),
    tree AS MATERIALIZED (SELECT trace_id, span_id, parent_span_id, agent, operation FROM base),
    -- Up the parent chain until a span that names an agent (or the root). The recursion sits in
    -- a subquery of its own: ClickHouse materialises no CTE of a recursive WITH.
    ancestors AS (
        WITH RECURSIVE walk AS (
            SELECT trace_id, span_id, parent_span_id AS next, '' AS found_agent, '' AS found_span,
                   toUInt32(0) AS depth
            -- Only spans that need an ancestor: those naming no agent, and agents (for parentage).
            FROM tree WHERE agent = '' OR operation = 'invoke_agent'
            UNION ALL
            SELECT w.trace_id, w.span_id, t.parent_span_id, t.agent, t.span_id, w.depth + 1
            FROM walk AS w INNER JOIN tree AS t ON t.trace_id = w.trace_id AND t.span_id = w.next
            WHERE w.found_agent = '' AND w.next != '' AND w.depth < {MAX_DEPTH}
        )
        SELECT trace_id, span_id, any(found_agent) AS ancestor_agent, any(found_span) AS ancestor_span
        FROM walk WHERE found_agent != '' GROUP BY trace_id, span_id
    ),
    traces AS (
        SELECT trace_id, anyIf(session, session != '') AS trace_session, anyIf(user, user != '') AS trace_user
        FROM base GROUP BY trace_id
    ),
    -- Graph nodes (or agents) and where they ran, for hand-offs that name the node they came from.
    nodes AS (
        SELECT trace_id, if(graph_node != '', graph_node, agent) AS node, span_id AS node_span, ts AS node_ts
        FROM base WHERE node != ''
    ),
    -- GenAI event log records of these spans, their content in record order.
    events AS (
        SELECT TraceId AS trace_id, SpanId AS span_id,
               arrayStringConcat(arrayMap(x -> x.2, arraySort(arrayFilter(x -> x.2 != '',
                   groupArray((Timestamp, event_input))))), '\\n') AS events_input,
               arrayStringConcat(arrayMap(x -> x.2, arraySort(arrayFilter(x -> x.2 != '',
                   groupArray((Timestamp, event_output))))), '\\n') AS events_output
        FROM (
            SELECT TraceId, SpanId, Timestamp,
                   {conventions.DEFAULT.event_sql("input_content")} AS event_input,
                   {conventions.DEFAULT.event_sql("output_content")} AS event_output
            FROM otel_logs FINAL
            WHERE TimestampTime >= toDateTime({{day:Date}}) AND SpanId != ''
              AND {conventions.DEFAULT.event_filter_sql()}
              AND TraceId IN (SELECT trace_id FROM base)
        )
        GROUP BY TraceId, SpanId
    ),
    -- Hand-off spans and the agent they hand off to.
    handoffs AS (
        SELECT trace_id, handoff_to AS target, span_id AS handoff_span, ts AS handoff_ts
        FROM base WHERE handoff_to != ''
    ),
    resolved AS (
        SELECT
            {", ".join(f"b.{c} AS {c}" for c in _BASE if c not in _CONTENT)},
            if(b.input_content != '', b.input_content, e.events_input) AS input_content,
            if(b.output_content != '', b.output_content, e.events_output) AS output_content,
            if(b.agent != '', b.agent, a.ancestor_agent) AS agent_final,
            if(b.session != '', b.session, t.trace_session) AS session_final,
            if(b.user != '', b.user, t.trace_user) AS user_final,
            coalesce(
                nullIf(b.own_producer, ''),
                nullIf(n.node_span, ''),
                if(b.operation = 'invoke_agent', nullIf(h.handoff_span, ''), NULL),
                if(b.operation = 'invoke_agent' AND b.agent != '' AND a.ancestor_agent NOT IN ('', b.agent),
                   a.ancestor_span, '')
            ) AS producer
        FROM base AS b
        LEFT JOIN ancestors AS a ON a.trace_id = b.trace_id AND a.span_id = b.span_id
        LEFT JOIN traces AS t ON t.trace_id = b.trace_id
        LEFT JOIN events AS e ON e.trace_id = b.trace_id AND e.span_id = b.span_id
        ASOF LEFT JOIN nodes AS n ON n.trace_id = b.trace_id AND n.node = b.handoff_from AND b.ts >= n.node_ts
        ASOF LEFT JOIN handoffs AS h
            ON h.trace_id = b.trace_id AND h.target = b.agent AND b.ts >= h.handoff_ts
    )
SELECT {COLUMNS} FROM (
SELECT
    {{day:Date}} AS day,
    run_id, trace_id, span_id, parent_span_id, ts,
    duration / 1e6 AS duration_ms,
    span_name, service, agent_final AS agent, operation, tool, provider, model,
    session_final AS session, input_tokens, output_tokens,
    if(status_code IN ('Error', 'STATUS_CODE_ERROR'), 'error', 'ok') AS status,
    error_type, step_index,
    coalesce(nullIf(own_role, ''),
             multiIf(operation IN ('chat', 'text_completion', 'generate_content'), 'assistant',
                     operation = 'execute_tool', 'tool', operation)) AS role,
    handoff_verdict,
    producer AS producer_span_id,
    -- Long contents are cut: features read the start of a message; the trace keeps the rest.
    substringUTF8(coalesce(nullIf(own_content, ''), nullIf(output_content, ''), input_content),
                  1, {{max_content:UInt32}}) AS content,
    tool_calls,
    user_final AS user,
    cached_tokens, cache_write_tokens, reasoning_tokens,
    substringUTF8(input_content, 1, {{max_content:UInt32}}) AS input_content,
    substringUTF8(output_content, 1, {{max_content:UInt32}}) AS output_content,
    {prices.COST_SQL},
    now64(6) AS built_at
FROM resolved
)
"""
# base (the cascade over every span of the day) is a MATERIALIZED CTE, computed once rather than
# once per reference (ClickHouse 26.3 or later). Its setting is passed by the connection: a SETTINGS
# clause here would be refused by the SQL door, whose write session sets it instead.
NORMALISE_SETTINGS = {"enable_materialized_cte": 1}


def normalise_day(warehouse: Any, day: dt.date, *, max_content: int = 4000) -> int:
    """Normalise every span of the runs that started on ``day``; returns the rows written."""
    pairs = [(r["provider"], r["model"]) for r in warehouse.query_rows(MODELS_OF_DAY, {"day": day})]
    table = prices.table(pairs)
    warehouse.command(
        NORMALISE, {"day": day, "max_content": max_content, **table.parameters()}, NORMALISE_SETTINGS
    )
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
