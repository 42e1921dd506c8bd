"""One row of facts per trace, kept at write time: what the console's run list, sessions view and
price table need without reading ten million spans.

``omium_trace_summaries`` is an ``AggregatingMergeTree`` fed by a materialized view on every insert
into ``otel_traces`` (any writer: Omium's collector, the SDK's exporter, an OpenTelemetry
Collector, an import). It holds only facts that a span written twice cannot change: first start,
last end, the run id, session and user, the agents and models seen, whether any span failed and
the first error, the root span's name and status, the highest-ranked source. Sums (tokens, cost,
span and error counts) are not kept: OTLP delivery is at-least-once and a span re-sent in another
request would count twice; readers take those from ``otel_traces FINAL`` for the few traces they
show (:mod:`omium.warehouse.console_queries`).

Reads group by ``TraceId`` (rows of one trace from different inserts merge in the background).
Because every column is idempotent, the migration backfills after creating the view: a span
inserted in between lands in both and changes nothing.
"""

from __future__ import annotations

from omium import conventions

# How a span says where it came from, ranked: a trace's source is its highest-ranked span's
# (console_queries.SOURCES: 0 OTLP client, 1 SDK, 2 adapter, 3 import).
SOURCE_RANK_SQL = """multiIf(
                SpanAttributes['omium.source'] != '' OR SpanAttributes['omium.source_id'] != '', 3,
                ScopeName = 'omium' AND (SpanAttributes['omium.run_id'] LIKE 'langgraph:%' OR arrayExists(
                    k -> match(k, '^(openai_agents|crewai|autogen|langgraph)[.]'),
                    mapKeys(SpanAttributes))), 2,
                ScopeName = 'omium', 1,
                0)"""

# A tuple's second element is read when its first is the smallest: "the first error", "the root's
# name". Spans that are not one get this far-future time, so any real one wins.
NEVER = "toDateTime64('2262-01-01 00:00:00', 9, 'UTC')"

TABLE = """
CREATE TABLE IF NOT EXISTS omium_trace_summaries (
    TraceId String CODEC(ZSTD(1)),
    Start SimpleAggregateFunction(min, DateTime64(9, 'UTC')) CODEC(Delta, ZSTD(1)),
    End SimpleAggregateFunction(max, DateTime64(9, 'UTC')) CODEC(Delta, ZSTD(1)),
    RunId SimpleAggregateFunction(max, String) CODEC(ZSTD(1)),
    Session SimpleAggregateFunction(max, String) CODEC(ZSTD(1)),
    User SimpleAggregateFunction(max, String) CODEC(ZSTD(1)),
    Agents SimpleAggregateFunction(groupUniqArrayArray, Array(String)) CODEC(ZSTD(1)),
    Models SimpleAggregateFunction(groupUniqArrayArray, Array(String)) CODEC(ZSTD(1)),
    HasError SimpleAggregateFunction(max, UInt8),
    FirstError SimpleAggregateFunction(min, Tuple(DateTime64(9, 'UTC'), String)) CODEC(ZSTD(1)),
    HasRoot SimpleAggregateFunction(max, UInt8),
    RootFailed SimpleAggregateFunction(max, UInt8),
    Root SimpleAggregateFunction(min, Tuple(DateTime64(9, 'UTC'), String)) CODEC(ZSTD(1)),
    SourceRank SimpleAggregateFunction(max, UInt8)
) ENGINE = AggregatingMergeTree
ORDER BY TraceId
"""

# The per-trace facts of a set of spans (FROM otel_traces: the view's inserted block, or the whole
# table for the backfill). Provider and model are stored as genai-prices keys ('provider|model').
_FACTS = f"""
SELECT TraceId,
       min(Timestamp) AS Start,
       max(Timestamp + toIntervalNanosecond(Duration)) AS End,
       max(SpanAttributes['omium.run_id']) AS RunId,
       max(session) AS Session,
       max(user) AS User,
       groupUniqArrayIf(agent, agent != '') AS Agents,
       groupUniqArrayIf(concat(provider, '|', model), model != '') AS Models,
       max(error) AS HasError,
       min((if(error, Timestamp, {NEVER}), if(error, error_text, ''))) AS FirstError,
       max(ParentSpanId = '') AS HasRoot,
       max(ParentSpanId = '' AND error) AS RootFailed,
       min((if(ParentSpanId = '', Timestamp, {NEVER}), if(ParentSpanId = '', SpanName, ''))) AS Root,
       max(source_rank) AS SourceRank
FROM (
    SELECT TraceId, Timestamp, Duration, SpanAttributes, ParentSpanId, toString(SpanName) AS SpanName,
           StatusCode IN ('Error', 'STATUS_CODE_ERROR') AS error,
           if(StatusMessage != '', StatusMessage, SpanAttributes['error.type']) AS error_text,
           toUInt8({SOURCE_RANK_SQL}) AS source_rank,
           {conventions.DEFAULT.select_sql(("agent", "session", "user", "provider", "model"))}
    FROM otel_traces
    WHERE TraceId != ''
)
GROUP BY TraceId"""  # noqa: S608 - constants only

VIEW = f"""
CREATE MATERIALIZED VIEW IF NOT EXISTS omium_trace_summaries_mv TO omium_trace_summaries AS
{_FACTS}
"""

# Spans written before the view existed (idempotent: see the module docstring).
BACKFILL = f"INSERT INTO omium_trace_summaries {_FACTS}"

# Issue 17, pages under a second at ten million spans.
MIGRATION = (TABLE, VIEW, BACKFILL)

__all__ = ["BACKFILL", "MIGRATION", "NEVER", "SOURCE_RANK_SQL", "TABLE", "VIEW"]
