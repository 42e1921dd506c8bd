"""Injected faults land where their labels say: real spans of each framework in a real warehouse."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

from omium.models import fault_injection as fi
from omium.warehouse import ClickHouseWarehouse
from omium.warehouse.span_exporter import WarehouseSpanExporter

COUNT = len(fi.FAULTS)  # one run of each fault per framework


@pytest.fixture
def provider(warehouse: ClickHouseWarehouse) -> Iterator[TracerProvider]:
    traced = TracerProvider()
    traced.add_span_processor(SimpleSpanProcessor(WarehouseSpanExporter(warehouse)))
    yield traced
    traced.shutdown()


def test_scenarios_are_deterministic_and_varied() -> None:
    assert fi.scenarios(7, 12, "x") == fi.scenarios(7, 12, "x")
    assert fi.scenarios(7, 12, "x") != fi.scenarios(8, 12, "x")
    made = fi.scenarios(3, 60, "x")
    assert {s.fault for s in made} == set(fi.FAULTS)
    # The fault is not always the same role, the same turn, or the last turn.
    roles = Counter(next(r for r, a in s.roles.items() if a == s.fault_agent) for s in made)
    assert len(roles) >= 4
    assert len({s.fault_turn for s in made}) >= 4
    assert sum(s.fault_turn == len(s.turns) - 1 for s in made) < len(made) / 2
    for s in made:
        assert sum(t.text == s.fault_text for t in s.turns) == 1  # the fault's words are its own


def test_each_framework_records_the_fault_where_the_label_says(
    warehouse: ClickHouseWarehouse, provider: TracerProvider
) -> None:
    generated = fi.generate(provider, count=COUNT, seed=1)
    counts = fi.label(warehouse, generated)
    assert counts == {framework: COUNT for framework in fi.FRAMEWORKS}
    truth = {r["run_id"]: r for r in warehouse.query_rows("SELECT * FROM omium_ground_truth FINAL")}
    for group in generated:
        for one, run_id in zip(group.scenarios, group.run_ids, strict=True):
            label = truth[run_id]
            assert label["source"] == group.framework and label["failed"]
            assert label["mistake_agent"] == one.fault_agent and label["mistake_reason"].startswith(one.fault)
            spans = warehouse.query_rows(
                "SELECT step_index, agent, content, operation FROM omium_normalized_spans FINAL "
                "WHERE run_id = {r:String} AND step_index >= 0 ORDER BY ts",
                {"r": run_id},
            )
            at = [s for s in spans if s["step_index"] == label["mistake_step"]]
            assert at and {s["agent"] for s in at} == {one.fault_agent}
            if any(s["content"] for s in spans):  # a convention that records content shows the fault
                assert any(one.fault_text in s["content"] for s in at)
                assert not any(
                    one.fault_text in s["content"] for s in spans if s["step_index"] != label["mistake_step"]
                )
            else:  # LangGraph's tracer records no content: one step per turn, the fault's turn
                assert group.framework == "langgraph"
                steps = list(dict.fromkeys(s["step_index"] for s in spans))
                assert len(steps) == len(one.turns) and steps[one.fault_turn] == label["mistake_step"]
            # The agents the spans name are the scenario's, each framework under its own run id.
            assert {s["agent"] for s in spans} <= set(one.roles.values())
    # Injected tool timeouts are real errors on tool spans (noise that is not the fault).
    errors = warehouse.query_rows(
        "SELECT count() AS n FROM omium_normalized_spans FINAL WHERE status = 'error' AND operation = 'execute_tool'"
    )
    timeouts = sum(
        t.tool_fails for g in generated if g.framework != "ag2" for s in g.scenarios for t in s.turns
    )
    assert errors[0]["n"] >= (1 if timeouts else 0)
