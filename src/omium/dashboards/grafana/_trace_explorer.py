"""The trace explorer dashboard: recent traces, one trace in Grafana's trace view, and its spans.

It also provides the links other dashboards use to open a trace or a run's traces in it.
"""

from __future__ import annotations

from ._panels import dashboard, field, link, panel, table, target
from ._plugin import Format, Json
from ._sql import AGENT, FAILED, INPUT_TOKENS, OUTPUT_TOKENS
from ._variables import query_variable, textbox_variable

TRACE_EXPLORER_UID = "omium-trace-explorer"
# Data links (on a trace id, on a run id) into this dashboard, keeping the time range.
TRACE_LINK = f"/d/{TRACE_EXPLORER_UID}/?var-trace_id=${{__value.raw}}&${{__url_time_range}}"
RUN_LINK = f"/d/{TRACE_EXPLORER_UID}/?var-run_id=${{__value.raw}}&${{__url_time_range}}"

_RUN_FILTER = "$__conditionalAll(positionCaseInsensitive(RunId, '$run_id') > 0, $run_id)"

# Options: the trace id, labelled with its run and root span (first column value, second text).
TRACES_VARIABLE = f"""
SELECT TraceId, concat(if(run != '', run, TraceId), ' | ', root) AS label
FROM (
    SELECT TraceId, anyIf(RunId, RunId != '') AS run, anyIf(SpanName, ParentSpanId = '') AS root,
           min(Timestamp) AS start
    FROM otel_traces FINAL
    WHERE $__timeFilter(Timestamp) AND {_RUN_FILTER}
    GROUP BY TraceId
)
ORDER BY start DESC
LIMIT 500
"""  # noqa: S608

TRACES = f"""
SELECT TraceId AS traceID,
       anyIf(RunId, RunId != '') AS run_id,
       anyIf(SpanName, ParentSpanId = '') AS root,
       any(ServiceName) AS service,
       min(Timestamp) AS start,
       (max(toUnixTimestamp64Nano(Timestamp) + Duration) - min(toUnixTimestamp64Nano(Timestamp))) / 1e6
           AS duration_ms,
       count() AS spans,
       countIf({FAILED}) AS errors,
       arrayStringConcat(arraySort(groupUniqArrayIf({AGENT}, {AGENT} != '')), ', ') AS agents
FROM otel_traces FINAL
WHERE $__timeFilter(Timestamp) AND {_RUN_FILTER}
GROUP BY TraceId
ORDER BY start DESC
LIMIT 200
"""  # noqa: S608

# As the plugin's own OTel trace lookup: bound the scan by the trace-id helper table first.
_TRACE_BOUNDS = """WITH
    '$trace_id' AS trace_id,
    (SELECT min(Start) FROM otel_traces_trace_id_ts WHERE TraceId = trace_id) AS trace_start,
    (SELECT max(End) + 1 FROM otel_traces_trace_id_ts WHERE TraceId = trace_id) AS trace_end"""

# The trace view's frame (Grafana's trace data frame; tags as the plugin's OTel query shapes them).
TRACE = f"""
{_TRACE_BOUNDS}
SELECT TraceId AS traceID,
       SpanId AS spanID,
       ParentSpanId AS parentSpanID,
       ServiceName AS serviceName,
       SpanName AS operationName,
       multiply(toUnixTimestamp64Nano(Timestamp), 0.000001) AS startTime,
       multiply(Duration, 0.000001) AS duration,
       arrayMap(key -> map('key', key, 'value', SpanAttributes[key]), mapKeys(SpanAttributes)) AS tags,
       arrayMap(key -> map('key', key, 'value', ResourceAttributes[key]), mapKeys(ResourceAttributes))
           AS serviceTags,
       multiIf({FAILED}, 2, StatusCode IN ('Ok', 'STATUS_CODE_OK'), 1, 0) AS statusCode,
       arrayMap(
           (name, timestamp, attributes) -> tuple(
               name,
               toString(toUnixTimestamp64Milli(timestamp)),
               arrayMap(key -> map('key', key, 'value', attributes[key]), mapKeys(attributes))
           )::Tuple(name String, timestamp String, fields Array(Map(String, String))),
           Events.Name, Events.Timestamp, Events.Attributes
       ) AS logs,
       arrayMap(
           (linked_trace, linked_span, attributes) -> tuple(
               linked_trace,
               linked_span,
               arrayMap(key -> map('key', key, 'value', attributes[key]), mapKeys(attributes))
           )::Tuple(traceID String, spanID String, tags Array(Map(String, String))),
           Links.TraceId, Links.SpanId, Links.Attributes
       ) AS references,
       SpanKind AS kind,
       StatusMessage AS statusMessage
FROM otel_traces FINAL
WHERE TraceId = trace_id AND Timestamp >= trace_start AND Timestamp <= trace_end
ORDER BY Timestamp, SpanId
LIMIT 10000
"""  # noqa: S608

TRACE_SPANS = f"""
{_TRACE_BOUNDS}
SELECT Timestamp AS start,
       SpanName AS span,
       {AGENT} AS agent,
       SpanAttributes['gen_ai.operation.name'] AS operation,
       coalesce(nullIf(SpanAttributes['gen_ai.tool.name'], ''), nullIf(SpanAttributes['tool.name'], ''), '')
           AS tool,
       toInt32OrDefault(SpanAttributes['omium.step_index'], toInt32(-1)) AS step,
       round(Duration / 1e6, 1) AS duration_ms,
       StatusCode AS status,
       StatusMessage AS message,
       {INPUT_TOKENS} AS input_tokens,
       {OUTPUT_TOKENS} AS output_tokens,
       SpanAttributes['omium.handoff.verdict'] AS handoff,
       SpanId AS span_id
FROM otel_traces FINAL
WHERE TraceId = trace_id AND Timestamp >= trace_start AND Timestamp <= trace_end
ORDER BY Timestamp, SpanId
LIMIT 10000
"""  # noqa: S608


def trace_explorer() -> Json:
    """Recent traces, one trace in Grafana's trace view, and its spans as a table."""
    panels = [
        table(
            "Traces",
            (0, 0, 24, 9),
            TRACES,
            "The newest traces in the time range; a trace id opens it below.",
            overrides=[
                field("traceID", links=link("Open this trace", TRACE_LINK)),
                field("duration_ms", unit="ms"),
            ],
        ),
        panel("traces", "Trace", (0, 9, 24, 14), [target(TRACE, Format.TRACE)], "The selected trace."),
        table(
            "Spans of the trace",
            (0, 23, 24, 10),
            TRACE_SPANS,
            "Every span of the selected trace with its agent, operation, tool, step and tokens.",
            overrides=[field("duration_ms", unit="ms")],
        ),
    ]
    return dashboard(
        TRACE_EXPLORER_UID,
        "Omium / Trace explorer",
        "Find a run's trace and read it span by span.",
        panels,
        variables=[
            textbox_variable("run_id", "Run id contains"),
            query_variable("trace_id", "Trace", TRACES_VARIABLE),
        ],
        tags=["traces"],
    )


__all__ = [
    "RUN_LINK",
    "TRACE",
    "TRACES",
    "TRACES_VARIABLE",
    "TRACE_EXPLORER_UID",
    "TRACE_LINK",
    "TRACE_SPANS",
    "trace_explorer",
]
