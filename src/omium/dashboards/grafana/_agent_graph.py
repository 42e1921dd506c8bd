"""The agent dependency graph dashboard: a ``nodeGraph`` of the time range and the pipeline's daily edges."""

from __future__ import annotations

from ._panels import dashboard, field, panel, table, target
from ._plugin import Json
from ._sql import AGENT, FAILED

# A graph node is an agent, or the workflow for spans that belong to no agent (a run's root).
# Edges: a span's parent (a call) and the producer of the hand-off it consumed.
_GRAPH_SPANS = f"""
    SELECT TraceId, SpanId, ParentSpanId, RunId, Duration, {FAILED} AS failed,
           {AGENT} AS agent,
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


def agent_graph() -> Json:
    """The agent dependency graph of the time range (a nodeGraph) and the pipeline's daily graph."""
    nodes = target(GRAPH_NODES, ref_id="nodes")
    edges = target(GRAPH_EDGES, ref_id="edges")
    panels = [
        panel(
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
                field("mainstat", displayName="spans"),
                field("secondarystat", displayName="errors"),
                field("arc__success", displayName="ok", color={"mode": "fixed", "fixedColor": "green"}),
                field("arc__errors", displayName="failing", color={"mode": "fixed", "fixedColor": "red"}),
            ],
        ),
        table(
            "Agent edges per day (pipeline)",
            (0, 16, 24, 10),
            PIPELINE_EDGES,
            "The cross-run agent graph the pipelines derive per day (omium_agent_edges).",
            overrides=[
                field("error_pct", unit="percent"),
                field("p50_ms", unit="ms"),
                field("p95_ms", unit="ms"),
            ],
        ),
    ]
    return dashboard(
        "omium-agent-graph",
        "Omium / Agent dependency graph",
        "Which agents call and hand off to which, with volumes and failures on every node and edge.",
        panels,
        time_from="now-24h",
        tags=["agents"],
    )


__all__ = ["GRAPH_EDGES", "GRAPH_NODES", "PIPELINE_EDGES", "agent_graph"]
