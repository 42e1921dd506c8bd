"""The real instrumentation packages, driving the real ``openai`` client (against a fake server)
and LangGraph (with LangChain's fake chat model), exported over OTLP/HTTP to a real Omium server:
``omium_normalized_spans`` has the right agent, operation, model, provider, tokens, cost, session,
user, content and hand-off edges for each."""

from __future__ import annotations

import importlib.metadata
import json
import os
from typing import Any

import pytest
from genai_prices import Usage, calc_price

from omium.pipelines import features, spans
from omium.warehouse import ClickHouseWarehouse
from tests.instrumentation import fake_openai
from tests.instrumentation.conftest import LEGACY_PYTHON, Runner

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SESSION, USER = "sess-1", "user-1"
QUESTION = "system: You are Omium's test agent.\nuser: What is the answer?"


def price(cached: int) -> float:
    """What genai-prices charges for one fake chat completion of gpt-4o-mini."""
    usage = Usage(input_tokens=100, cache_read_tokens=cached, output_tokens=20)
    return float(calc_price(usage, "gpt-4o-mini", provider_id="openai").total_price)


def by_operation(rows: list[dict[str, Any]], operation: str) -> list[dict[str, Any]]:
    return sorted((r for r in rows if r["operation"] == operation), key=lambda r: r["ts"])


def assert_openai_calls(rows: list[dict[str, Any]], *, cached: int, reasoning: int, stream_usage: bool = True) -> None:
    """What ``scenarios.openai_calls`` under an agent ``researcher`` must read as."""
    chats = by_operation(rows, "chat")
    assert len(chats) == 4, [(r["span_name"], r["operation"]) for r in rows]
    for row in rows:
        assert (row["session"], row["user"]) == (SESSION, USER), row["span_name"]
    tool_call, answer, stream, unknown = chats
    for row in chats:
        assert (row["agent"], row["provider"], row["role"]) == ("researcher", "openai", "assistant")
    for row in (tool_call, answer):
        assert row["model"].startswith("gpt-4o-mini")
        assert (row["input_tokens"], row["output_tokens"]) == (100, 20)
        assert (row["cached_tokens"], row["reasoning_tokens"]) == (cached, reasoning)
        assert row["cost_usd"] == pytest.approx(price(cached))
        assert row["price_source"] == f"genai-prices {importlib.metadata.version('genai-prices')}"
    assert "What is the answer?" in tool_call["input_content"]
    assert "lookup" in tool_call["output_content"] + tool_call["tool_calls"]
    assert "lookup result: 42" in answer["input_content"]
    assert fake_openai.ANSWER in answer["output_content"]
    assert "Stream it." in stream["input_content"] and fake_openai.ANSWER in stream["output_content"]
    if stream_usage:
        assert stream["input_tokens"] == 100 and stream["cost_usd"] > 0
    else:  # no usage recorded: the cost is unknown, not free
        assert stream["input_tokens"] == 0 and stream["cost_usd"] is None
    assert unknown["model"] == "omium-unknown-model" and unknown["input_tokens"] == 100
    assert unknown["cost_usd"] is None and unknown["price_source"] == ""
    (embedding,) = by_operation(rows, "embeddings")
    assert (embedding["model"], embedding["input_tokens"], embedding["agent"]) == (
        "text-embedding-3-small",
        fake_openai.EMBEDDING_TOKENS,
        "researcher",
    )
    assert embedding["cost_usd"] == pytest.approx(
        float(calc_price(Usage(input_tokens=8), "text-embedding-3-small", provider_id="openai").total_price)
    )


def edges(warehouse: ClickHouseWarehouse, rows: list[dict[str, Any]]) -> set[tuple[str, str, str]]:
    """The run edges the ``run_edges`` asset builds from these normalised spans."""
    frame = spans.load_day(warehouse, rows[0]["day"])
    return {(e["source"], e["target"], e["kind"]) for e in features.run_edges(frame)}


def test_openinference_openai(run_scenario: Runner) -> None:
    """openinference-instrumentation-openai, with OpenInference's @tracer.agent and session/user context."""
    rows = run_scenario("openinference-openai")
    assert_openai_calls(rows, cached=40, reasoning=5)
    (agent,) = by_operation(rows, "invoke_agent")
    assert agent["agent"] == "researcher"
    # Flattened messages read one line each, as events and legacy prompts do.
    assert by_operation(rows, "chat")[0]["input_content"] == QUESTION


def test_opentelemetry_instrumentation_openai(run_scenario: Runner) -> None:
    """OpenLLMetry's opentelemetry-instrumentation-openai, current release (GenAI attributes)."""
    rows = run_scenario("openllmetry-openai")
    assert importlib.metadata.version("opentelemetry-instrumentation-openai").startswith("0.62.")
    assert_openai_calls(rows, cached=40, reasoning=5)
    stream = by_operation(rows, "chat")[2]
    assert stream["reasoning_tokens"] == 0  # the release does not record it from a stream's usage


@pytest.mark.skipif(
    not LEGACY_PYTHON.exists() and not os.environ.get("CI"),
    reason="no .venv-openllmetry-legacy (CI makes it: see .ci/run)",
)
def test_opentelemetry_instrumentation_openai_legacy(run_scenario: Runner) -> None:
    """opentelemetry-instrumentation-openai 0.40.14: ``llm.request.type``, ``gen_ai.usage.prompt_tokens``
    and the flattened ``gen_ai.prompt.N.*`` / ``gen_ai.completion.N.*``."""
    rows = run_scenario("openllmetry-openai", python=LEGACY_PYTHON)
    assert_openai_calls(rows, cached=40, reasoning=0, stream_usage=False)
    tool_call, answer = by_operation(rows, "chat")[:2]
    assert tool_call["input_content"] == QUESTION
    assert tool_call["tool_calls"] == "lookup"
    assert answer["output_content"] == f"assistant: {fake_openai.ANSWER}"


def test_traceloop_sdk(run_scenario: Runner) -> None:
    """traceloop-sdk's decorators and association properties around the OpenAI instrumentation."""
    rows = run_scenario("traceloop-sdk")
    (workflow,) = by_operation(rows, "invoke_workflow")
    (agent,) = by_operation(rows, "invoke_agent")
    (tool,) = by_operation(rows, "execute_tool")
    chats = by_operation(rows, "chat")
    assert (workflow["span_name"], workflow["agent"]) == ("support.workflow", "")
    assert agent["agent"] == "researcher"
    assert (tool["tool"], tool["agent"], tool["role"]) == ("lookup", "researcher", "tool")
    assert '"query": "omium"' in tool["input_content"] and "lookup result: 42" in tool["output_content"]
    assert len(chats) == 2
    for row in rows:
        assert (row["session"], row["user"]) == (SESSION, USER)
    for row in chats:
        assert (row["agent"], row["model"], row["provider"]) == ("researcher", "gpt-4o-mini", "openai")
        assert row["cost_usd"] == pytest.approx(price(40))
    assert fake_openai.ANSWER in chats[1]["output_content"]


def test_openinference_langchain_langgraph(run_scenario: Runner) -> None:
    """openinference-instrumentation-langchain on a two-node LangGraph with fake chat models: the
    node is the agent (from ``metadata``), the model calls inherit it, the thread is the session."""
    rows = run_scenario("openinference-langchain")
    chats = by_operation(rows, "chat")
    assert [r["agent"] for r in chats] == ["researcher", "writer"]
    nodes = {r["span_name"]: r for r in rows if r["span_name"] in ("researcher", "writer")}
    assert {n: r["agent"] for n, r in nodes.items()} == {"researcher": "researcher", "writer": "writer"}
    for row in chats:
        assert (row["input_tokens"], row["output_tokens"]) == (30, 7)
        # The fake model has no model name anyone prices: unknown, not free.
        assert row["cost_usd"] is None
    for row in rows:
        assert (row["session"], row["user"]) == (SESSION, USER)
    assert chats[0]["input_content"] == "user: What is the answer?"
    assert chats[0]["output_content"] == "assistant: Found: 42."
    assert chats[1]["output_content"] == "assistant: Report: the answer is 42."


def test_openinference_openai_agents(run_scenario: Runner, warehouse: ClickHouseWarehouse) -> None:
    """openinference-instrumentation-openai-agents: a triage agent hands off to a billing agent that
    uses a tool; the hand-off is an edge (``graph.node.parent_id``), the tool and calls are Billing's."""
    rows = run_scenario("openinference-openai-agents")
    # The SDK's trace root is an AGENT span named after the workflow: it names no agent.
    agents = {r["span_name"]: r["agent"] for r in by_operation(rows, "invoke_agent")}
    assert agents == {"Agent workflow": "", "Triage": "Triage", "Billing": "Billing"}
    (tool,) = [r for r in by_operation(rows, "execute_tool") if r["tool"] == "lookup"]
    assert (tool["agent"], tool["input_content"], tool["output_content"]) == (
        "Billing",
        '{"query": "omium"}',
        "lookup result: 42",
    )
    chats = by_operation(rows, "chat")
    assert [r["agent"] for r in chats] == ["Triage", "Billing", "Billing"]
    for row in chats:
        assert (row["model"], row["provider"], row["input_tokens"], row["output_tokens"]) == (
            "gpt-4o-mini",
            "openai",
            100,
            20,
        )
        assert row["cost_usd"] == pytest.approx(price(0))  # the package reports no cached tokens
    assert fake_openai.ANSWER in chats[-1]["output_content"]
    for row in rows:
        assert (row["session"], row["user"]) == (SESSION, USER)
    found = edges(warehouse, rows)
    assert ("Triage", "Billing", "handoff") in found
    assert not {e for e in found if "Agent workflow" in e[:2]}


def test_openai_v2_default_events(run_scenario: Runner) -> None:
    """opentelemetry-instrumentation-openai-v2 by default: content only in GenAI event logs
    (``gen_ai.*.message``, ``gen_ai.choice``), joined to their spans: the same text as attributes."""
    rows = run_scenario("openai-v2", OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT="true")
    assert_openai_calls(rows, cached=0, reasoning=0)
    tool_call, answer, stream, _ = by_operation(rows, "chat")
    assert tool_call["input_content"] == QUESTION
    assert answer["input_content"].endswith("tool: lookup result: 42")
    assert answer["output_content"] == f"assistant: {fake_openai.ANSWER}"
    assert stream["output_content"] == f"assistant: {fake_openai.ANSWER}"


@pytest.mark.parametrize("mode", ["span_only", "event_only"])
def test_openai_v2_latest_experimental(run_scenario: Runner, mode: str) -> None:
    """The latest experimental conventions: the messages as span attributes or as one
    ``gen_ai.client.inference.operation.details`` event read the same."""
    rows = run_scenario(
        "openai-v2",
        OTEL_SEMCONV_STABILITY_OPT_IN="gen_ai_latest_experimental",
        OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=mode,
    )
    assert_openai_calls(rows, cached=0, reasoning=0)
    tool_call = by_operation(rows, "chat")[0]
    # The package orders the JSON's keys differently on the span and the event: the same messages.
    assert json.loads(tool_call["input_content"]) == [
        {"role": "system", "parts": [{"type": "text", "content": "You are Omium's test agent."}]},
        {"role": "user", "parts": [{"type": "text", "content": "What is the answer?"}]},
    ]
    assert json.loads(tool_call["output_content"])[0]["parts"][0]["name"] == "lookup"


def test_opentelemetry_instrumentation_openai_agents(run_scenario: Runner, warehouse: ClickHouseWarehouse) -> None:
    """OpenLLMetry's opentelemetry-instrumentation-openai-agents (0.62) on the same triage -> billing
    run: agents, tools, models and prompts land. What the release itself does not record is
    pinned here so a release that starts recording it shows up: no usage on its chat-completions
    spans (so no cost), no completions, and a hand-off span whose target is "unknown" (so no edge)."""
    rows = run_scenario("openllmetry-openai-agents")
    agents = {r["span_name"]: r["agent"] for r in by_operation(rows, "invoke_agent")}
    assert agents == {"Triage.agent": "Triage", "Billing.agent": "Billing"}
    (workflow,) = by_operation(rows, "invoke_workflow")
    assert workflow["agent"] == ""
    (tool,) = by_operation(rows, "execute_tool")
    assert (tool["tool"], tool["agent"], tool["input_content"], tool["output_content"]) == (
        "lookup",
        "Billing",
        '{"query": "omium"}',
        "lookup result: 42",
    )
    chats = by_operation(rows, "chat")
    assert [(r["agent"], r["model"], r["provider"]) for r in chats] == [
        ("Triage", "gpt-4o-mini", "openai"),
        ("Billing", "gpt-4o-mini", "openai"),
        ("Billing", "gpt-4o-mini", "openai"),
    ]
    assert "Why was I charged twice?" in chats[0]["input_content"]
    assert [(r["input_tokens"], r["cost_usd"], r["output_content"]) for r in chats] == [(0, None, "")] * 3
    (handoff,) = by_operation(rows, "handoff")
    assert (handoff["agent"], handoff["span_name"]) == ("Triage", "Triage → unknown.handoff")
    assert not {e for e in edges(warehouse, rows) if e[2] == "handoff"}


def test_opentelemetry_instrumentation_openai_events(run_scenario: Runner) -> None:
    """OpenLLMetry 0.62 with ``use_attributes=False``: prompts and completions only as GenAI event
    logs, read as the same lines. The release emits a stream's ``gen_ai.choice`` after the stream's
    span has ended, under its parent (the agent span): pinned here."""
    rows = run_scenario("openllmetry-openai-events")
    tool_call, answer, stream, unknown = by_operation(rows, "chat")
    assert tool_call["input_content"] == QUESTION
    assert tool_call["output_content"].startswith("assistant: [")
    assert '"name":"lookup"' in tool_call["output_content"]
    assert answer["input_content"].endswith("\ntool: lookup result: 42")
    assert answer["output_content"] == unknown["output_content"] == f"assistant: {fake_openai.ANSWER}"
    assert stream["input_content"] == "user: Stream it." and stream["output_content"] == ""
    (agent,) = by_operation(rows, "invoke_agent")
    assert agent["output_content"] == f"assistant: {fake_openai.ANSWER}"
    for row in (tool_call, answer, stream):
        assert (row["agent"], row["session"], row["user"]) == ("researcher", SESSION, USER)
        assert row["cost_usd"] == pytest.approx(price(40))
    assert unknown["cost_usd"] is None
