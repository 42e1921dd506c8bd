"""The AG2 team's spans land in ``otel_traces`` through Omium's tracer, with agents and parents intact."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

import omium
from omium.sdk import runs, tracing
from omium.sdk.store import MemoryStore
from omium.warehouse import ClickHouseWarehouse
from omium.warehouse.span_exporter import WarehouseSpanExporter
from tests.adapters.autogen.team_example import PLAN_CHECK, crew, drive


@pytest.fixture
def provider(warehouse: ClickHouseWarehouse) -> Iterator[TracerProvider]:
    """Omium's spans exported straight into the test's warehouse."""
    previous_store, previous = runs._default_store, tracing._provider
    traced = TracerProvider()
    traced.add_span_processor(SimpleSpanProcessor(WarehouseSpanExporter(warehouse)))
    omium.init(store=MemoryStore(), tracer_provider=traced)
    yield traced
    traced.shutdown()
    tracing.configure(previous)
    runs._default_store = previous_store


def test_team_spans_land_in_otel_traces(warehouse: ClickHouseWarehouse, provider: TracerProvider) -> None:
    team_crew = crew()
    outcome = drive(
        team_crew.team(handoffs=[PLAN_CHECK]).run(team_crew.network, "Write fib", run_id="wh-ag2")
    )
    assert outcome.status == "completed"
    provider.force_flush()
    rows = warehouse.query_rows(
        "SELECT SpanId, ParentSpanId, TraceId, SpanName, SpanAttributes['gen_ai.agent.name'] AS agent, "
        "SpanAttributes['omium.step_index'] AS step FROM otel_traces FINAL "
        "WHERE SpanAttributes['omium.run_id'] = {r:String} ORDER BY Timestamp",
        {"r": "wh-ag2"},
    )
    by_id = {r["SpanId"]: r for r in rows}
    names = [r["SpanName"] for r in rows]
    assert names[0] == "invoke_workflow fib_team"
    assert len({r["TraceId"] for r in rows}) == 1
    turns = [r for r in rows if r["SpanName"].startswith("invoke_agent ")]
    assert [(r["agent"], r["step"]) for r in turns] == [("planner", "0"), ("coder", "1"), ("reviewer", "2")]
    assert {by_id[r["ParentSpanId"]]["SpanName"] for r in turns} == {"invoke_workflow fib_team"}
    for row in rows:
        if row["SpanName"].startswith(("chat ", "execute_tool ", "handoff_send ")):
            parent = by_id[row["ParentSpanId"]]
            assert parent["SpanName"] == f"invoke_agent {row['agent']}"
            assert parent["step"] == row["step"]
    assert names.count("execute_tool run_tests") == 1
    assert sorted(n for n in names if n.startswith("chat ")) == [
        "chat coder-model",
        "chat coder-model",
        "chat planner-model",
        "chat reviewer-model",
    ]
