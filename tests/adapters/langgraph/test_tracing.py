"""OmiumTracer: a LangGraph run's node, model and tool spans, in the warehouse's ``otel_traces``."""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Iterator
from typing import Annotated, Any, TypedDict

import pytest
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, AnyMessage, HumanMessage
from langchain_core.tools import tool
from langgraph.graph import END, START, StateGraph
from langgraph.graph.message import add_messages
from langgraph.types import Command, interrupt
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from omium.adapters.langgraph import OmiumSaver, OmiumTracer
from omium.sdk import tracing
from omium.sdk.store import MemoryStore
from omium.warehouse import ClickHouseWarehouse
from omium.warehouse.span_exporter import WarehouseSpanExporter


class Chat(TypedDict):
    messages: Annotated[list[AnyMessage], add_messages]


@tool
def track(order: str) -> str:
    """Where an order is."""
    if order == "lost":
        raise ValueError("no such order")
    return f"{order} is in transit"


def answers(prefix: str) -> Iterator[AIMessage]:
    for i in itertools.count():
        usage = {"input_tokens": 10 + i, "output_tokens": 3, "total_tokens": 13 + i}
        yield AIMessage(f"{prefix} {i}", usage_metadata=usage)  # type: ignore[arg-type]


def support_graph(saver: OmiumSaver, runs: Counter[str], fail: set[str] | None = None) -> Any:
    """plan (model) -> act (tool) -> review (model)."""
    planner = GenericFakeChatModel(messages=answers("plan"))
    reviewer = GenericFakeChatModel(messages=answers("review"))
    fail = fail if fail is not None else set()

    def plan(state: Chat) -> dict[str, Any]:
        runs["plan"] += 1
        return {"messages": [planner.invoke(state["messages"])]}

    def act(state: Chat) -> dict[str, Any]:
        runs["act"] += 1
        if "act" in fail:
            fail.discard("act")
            track.invoke({"order": "lost"})
        return {"messages": [AIMessage(track.invoke({"order": "A17"}))]}

    def review(state: Chat) -> dict[str, Any]:
        runs["review"] += 1
        return {"messages": [reviewer.invoke(state["messages"])]}

    builder = StateGraph(Chat)
    for name, node in (("plan", plan), ("act", act), ("review", review)):
        builder.add_node(name, node)
    builder.add_edge(START, "plan")
    builder.add_edge("plan", "act")
    builder.add_edge("act", "review")
    builder.add_edge("review", END)
    return builder.compile(checkpointer=saver, name="support")


@pytest.fixture
def exporter() -> Iterator[InMemorySpanExporter]:
    spans = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(spans))
    previous = tracing._provider
    tracing.configure(provider)
    yield spans
    tracing.configure(previous)
    provider.shutdown()


def traced(thread: str, saver: OmiumSaver) -> dict[str, Any]:
    return {"configurable": {"thread_id": thread}, "callbacks": [OmiumTracer(saver)]}


def test_spans_land_in_otel_traces_with_agents_and_parents(warehouse: ClickHouseWarehouse) -> None:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(WarehouseSpanExporter(warehouse)))
    previous = tracing._provider
    tracing.configure(provider)
    try:
        graph = support_graph(OmiumSaver(MemoryStore()), Counter())
        saver = graph.checkpointer
        graph.invoke({"messages": [HumanMessage("where is A17?")]}, traced("t-wh", saver))
    finally:
        tracing.configure(previous)
        provider.shutdown()
    rows = warehouse.query_rows(
        "SELECT SpanId, ParentSpanId, TraceId, SpanName, StatusCode, SpanAttributes FROM otel_traces"
    )
    for row in rows:
        row["SpanAttributes"] = dict(row["SpanAttributes"])  # a Map arrives as key-value pairs
    by_name = {r["SpanName"]: r for r in rows}
    assert sorted(by_name) == [
        "chat GenericFakeChatModel",
        "execute_tool track",
        "invoke_agent act",
        "invoke_agent plan",
        "invoke_agent review",
        "invoke_workflow support",
    ]
    assert len(rows) == 7  # workflow, three nodes, two model calls, one tool call
    assert len({r["TraceId"] for r in rows}) == 1
    ids = {r["SpanId"]: r for r in rows}
    workflow = by_name["invoke_workflow support"]
    assert workflow["ParentSpanId"] == ""
    assert workflow["SpanAttributes"]["gen_ai.workflow.name"] == "support"
    for row in rows:
        attributes = row["SpanAttributes"]
        assert attributes["omium.run_id"] == "langgraph:t-wh"
        assert row["StatusCode"] in ("Unset", "Ok")
        if row["SpanName"].startswith("invoke_agent"):
            assert row["ParentSpanId"] == workflow["SpanId"]
            assert attributes["gen_ai.agent.name"] == row["SpanName"].removeprefix("invoke_agent ")
            assert attributes["gen_ai.operation.name"] == "invoke_agent"
    steps = {
        n: by_name[f"invoke_agent {n}"]["SpanAttributes"]["omium.step_index"]
        for n in ("plan", "act", "review")
    }
    assert steps == {"plan": "1", "act": "2", "review": "3"}
    tool = by_name["execute_tool track"]
    assert ids[tool["ParentSpanId"]]["SpanName"] == "invoke_agent act"
    assert tool["SpanAttributes"]["gen_ai.tool.name"] == "track"
    chats = [r for r in rows if r["SpanName"].startswith("chat ")]
    assert sorted(ids[c["ParentSpanId"]]["SpanName"] for c in chats) == [
        "invoke_agent plan",
        "invoke_agent review",
    ]
    for chat in chats:
        attributes = chat["SpanAttributes"]
        assert attributes["gen_ai.operation.name"] == "chat"
        assert attributes["gen_ai.request.model"] == "GenericFakeChatModel"
        assert attributes["gen_ai.usage.input_tokens"] == "10"
        assert attributes["gen_ai.usage.output_tokens"] == "3"
        assert attributes["omium.step_index"] in ("1", "3")


def test_a_failed_tool_is_an_error_and_the_resume_runs_no_finished_node(
    exporter: InMemorySpanExporter,
) -> None:
    runs: Counter[str] = Counter()
    store = MemoryStore()
    graph = support_graph(OmiumSaver(store), runs, fail={"act"})
    saver = graph.checkpointer
    with pytest.raises(ValueError, match="no such order"):
        graph.invoke({"messages": [HumanMessage("where is it?")]}, traced("t-crash", saver))
    failed = {s.name: s for s in exporter.get_finished_spans() if not s.status.is_ok}
    assert set(failed) == {"execute_tool track", "invoke_agent act", "invoke_workflow support"}
    for span in failed.values():
        assert span.attributes is not None and span.attributes["error.type"] == "ValueError"
    exporter.clear()

    graph.invoke(None, traced("t-crash", saver))
    assert runs == {"plan": 1, "act": 2, "review": 1}
    names = sorted(s.name for s in exporter.get_finished_spans())
    assert names == [
        "chat GenericFakeChatModel",
        "execute_tool track",
        "invoke_agent act",
        "invoke_agent review",
        "invoke_workflow support",
    ]
    assert all(s.status.is_ok for s in exporter.get_finished_spans())


def test_interrupt_and_resume_are_recorded_with_their_checkpoint(exporter: InMemorySpanExporter) -> None:
    def ask(state: Chat) -> dict[str, Any]:
        answer = interrupt("ship it?")
        return {"messages": [AIMessage(f"answer: {answer}")]}

    builder = StateGraph(Chat)
    builder.add_node("ask", ask)
    builder.add_edge(START, "ask")
    builder.add_edge("ask", END)
    store = MemoryStore()
    saver = OmiumSaver(store)
    graph = builder.compile(checkpointer=saver)
    out = graph.invoke({"messages": [HumanMessage("go")]}, traced("t-int", saver))
    assert out["__interrupt__"]
    paused_at = graph.get_state({"configurable": {"thread_id": "t-int"}}).config["configurable"][
        "checkpoint_id"
    ]
    spans = {s.name: s for s in exporter.get_finished_spans()}
    node, workflow = spans["invoke_agent ask"], spans["invoke_workflow LangGraph"]
    assert node.status.is_ok and [e.name for e in node.events] == ["omium.interrupt"]
    assert [(e.name, dict(e.attributes or {})) for e in workflow.events] == [
        ("omium.paused", {"omium.checkpoint": paused_at})
    ]
    exporter.clear()
    graph.invoke(Command(resume="yes"), traced("t-int", saver))
    workflow = next(s for s in exporter.get_finished_spans() if s.name.startswith("invoke_workflow"))
    assert [(e.name, dict(e.attributes or {})) for e in workflow.events] == [
        ("omium.resumed", {"omium.checkpoint": paused_at})
    ]
    events = [(e.kind, e.attributes["checkpoint"]) for e in store.events("langgraph:t-int")]
    assert events == [("paused", paused_at), ("resumed", paused_at)]
