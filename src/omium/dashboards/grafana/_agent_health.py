"""The agent health dashboard: per-agent span and error rates, latency and tokens; how runs end."""

from __future__ import annotations

from ._panels import dashboard, field, link, panel, stat, table, target, timeseries
from ._plugin import Json
from ._sql import AGENT, FAILED, INPUT_TOKENS, OUTPUT_TOKENS
from ._trace_explorer import RUN_LINK
from ._variables import query_variable

_FAILED_RUN = "('failed', 'rejected')"

# The time range's spans with their agent; ``agent`` selects them by the dashboard variable.
_AGENT_SPANS = f"""(
    SELECT Timestamp, SpanId, ParentSpanId, RunId, Duration, {FAILED} AS failed,
           {AGENT} AS agent,
           {INPUT_TOKENS} AS input_tokens,
           {OUTPUT_TOKENS} AS output_tokens
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
    SELECT SpanId, {AGENT} AS agent FROM otel_traces FINAL WHERE $__timeFilter(Timestamp) AND agent != ''
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


def agent_health() -> Json:
    """Per-agent span and error rates, latency and tokens; run outcomes and recent failed runs."""
    ms = {"unit": "ms"}
    panels = [
        stat(
            "Agent activity",
            (0, 0, 12, 4),
            AGENT_ACTIVITY,
            "Spans attributed to an agent in the time range.",
            overrides=[field("error_rate", unit="percentunit", decimals=2), field("tokens", unit="short")],
        ),
        stat(
            "Runs",
            (12, 0, 12, 4),
            RUN_STATUS_TOTALS,
            "Runs started in the time range, by outcome.",
            overrides=[field("failed", color={"mode": "fixed", "fixedColor": "red"})],
        ),
        timeseries(
            "Span rate per agent", (0, 4, 12, 8), SPAN_RATE, "Spans per second of each agent.", unit="reqps"
        ),
        timeseries(
            "Error rate per agent",
            (12, 4, 12, 8),
            ERROR_RATE,
            "Share of each agent's spans with an error status.",
            unit="percentunit",
        ),
        table(
            "Agents",
            (0, 12, 16, 9),
            AGENT_TABLE,
            "Calls are an agent's invocations (spans whose parent is not the same agent's); latency is "
            "theirs. Spans, errors and tokens count everything the agent did, model and tool calls included.",
            overrides=[
                field(
                    "error_pct",
                    unit="percent",
                    custom__cellOptions={"type": "color-text"},
                    thresholds={
                        "mode": "absolute",
                        "steps": [{"color": "green", "value": None}, {"color": "red", "value": 5}],
                    },
                ),
                field("p50_ms", **ms),
                field("p95_ms", **ms),
            ],
        ),
        panel(
            "piechart",
            "Run outcomes",
            (16, 12, 8, 9),
            [target(RUN_STATUSES)],
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
        table(
            "Recent failed runs",
            (0, 21, 24, 8),
            FAILED_RUNS,
            "The newest failed or rejected runs; the run opens its traces.",
            overrides=[
                field("run_id", links=link("Traces of this run", RUN_LINK)),
                field("duration_s", unit="s"),
            ],
        ),
    ]
    return dashboard(
        "omium-agent-health",
        "Omium / Agent health",
        "How each agent behaves: span and error rates, latency, tokens, and how runs end.",
        panels,
        variables=[query_variable("agent", "Agent", AGENTS_VARIABLE, multi=True)],
        tags=["agents"],
    )


__all__ = [
    "AGENTS_VARIABLE",
    "AGENT_ACTIVITY",
    "AGENT_TABLE",
    "ERROR_RATE",
    "FAILED_RUNS",
    "RUN_STATUSES",
    "RUN_STATUS_TOTALS",
    "SPAN_RATE",
    "agent_health",
]
