"""Grafana dashboards for the ``grafana-clickhouse-datasource`` plugin, defined in Python.

Four dashboards read the warehouse in raw SQL with the plugin's macros (REFERENCE.md section 4):
agent health, the agent dependency graph (a ``nodeGraph``), a trace explorer (the trace view) and
failure risk. They are built here rather than kept as JSON so that they ship inside the package
(``omium export grafana DIR`` works from a wheel) and share their panel boilerplate;
``deploy/grafana`` is that export committed, and a test keeps the two equal.

Panel SQL holds no values: only the plugin's macros (``$__timeFilter(col)``, ``$__interval_s``...)
and dashboard variables (``$trace_id``), which Grafana and the plugin substitute at query time.
:func:`substitute_macros` does the same substitution, so tests run every panel against a warehouse.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import textwrap
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path
from typing import Any

import yaml

Json = dict[str, Any]

PLUGIN_ID = "grafana-clickhouse-datasource"
DATASOURCE_UID = "omium-clickhouse"
DATASOURCE_NAME = "Omium ClickHouse"
# Every panel and query variable reads through the dashboard's ``datasource`` variable.
DATASOURCE_REF: Json = {"type": PLUGIN_ID, "uid": "${datasource}"}
SCHEMA_VERSION = 39
TRACE_EXPLORER_UID = "omium-trace-explorer"
# Where ``omium export grafana DIR`` puts things, as Grafana's provisioning expects them.
DASHBOARDS = "dashboards"
PROVISIONING = "provisioning"


class Format(IntEnum):
    """The plugin's result formats (a target's ``format``)."""

    TIME_SERIES = 0
    TABLE = 1
    LOGS = 2
    TRACE = 3


_QUERY_TYPES = {
    Format.TIME_SERIES: "timeseries",
    Format.TABLE: "table",
    Format.LOGS: "logs",
    Format.TRACE: "traces",
}

# --- SQL. Fragments are constants composed into constants; values only ever arrive through macros
# and variables. Reads of versioned tables use FINAL (OTLP delivery is at-least-once; derived
# tables are rebuilt).

# REFERENCE.md section 3: the first attribute present wins.
_AGENT = (
    "coalesce(nullIf(SpanAttributes['gen_ai.agent.name'], ''), nullIf(SpanAttributes['agent.name'], ''), "
    "nullIf(SpanAttributes['graph.node.name'], ''), '')"
)
_INPUT_TOKENS = (
    "toUInt64OrZero(coalesce(nullIf(SpanAttributes['gen_ai.usage.input_tokens'], ''), "
    "nullIf(SpanAttributes['llm.token_count.prompt'], ''), '0'))"
)
_OUTPUT_TOKENS = (
    "toUInt64OrZero(coalesce(nullIf(SpanAttributes['gen_ai.usage.output_tokens'], ''), "
    "nullIf(SpanAttributes['llm.token_count.completion'], ''), '0'))"
)
_FAILED = "StatusCode IN ('Error', 'STATUS_CODE_ERROR')"
_FAILED_RUN = "('failed', 'rejected')"
_IN_FLIGHT_RUN = "('queued', 'running', 'paused')"

# The time range's spans with their agent; ``agent`` selects them by the dashboard variable.
_AGENT_SPANS = f"""(
    SELECT Timestamp, SpanId, ParentSpanId, RunId, Duration, {_FAILED} AS failed,
           {_AGENT} AS agent,
           {_INPUT_TOKENS} AS input_tokens,
           {_OUTPUT_TOKENS} AS output_tokens
    FROM otel_traces FINAL
    WHERE $__timeFilter(Timestamp)
)"""  # noqa: S608 - constants only
_SELECTED_AGENT = "agent != '' AND $__conditionalAll(agent IN ($agent), $agent)"

AGENTS_VARIABLE = f"""
SELECT DISTINCT agent FROM {_AGENT_SPANS} WHERE agent != '' ORDER BY agent
"""  # noqa: S608

AGENT_ACTIVITY = f"""
SELECT count() AS agent_spans,
       uniqExactIf(RunId, RunId != '') AS runs,
       countIf(failed) / greatest(count(), 1) AS error_rate,
       sum(input_tokens + output_tokens) AS tokens
FROM {_AGENT_SPANS}
WHERE {_SELECTED_AGENT}
"""  # noqa: S608

RUN_STATUS_TOTALS = f"""
SELECT countIf(status = 'completed') AS completed,
       countIf(status IN {_FAILED_RUN}) AS failed,
       countIf(status = 'paused') AS paused,
       countIf(status IN ('queued', 'running')) AS in_flight
FROM omium_runs FINAL
WHERE $__timeFilter(started_at)
"""  # noqa: S608

SPAN_RATE = f"""
SELECT $__timeInterval(Timestamp) AS time, agent, count() / $__interval_s AS spans_per_second
FROM {_AGENT_SPANS}
WHERE {_SELECTED_AGENT}
GROUP BY time, agent
ORDER BY time, agent
"""  # noqa: S608

ERROR_RATE = f"""
SELECT $__timeInterval(Timestamp) AS time, agent, countIf(failed) / count() AS error_rate
FROM {_AGENT_SPANS}
WHERE {_SELECTED_AGENT}
GROUP BY time, agent
ORDER BY time, agent
"""  # noqa: S608

# Latency is measured on an agent's calls: its spans whose parent is not the same agent's (an
# invocation, not the model and tool calls inside it).
AGENT_TABLE = f"""
SELECT s.agent AS agent,
       uniqExactIf(s.RunId, s.RunId != '') AS runs,
       countIf(p.agent != s.agent) AS calls,
       count() AS spans,
       countIf(s.failed) AS errors,
       round(100 * errors / spans, 2) AS error_pct,
       round(quantileIf(0.5)(s.Duration, p.agent != s.agent) / 1e6, 1) AS p50_ms,
       round(quantileIf(0.95)(s.Duration, p.agent != s.agent) / 1e6, 1) AS p95_ms,
       sum(s.input_tokens) AS input_tokens,
       sum(s.output_tokens) AS output_tokens
FROM {_AGENT_SPANS} AS s
LEFT JOIN (
    SELECT SpanId, {_AGENT} AS agent FROM otel_traces FINAL WHERE $__timeFilter(Timestamp) AND agent != ''
) AS p ON p.SpanId = s.ParentSpanId
WHERE s.agent != '' AND $__conditionalAll(s.agent IN ($agent), $agent)
GROUP BY agent
ORDER BY spans DESC
"""  # noqa: S608

RUN_STATUSES = """
SELECT status, count() AS runs
FROM omium_runs FINAL
WHERE $__timeFilter(started_at)
GROUP BY status
ORDER BY runs DESC
"""

FAILED_RUNS = f"""
SELECT run_id, workflow, status, started_at, ended_at,
       round(dateDiff('millisecond', started_at, coalesce(ended_at, updated_at)) / 1000, 1) AS duration_s,
       error
FROM omium_runs FINAL
WHERE $__timeFilter(started_at) AND status IN {_FAILED_RUN}
ORDER BY started_at DESC
LIMIT 50
"""  # noqa: S608

# A graph node is an agent, or the workflow for spans that belong to no agent (a run's root).
# Edges: a span's parent (a call) and the producer of the hand-off it consumed.
_GRAPH_SPANS = f"""
    SELECT TraceId, SpanId, ParentSpanId, RunId, Duration, {_FAILED} AS failed,
           {_AGENT} AS agent,
           if(agent != '', agent, SpanAttributes['gen_ai.workflow.name']) AS node,
           if(agent != '', 'agent', 'workflow') AS kind,
           SpanAttributes['omium.handoff.producer_span_id'] AS producer
    FROM otel_traces FINAL
    WHERE $__timeFilter(Timestamp)
"""  # noqa: S608

GRAPH_NODES = f"""
WITH spans AS ({_GRAPH_SPANS})
SELECT node AS id,
       node AS title,
       any(kind) AS subtitle,
       count() AS mainstat,
       round(100 * countIf(failed) / count(), 2) AS secondarystat,
       1 - countIf(failed) / count() AS arc__success,
       countIf(failed) / count() AS arc__errors,
       uniqExactIf(RunId, RunId != '') AS detail__runs,
       round(quantile(0.95)(Duration) / 1e6, 1) AS detail__p95_ms
FROM spans
WHERE node != ''
GROUP BY node
ORDER BY mainstat DESC
"""  # noqa: S608

GRAPH_EDGES = f"""
WITH spans AS ({_GRAPH_SPANS}),
links AS (
    SELECT node AS target, TraceId, failed, Duration, link.1 AS kind, link.2 AS from_span
    FROM spans
    ARRAY JOIN arrayFilter(l -> l.2 != '', [('call', ParentSpanId), ('handoff', producer)]) AS link
    WHERE node != ''
)
SELECT concat(s.node, ' -> ', l.target) AS id,
       s.node AS source,
       l.target AS target,
       count() AS mainstat,
       countIf(l.failed) AS secondarystat,
       countIf(l.kind = 'call') AS detail__calls,
       countIf(l.kind = 'handoff') AS detail__handoffs,
       round(quantile(0.95)(l.Duration) / 1e6, 1) AS detail__p95_ms
FROM links AS l
INNER JOIN (SELECT SpanId, TraceId, node FROM spans WHERE node != '') AS s ON s.SpanId = l.from_span
WHERE s.node != l.target AND (l.kind = 'handoff' OR s.TraceId = l.TraceId)
GROUP BY source, target
ORDER BY mainstat DESC
"""  # noqa: S608

PIPELINE_EDGES = """
SELECT day, source, target, runs, calls, errors, round(100 * error_rate, 2) AS error_pct,
       p50_ms, p95_ms, tokens
FROM omium_agent_edges FINAL
WHERE $__dateFilter(day)
ORDER BY day DESC, calls DESC
LIMIT 500
"""

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
       countIf({_FAILED}) AS errors,
       arrayStringConcat(arraySort(groupUniqArrayIf({_AGENT}, {_AGENT} != '')), ', ') AS agents
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
       multiIf({_FAILED}, 2, StatusCode IN ('Ok', 'STATUS_CODE_OK'), 1, 0) AS statusCode,
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
       {_AGENT} AS agent,
       SpanAttributes['gen_ai.operation.name'] AS operation,
       coalesce(nullIf(SpanAttributes['gen_ai.tool.name'], ''), nullIf(SpanAttributes['tool.name'], ''), '')
           AS tool,
       toInt32OrDefault(SpanAttributes['omium.step_index'], toInt32(-1)) AS step,
       round(Duration / 1e6, 1) AS duration_ms,
       StatusCode AS status,
       StatusMessage AS message,
       {_INPUT_TOKENS} AS input_tokens,
       {_OUTPUT_TOKENS} AS output_tokens,
       SpanAttributes['omium.handoff.verdict'] AS handoff,
       SpanId AS span_id
FROM otel_traces FINAL
WHERE TraceId = trace_id AND Timestamp >= trace_start AND Timestamp <= trace_end
ORDER BY Timestamp, SpanId
LIMIT 10000
"""  # noqa: S608

# The latest prediction per run (predictions are re-made as a run advances).
_LATEST_RISK = """(
    SELECT run_id,
           argMax(risk, predicted_at) AS latest_risk,
           argMax(steps_seen, predicted_at) AS latest_steps_seen,
           argMax(model_version, predicted_at) AS latest_model,
           max(predicted_at) AS last_predicted_at
    FROM omium_predictions FINAL
    WHERE $__timeFilter(predicted_at)
    GROUP BY run_id
)"""

RISK_SUMMARY = f"""
SELECT count() AS scored_runs,
       round(avgOrDefault(p.latest_risk), 3) AS mean_risk,
       countIf(p.latest_risk >= $risk_threshold) AS high_risk,
       countIf(p.latest_risk >= $risk_threshold AND r.status IN {_IN_FLIGHT_RUN}) AS high_risk_in_flight
FROM {_LATEST_RISK} AS p
LEFT JOIN (SELECT run_id, status FROM omium_runs FINAL) AS r ON r.run_id = p.run_id
"""  # noqa: S608

RISK_DISTRIBUTION = f"""
SELECT concat(toString(bucket * 10), '-', toString(bucket * 10 + 10), '%') AS risk, runs
FROM (SELECT arrayJoin(range(10)) AS bucket) AS b
LEFT JOIN (
    SELECT least(toUInt8(floor(latest_risk * 10)), 9) AS bucket, count() AS runs
    FROM {_LATEST_RISK}
    GROUP BY bucket
) AS c USING bucket
ORDER BY bucket
"""  # noqa: S608

RISK_OVER_TIME = """
SELECT $__timeInterval(predicted_at) AS time, avg(risk) AS mean_risk, quantile(0.9)(risk) AS p90_risk
FROM omium_predictions FINAL
WHERE $__timeFilter(predicted_at)
GROUP BY time
ORDER BY time
"""

AT_RISK_RUNS = f"""
SELECT p.run_id AS run_id, r.workflow AS workflow, r.status AS status, r.started_at AS started_at,
       round(p.latest_risk, 3) AS risk, p.latest_steps_seen AS steps_seen, p.latest_model AS model_version,
       p.last_predicted_at AS predicted_at
FROM {_LATEST_RISK} AS p
INNER JOIN (SELECT run_id, workflow, status, started_at FROM omium_runs FINAL) AS r ON r.run_id = p.run_id
WHERE r.status IN {_IN_FLIGHT_RUN}
ORDER BY risk DESC, started_at
LIMIT 25
"""  # noqa: S608

FAILURE_CLASSES = """
SELECT failure_class, sum(predicted) AS predicted, sum(labelled) AS labelled
FROM (
    SELECT failure_class, count() AS predicted, 0 AS labelled
    FROM omium_failure_classes FINAL
    WHERE $__timeFilter(classified_at)
    GROUP BY failure_class
    UNION ALL
    SELECT failure_class, 0 AS predicted, count() AS labelled
    FROM omium_failure_labels FINAL
    WHERE $__dateFilter(day) AND failed
    GROUP BY failure_class
)
WHERE failure_class NOT IN ('', 'none')
GROUP BY failure_class
ORDER BY predicted + labelled DESC
"""

FAILURE_LABELS = """
SELECT failure_class, mast_code, label_source, count() AS runs
FROM omium_failure_labels FINAL
WHERE $__dateFilter(day) AND failed
GROUP BY failure_class, mast_code, label_source
ORDER BY runs DESC
"""

ROOT_CAUSES = """
SELECT run_id, agent, step_index, round(confidence, 3) AS confidence, failure_class, evidence, method,
       model_version, created_at
FROM omium_root_causes FINAL
WHERE $__timeFilter(created_at)
ORDER BY created_at DESC, confidence DESC
LIMIT 100
"""

ROOT_CAUSE_AGENTS = """
SELECT agent, count() AS runs
FROM omium_root_causes FINAL
WHERE $__timeFilter(created_at)
GROUP BY agent
ORDER BY runs DESC
LIMIT 15
"""

# --- Panels and dashboards.


def _target(sql: str, fmt: Format = Format.TABLE, ref_id: str = "A") -> Json:
    return {
        "datasource": DATASOURCE_REF,
        "editorType": "sql",
        "format": int(fmt),
        "queryType": _QUERY_TYPES[fmt],
        "rawSql": textwrap.dedent(sql).strip(),
        "refId": ref_id,
    }


def _field(name: str, **properties: Any) -> Json:
    """A field override; ``custom__x`` stands for the property ``custom.x``."""
    return {
        "matcher": {"id": "byName", "options": name},
        "properties": [{"id": key.replace("__", "."), "value": value} for key, value in properties.items()],
    }


def _link(title: str, url: str) -> list[Json]:
    return [{"title": title, "url": url, "targetBlank": False}]


_TRACE_LINK = f"/d/{TRACE_EXPLORER_UID}/?var-trace_id=${{__value.raw}}&${{__url_time_range}}"
_RUN_LINK = f"/d/{TRACE_EXPLORER_UID}/?var-run_id=${{__value.raw}}&${{__url_time_range}}"
_RISK_STEPS = {
    "mode": "absolute",
    "steps": [
        {"color": "green", "value": None},
        {"color": "orange", "value": 0.5},
        {"color": "red", "value": 0.8},
    ],
}


def _panel(
    kind: str,
    title: str,
    grid: tuple[int, int, int, int],
    targets: Sequence[Json],
    description: str,
    *,
    unit: str = "",
    overrides: Sequence[Json] = (),
    options: Json | None = None,
    custom: Json | None = None,
) -> Json:
    x, y, w, h = grid
    defaults: Json = {"unit": unit} if unit else {}
    if custom:
        defaults["custom"] = custom
    return {
        "type": kind,
        "title": title,
        "description": description,
        "datasource": DATASOURCE_REF,
        "gridPos": {"x": x, "y": y, "w": w, "h": h},
        "targets": list(targets),
        "fieldConfig": {"defaults": defaults, "overrides": list(overrides)},
        "options": options or {},
    }


def _stat(title: str, grid: tuple[int, int, int, int], sql: str, description: str, **kw: Any) -> Json:
    options = {
        "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
        "colorMode": "value",
        "graphMode": "none",
        "justifyMode": "auto",
        "orientation": "auto",
        "textMode": "value_and_name",
    }
    return _panel("stat", title, grid, [_target(sql)], description, options=options, **kw)


def _timeseries(title: str, grid: tuple[int, int, int, int], sql: str, description: str, **kw: Any) -> Json:
    options = {
        "legend": {
            "displayMode": "table",
            "placement": "right",
            "calcs": ["mean", "max"],
            "showLegend": True,
        },
        "tooltip": {"mode": "multi", "sort": "desc"},
    }
    custom = {
        "drawStyle": "line",
        "lineWidth": 1,
        "fillOpacity": 10,
        "showPoints": "never",
        "spanNulls": False,
    }
    return _panel(
        "timeseries",
        title,
        grid,
        [_target(sql, Format.TIME_SERIES)],
        description,
        options=options,
        custom=custom,
        **kw,
    )


def _table(title: str, grid: tuple[int, int, int, int], sql: str, description: str, **kw: Any) -> Json:
    options = {"showHeader": True, "cellHeight": "sm", "footer": {"show": False, "reducer": ["sum"]}}
    return _panel("table", title, grid, [_target(sql)], description, options=options, **kw)


def _barchart(
    title: str, grid: tuple[int, int, int, int], sql: str, description: str, x_field: str, **kw: Any
) -> Json:
    options = {
        "xField": x_field,
        "orientation": "auto",
        "showValue": "auto",
        "stacking": "none",
        "legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
        "tooltip": {"mode": "multi", "sort": "none"},
    }
    return _panel("barchart", title, grid, [_target(sql)], description, options=options, **kw)


def _dashboard(
    uid: str,
    title: str,
    description: str,
    panels: Sequence[Json],
    *,
    variables: Sequence[Json] = (),
    time_from: str = "now-6h",
    tags: Sequence[str] = (),
) -> Json:
    numbered = [{"id": index, **panel} for index, panel in enumerate(panels, start=1)]
    return {
        "uid": uid,
        "title": title,
        "description": description,
        "tags": ["omium", *tags],
        "editable": True,
        "graphTooltip": 1,
        "id": None,
        "schemaVersion": SCHEMA_VERSION,
        "version": 1,
        "refresh": "1m",
        "time": {"from": time_from, "to": "now"},
        "timepicker": {},
        "timezone": "",
        "fiscalYearStartMonth": 0,
        "weekStart": "",
        "links": [
            {
                "type": "dashboards",
                "title": "Omium",
                "tags": ["omium"],
                "asDropdown": True,
                "includeVars": False,
                "keepTime": True,
                "icon": "external link",
                "targetBlank": False,
            }
        ],
        "annotations": {
            "list": [
                {
                    "builtIn": 1,
                    "datasource": {"type": "grafana", "uid": "-- Grafana --"},
                    "enable": True,
                    "hide": True,
                    "iconColor": "rgba(0, 211, 255, 1)",
                    "name": "Annotations & Alerts",
                    "type": "dashboard",
                }
            ]
        },
        "templating": {"list": [_DATASOURCE_VARIABLE, *variables]},
        "panels": numbered,
    }


_DATASOURCE_VARIABLE: Json = {
    "type": "datasource",
    "name": "datasource",
    "label": "Data source",
    "query": PLUGIN_ID,
    "current": {"selected": False, "text": DATASOURCE_NAME, "value": DATASOURCE_UID},
    "hide": 0,
    "includeAll": False,
    "multi": False,
    "options": [],
    "refresh": 1,
    "regex": "",
    "skipUrlSync": False,
}


def _query_variable(name: str, label: str, sql: str, *, multi: bool = False) -> Json:
    sql = textwrap.dedent(sql).strip()
    return {
        "type": "query",
        "name": name,
        "label": label,
        "datasource": DATASOURCE_REF,
        "definition": sql,
        "query": sql,
        "refresh": 2,  # on time range change
        "sort": 0,
        "multi": multi,
        "includeAll": multi,
        "allowCustomValue": True,
        "current": {"selected": True, "text": ["All"], "value": ["$__all"]} if multi else {},
        "options": [],
        "hide": 0,
        "regex": "",
        "skipUrlSync": False,
    }


def _textbox(name: str, label: str) -> Json:
    return {
        "type": "textbox",
        "name": name,
        "label": label,
        "query": "",
        "current": {"selected": False, "text": "", "value": ""},
        "options": [],
        "hide": 0,
        "skipUrlSync": False,
    }


def _custom(name: str, label: str, values: Sequence[str]) -> Json:
    options = [{"selected": index == 0, "text": value, "value": value} for index, value in enumerate(values)]
    return {
        "type": "custom",
        "name": name,
        "label": label,
        "query": ",".join(values),
        "current": {"selected": True, "text": values[0], "value": values[0]},
        "options": options,
        "multi": False,
        "includeAll": False,
        "hide": 0,
        "skipUrlSync": False,
    }


def agent_health() -> Json:
    """Per-agent span and error rates, latency and tokens; run outcomes and recent failed runs."""
    ms = {"unit": "ms"}
    panels = [
        _stat(
            "Agent activity",
            (0, 0, 12, 4),
            AGENT_ACTIVITY,
            "Spans attributed to an agent in the time range.",
            overrides=[_field("error_rate", unit="percentunit", decimals=2), _field("tokens", unit="short")],
        ),
        _stat(
            "Runs",
            (12, 0, 12, 4),
            RUN_STATUS_TOTALS,
            "Runs started in the time range, by outcome.",
            overrides=[_field("failed", color={"mode": "fixed", "fixedColor": "red"})],
        ),
        _timeseries(
            "Span rate per agent", (0, 4, 12, 8), SPAN_RATE, "Spans per second of each agent.", unit="reqps"
        ),
        _timeseries(
            "Error rate per agent",
            (12, 4, 12, 8),
            ERROR_RATE,
            "Share of each agent's spans with an error status.",
            unit="percentunit",
        ),
        _table(
            "Agents",
            (0, 12, 16, 9),
            AGENT_TABLE,
            "Calls are an agent's invocations (spans whose parent is not the same agent's); latency is "
            "theirs. Spans, errors and tokens count everything the agent did, model and tool calls included.",
            overrides=[
                _field(
                    "error_pct",
                    unit="percent",
                    custom__cellOptions={"type": "color-text"},
                    thresholds={
                        "mode": "absolute",
                        "steps": [{"color": "green", "value": None}, {"color": "red", "value": 5}],
                    },
                ),
                _field("p50_ms", **ms),
                _field("p95_ms", **ms),
            ],
        ),
        _panel(
            "piechart",
            "Run outcomes",
            (16, 12, 8, 9),
            [_target(RUN_STATUSES)],
            "Runs started in the time range, by status.",
            options={
                "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": True},
                "pieType": "donut",
                "displayLabels": ["name", "percent"],
                "legend": {
                    "displayMode": "table",
                    "placement": "right",
                    "values": ["value", "percent"],
                    "showLegend": True,
                },
                "tooltip": {"mode": "single", "sort": "none"},
            },
        ),
        _table(
            "Recent failed runs",
            (0, 21, 24, 8),
            FAILED_RUNS,
            "The newest failed or rejected runs; the run opens its traces.",
            overrides=[
                _field("run_id", links=_link("Traces of this run", _RUN_LINK)),
                _field("duration_s", unit="s"),
            ],
        ),
    ]
    return _dashboard(
        "omium-agent-health",
        "Omium / Agent health",
        "How each agent behaves: span and error rates, latency, tokens, and how runs end.",
        panels,
        variables=[_query_variable("agent", "Agent", AGENTS_VARIABLE, multi=True)],
        tags=["agents"],
    )


def agent_graph() -> Json:
    """The agent dependency graph of the time range (a nodeGraph) and the pipeline's daily graph."""
    nodes = _target(GRAPH_NODES, ref_id="nodes")
    edges = _target(GRAPH_EDGES, ref_id="edges")
    panels = [
        _panel(
            "nodeGraph",
            "Agent dependency graph",
            (0, 0, 24, 16),
            [nodes, edges],
            "Agents (and the workflows their runs start from). An edge is a call (a span whose parent "
            "belongs to another agent) or a hand-off (a span that consumed another agent's message). Arcs "
            "show each node's share of failing spans.",
            options={
                "nodes": {
                    "mainStatUnit": "short",
                    "secondaryStatUnit": "percent",
                    "arcs": [
                        {"field": "arc__success", "color": "green"},
                        {"field": "arc__errors", "color": "red"},
                    ],
                },
                "edges": {"mainStatUnit": "short", "secondaryStatUnit": "short"},
            },
            overrides=[
                _field("mainstat", displayName="spans"),
                _field("secondarystat", displayName="errors"),
                _field("arc__success", displayName="ok", color={"mode": "fixed", "fixedColor": "green"}),
                _field("arc__errors", displayName="failing", color={"mode": "fixed", "fixedColor": "red"}),
            ],
        ),
        _table(
            "Agent edges per day (pipeline)",
            (0, 16, 24, 10),
            PIPELINE_EDGES,
            "The cross-run agent graph the pipelines derive per day (omium_agent_edges).",
            overrides=[
                _field("error_pct", unit="percent"),
                _field("p50_ms", unit="ms"),
                _field("p95_ms", unit="ms"),
            ],
        ),
    ]
    return _dashboard(
        "omium-agent-graph",
        "Omium / Agent dependency graph",
        "Which agents call and hand off to which, with volumes and failures on every node and edge.",
        panels,
        time_from="now-24h",
        tags=["agents"],
    )


def trace_explorer() -> Json:
    """Recent traces, one trace in Grafana's trace view, and its spans as a table."""
    panels = [
        _table(
            "Traces",
            (0, 0, 24, 9),
            TRACES,
            "The newest traces in the time range; a trace id opens it below.",
            overrides=[
                _field("traceID", links=_link("Open this trace", _TRACE_LINK)),
                _field("duration_ms", unit="ms"),
            ],
        ),
        _panel("traces", "Trace", (0, 9, 24, 14), [_target(TRACE, Format.TRACE)], "The selected trace."),
        _table(
            "Spans of the trace",
            (0, 23, 24, 10),
            TRACE_SPANS,
            "Every span of the selected trace with its agent, operation, tool, step and tokens.",
            overrides=[_field("duration_ms", unit="ms")],
        ),
    ]
    return _dashboard(
        TRACE_EXPLORER_UID,
        "Omium / Trace explorer",
        "Find a run's trace and read it span by span.",
        panels,
        variables=[
            _textbox("run_id", "Run id contains"),
            _query_variable("trace_id", "Trace", TRACES_VARIABLE),
        ],
        tags=["traces"],
    )


def failure_risk() -> Json:
    """Predicted failure risk of runs, failure classes and root causes."""
    panels = [
        _stat(
            "Risk",
            (0, 0, 24, 4),
            RISK_SUMMARY,
            "Runs scored in the time range (latest prediction each), and those at or above the threshold.",
            overrides=[
                _field("mean_risk", unit="percentunit"),
                _field("high_risk_in_flight", color={"mode": "fixed", "fixedColor": "red"}),
            ],
        ),
        _barchart(
            "Risk distribution",
            (0, 4, 8, 9),
            RISK_DISTRIBUTION,
            "Runs by their latest predicted failure risk.",
            "risk",
        ),
        _timeseries(
            "Predicted risk over time",
            (8, 4, 16, 9),
            RISK_OVER_TIME,
            "Mean and 90th percentile of the predictions made.",
            unit="percentunit",
        ),
        _table(
            "Runs in flight by risk",
            (0, 13, 24, 9),
            AT_RISK_RUNS,
            "Queued, running and paused runs, riskiest first.",
            overrides=[
                _field("run_id", links=_link("Traces of this run", _RUN_LINK)),
                _field(
                    "risk",
                    unit="percentunit",
                    thresholds=_RISK_STEPS,
                    custom__cellOptions={"type": "color-background"},
                ),
            ],
        ),
        _barchart(
            "Failure classes",
            (0, 22, 12, 9),
            FAILURE_CLASSES,
            "Failed runs by class: as the classifier predicts them and as labelled.",
            "failure_class",
        ),
        _table(
            "Failure labels",
            (12, 22, 12, 9),
            FAILURE_LABELS,
            "Labelled failures by class, MAST code and where the label came from.",
        ),
        _table(
            "Root causes",
            (0, 31, 16, 10),
            ROOT_CAUSES,
            "The agent and step each failed run is attributed to, with the evidence.",
            overrides=[
                _field("run_id", links=_link("Traces of this run", _RUN_LINK)),
                _field("confidence", unit="percentunit"),
            ],
        ),
        _barchart(
            "Root-cause agents",
            (16, 31, 8, 10),
            ROOT_CAUSE_AGENTS,
            "The agents failed runs are most often attributed to.",
            "agent",
        ),
    ]
    return _dashboard(
        "omium-failure-risk",
        "Omium / Failure risk",
        "Which runs are likely to fail, how failures classify, and which agents cause them.",
        panels,
        variables=[_custom("risk_threshold", "High risk at", ["0.5", "0.7", "0.9"])],
        time_from="now-7d",
        tags=["failures"],
    )


def dashboards() -> list[Json]:
    """Every Omium dashboard, as Grafana dashboard JSON."""
    return [agent_health(), agent_graph(), trace_explorer(), failure_risk()]


def panels(dashboard: Json) -> Iterator[tuple[Json, Json]]:
    """Every (panel, target) of ``dashboard``, rows' nested panels included."""
    for panel in dashboard.get("panels", []):
        for nested in [panel, *panel.get("panels", [])]:
            for target in nested.get("targets", []):
                yield nested, target


# --- Provisioning.


@dataclass(frozen=True)
class DatasourceOptions:
    """The ClickHouse connection the provisioned data source uses.

    The password is left to Grafana's environment (``$CLICKHOUSE_PASSWORD``): provisioning files
    expand environment variables, so no secret is written to disk.
    """

    host: str = "clickhouse"
    port: int = 9000
    protocol: str = "native"
    username: str = "omium"
    database: str = "omium"


def datasource_provisioning(options: DatasourceOptions = DatasourceOptions()) -> Json:
    """Grafana's data source provisioning for the plugin, in OTel mode over ``otel_traces``."""
    if options.protocol not in ("native", "http"):
        raise ValueError(f"protocol must be native or http, got {options.protocol!r}")
    return {
        "apiVersion": 1,
        "datasources": [
            {
                "name": DATASOURCE_NAME,
                "uid": DATASOURCE_UID,
                "type": PLUGIN_ID,
                "isDefault": True,
                "jsonData": {
                    "host": options.host,
                    "port": options.port,
                    "protocol": options.protocol,
                    "username": options.username,
                    "defaultDatabase": options.database,
                    "traces": {
                        "defaultDatabase": options.database,
                        "defaultTable": "otel_traces",
                        "otelEnabled": True,
                        "durationUnit": "nanoseconds",
                        "traceTimestampTableSuffix": "_trace_id_ts",
                    },
                },
                "secureJsonData": {"password": "${CLICKHOUSE_PASSWORD}"},
            }
        ],
    }


def dashboard_provisioning(path: str = "/var/lib/grafana/dashboards") -> Json:
    """A file provider loading the dashboards from ``path`` into an "Omium" folder."""
    return {
        "apiVersion": 1,
        "providers": [
            {
                "name": "omium",
                "folder": "Omium",
                "type": "file",
                "disableDeletion": False,
                "options": {"path": path},
            }
        ],
    }


_HEADER = "# Written by `omium export grafana` from omium.dashboards.grafana: change it there.\n"


class _Dumper(yaml.SafeDumper):
    """Indents list items under their key, as hand-written provisioning files do."""

    def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
        super().increase_indent(flow, False)


def export(
    directory: Path,
    *,
    datasource: DatasourceOptions = DatasourceOptions(),
    dashboards_path: str = "/var/lib/grafana/dashboards",
) -> list[Path]:
    """Write the dashboards and provisioning files under ``directory``.

    Layout (as ``deploy/grafana``): ``dashboards/<uid>.json``,
    ``provisioning/datasources/clickhouse.yaml`` and ``provisioning/dashboards/omium.yaml``.
    Other files in ``directory`` are left alone.

    Args:
        directory: Where to write; created if missing.
        datasource: The ClickHouse connection of the provisioned data source.
        dashboards_path: Where Grafana will find the dashboards (the provider's path).

    Returns:
        The files written.

    Raises:
        NotADirectoryError: ``directory`` (or a folder to create in it) is a file.
    """
    files: dict[Path, str] = {}
    for dashboard in dashboards():
        files[Path(DASHBOARDS) / f"{dashboard['uid']}.json"] = json.dumps(dashboard, indent=2) + "\n"
    for name, content in (
        ("datasources/clickhouse.yaml", datasource_provisioning(datasource)),
        ("dashboards/omium.yaml", dashboard_provisioning(dashboards_path)),
    ):
        files[Path(PROVISIONING) / name] = _HEADER + yaml.dump(content, Dumper=_Dumper, sort_keys=False)
    written = []
    for relative, text in files.items():
        path = directory / relative
        for parent in reversed(path.parents):
            if parent.exists() and not parent.is_dir():
                raise NotADirectoryError(f"{parent} is a file, not a directory")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        written.append(path)
    return written


# --- The plugin's macros and Grafana's variables, substituted as they are at query time.

_MACRO = re.compile(r"\$__(\w+)")
_VARIABLE = re.compile(r"\$\{(\w+)\}|\$(\w+)")
_CONDITIONAL_ALL = "$__conditionalAll("
_ARGUMENT_MACROS = frozenset(
    {"timeFilter", "timeFilter_ms", "dateFilter", "dateTimeFilter", "dt", "timeInterval", "timeInterval_ms"}
)


def _arguments(sql: str, open_paren: int) -> tuple[list[str], int]:
    """The comma-separated arguments of the call whose ``(`` is at ``open_paren``, and its end."""
    depth, start, args = 0, open_paren + 1, []
    for index in range(open_paren, len(sql)):
        char = sql[index]
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
            if depth == 0:
                args.append(sql[start:index])
                return args, index + 1
        elif char == "," and depth == 1:
            args.append(sql[start:index])
            start = index + 1
    raise ValueError(f"unbalanced parentheses after position {open_paren}: {sql[open_paren:][:80]!r}")


def _conditional_all(sql: str, variables: Mapping[str, str | Sequence[str]]) -> str:
    """``$__conditionalAll(condition, $var)``: the condition, or ``1=1`` when ``var`` is All or empty."""
    while (at := sql.rfind(_CONDITIONAL_ALL)) != -1:
        args, end = _arguments(sql, at + len(_CONDITIONAL_ALL) - 1)
        if len(args) != 2:
            raise ValueError(f"$__conditionalAll takes a condition and a variable, got {args}")
        match = _VARIABLE.search(args[1].strip())
        if not match or (name := match.group(1) or match.group(2)) not in variables:
            raise ValueError(f"$__conditionalAll names an unknown variable: {args[1].strip()!r}")
        value = variables[name]
        current = value if isinstance(value, str) else ",".join(value)
        sql = sql[:at] + ("1=1" if current in ("", "$__all") else args[0]) + sql[end:]
    return sql


def _variable_value(name: str, value: str | Sequence[str]) -> str:
    # The plugin's format(): a multi-value variable becomes a quoted list, a single value stays raw.
    if value == "$__all" or (not isinstance(value, str) and "$__all" in value):
        raise ValueError(f"variable {name} is All: pass its values, or use it inside $__conditionalAll")
    if isinstance(value, str):
        return value
    return "'" + "','".join(value) + "'"


def _seconds(moment: dt.datetime) -> int:
    return int(moment.timestamp())


def _millis(moment: dt.datetime) -> int:
    return int(moment.timestamp() * 1000)


def _date(moment: dt.datetime) -> str:
    return f"toDate('{moment.astimezone(dt.UTC):%Y-%m-%d}')"


def substitute_macros(
    sql: str,
    start: dt.datetime,
    end: dt.datetime,
    interval_s: float = 60,
    variables: Mapping[str, str | Sequence[str]] | None = None,
) -> str:
    """``sql`` as the plugin sends it to ClickHouse for the time range ``start``-``end``.

    In Grafana's order: ``$__conditionalAll`` and the dashboard's variables (``$name``,
    ``${name}``) first, then the plugin's macros: ``$__timeFilter(col)`` (``col >= toDateTime(<start s>)
    AND col <= toDateTime(<end s>)``), ``$__timeFilter_ms``, ``$__dateFilter``, ``$__dateTimeFilter`` /
    ``$__dt``, ``$__fromTime``, ``$__toTime`` (and ``_ms``), ``$__timeInterval(col)``,
    ``$__timeInterval_ms(col)`` and ``$__interval_s``.

    Args:
        sql: A panel's ``rawSql``.
        start: The range's start (timezone-aware).
        end: The range's end.
        interval_s: The panel's interval in seconds (at least 1, as the plugin rounds it).
        variables: Variable values: a string (substituted raw, as Grafana does) or a sequence
            (a multi-value selection, substituted as ``'a','b'``); ``"$__all"`` for All.

    Raises:
        ValueError: an unknown macro, wrong arguments, or an All variable outside
            ``$__conditionalAll``.
    """
    values = dict(variables or {})
    sql = _conditional_all(sql, values)

    def variable(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        if name.startswith("__") or name not in values:
            return match.group(0)  # a macro, or unknown: Grafana leaves it as it is
        return _variable_value(name, values[name])

    sql = _VARIABLE.sub(variable, sql)
    interval = max(int(interval_s), 1)
    interval_ms = max(int(interval_s * 1000), 1)
    s, e = f"toDateTime({_seconds(start)})", f"toDateTime({_seconds(end)})"
    s_ms, e_ms = f"fromUnixTimestamp64Milli({_millis(start)})", f"fromUnixTimestamp64Milli({_millis(end)})"
    plain = {"fromTime": s, "toTime": e, "fromTime_ms": s_ms, "toTime_ms": e_ms, "interval_s": str(interval)}

    def with_arguments(name: str, args: list[str]) -> str:
        want = 2 if name in ("dateTimeFilter", "dt") else 1
        if len(args) != want:
            raise ValueError(f"$__{name} takes {want} argument(s), got {len(args)}")
        col = args[0].strip()
        if name == "timeFilter":
            return f"{col} >= {s} AND {col} <= {e}"
        if name == "timeFilter_ms":
            return f"{col} >= {s_ms} AND {col} <= {e_ms}"
        if name == "dateFilter":
            return f"{col} >= {_date(start)} AND {col} <= {_date(end)}"
        if name in ("dateTimeFilter", "dt"):
            time_col = args[1].strip()
            return (
                f"({col} >= {_date(start)} AND {col} <= {_date(end)}) AND "
                f"({time_col} >= {s} AND {time_col} <= {e})"
            )
        if name == "timeInterval":
            return f"toStartOfInterval(toDateTime({col}), INTERVAL {interval} second)"
        return f"toStartOfInterval(toDateTime64({col}, 3), INTERVAL {interval_ms} millisecond)"

    out, position = [], 0
    for match in _MACRO.finditer(sql):
        if match.start() < position:
            continue  # inside the arguments of a macro already expanded
        name = match.group(1)
        out.append(sql[position : match.start()])
        if name in plain:
            out.append(plain[name])
            position = match.end()
        elif name in _ARGUMENT_MACROS:
            if match.end() >= len(sql) or sql[match.end()] != "(":
                raise ValueError(f"$__{name} needs arguments")
            args, position = _arguments(sql, match.end())
            out.append(with_arguments(name, args))
        else:
            raise ValueError(f"unknown macro $__{name}")
    out.append(sql[position:])
    return "".join(out)


__all__ = [
    "DASHBOARDS",
    "DATASOURCE_REF",
    "DATASOURCE_UID",
    "PLUGIN_ID",
    "PROVISIONING",
    "TRACE_EXPLORER_UID",
    "DatasourceOptions",
    "Format",
    "agent_graph",
    "agent_health",
    "dashboard_provisioning",
    "dashboards",
    "datasource_provisioning",
    "export",
    "failure_risk",
    "panels",
    "substitute_macros",
    "trace_explorer",
]
