"""Normalisation by convention: spans as each instrumentation writes them (attribute names taken
from the packages' sources) read alike in ``omium_normalized_spans``; agents are inherited,
hand-offs found, costs priced (unknown models NULL)."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest

from omium import conventions
from omium.pipelines import features, prices, spans
from omium.warehouse import ClickHouseWarehouse

DAY = dt.date(2026, 3, 2)
T0 = dt.datetime(2026, 3, 2, 10, tzinfo=dt.UTC)
COLUMNS = [
    "Timestamp",
    "TraceId",
    "SpanId",
    "ParentSpanId",
    "SpanName",
    "ServiceName",
    "SpanAttributes",
    "Duration",
    "StatusCode",
]


def insert(
    warehouse: ClickHouseWarehouse, trace: str, rows: list[tuple[str, str, str, dict[str, Any]]]
) -> None:
    """Spans (span id, parent id, name, attributes) of one trace, a millisecond apart."""
    data = [
        [
            T0 + dt.timedelta(milliseconds=i),
            trace.ljust(32, "0"),
            sid,
            parent,
            name,
            "svc",
            {k: str(v) for k, v in attrs.items()},
            1_000_000,
            "Unset",
        ]
        for i, (sid, parent, name, attrs) in enumerate(rows)
    ]
    warehouse.insert("otel_traces", [list(c) for c in zip(*data, strict=True)], COLUMNS)


def normalised(warehouse: ClickHouseWarehouse) -> dict[str, dict[str, Any]]:
    spans.normalise_day(warehouse, DAY)
    return {r["span_id"]: r for r in spans.load_day(warehouse, DAY).iter_rows(named=True)}


def test_every_field_has_rows_and_every_row_renders() -> None:
    names = {r.field for r in conventions.CONVENTIONS}
    assert names <= set(conventions.TEXT_FIELDS + conventions.TOKEN_FIELDS)
    assert {
        "agent",
        "operation",
        "tool",
        "model",
        "provider",
        "session",
        "user",
        "input_tokens",
        "output_tokens",
        "cached_tokens",
        "reasoning_tokens",
        "input_content",
        "output_content",
        "handoff_from",
    } <= names
    for name in conventions.TEXT_FIELDS + conventions.TOKEN_FIELDS:
        assert conventions.field_sql(name)


def test_a_convention_is_rows(warehouse: ClickHouseWarehouse) -> None:
    """Adding a convention is adding rows: a made-up one is read once its rows are in the table."""
    mine = conventions.Conventions(
        (
            *conventions.CONVENTIONS,
            conventions.Mapping("agent", "acme.actor", "acme"),
            conventions.Mapping(
                "operation", "acme.kind", "acme", (conventions.Values((("think", "chat"),)),)
            ),
        )
    )
    insert(warehouse, "a1", [("s1", "", "x", {"acme.actor": "Planner", "acme.kind": "think"})])
    row = warehouse.query_rows(
        f"SELECT {mine.field_sql('agent')} AS agent, {mine.field_sql('operation')} AS op FROM otel_traces"
    )[0]
    assert row == {"agent": "Planner", "op": "chat"}


def test_genai_current_and_deprecated(warehouse: ClickHouseWarehouse) -> None:
    insert(
        warehouse,
        "g1",
        [
            (
                "a1",
                "",
                "invoke_agent Planner",
                {
                    "gen_ai.operation.name": "invoke_agent",
                    "gen_ai.agent.name": "Planner",
                    "gen_ai.conversation.id": "conv-1",
                    "enduser.id": "u-9",
                },
            ),
            (
                "c1",
                "a1",
                "chat gpt-4o-mini",
                {
                    "gen_ai.operation.name": "chat",
                    "gen_ai.provider.name": "openai",
                    "gen_ai.request.model": "gpt-4o-mini",
                    "gen_ai.response.model": "gpt-4o-mini-2024-07-18",
                    "gen_ai.usage.input_tokens": 1000,
                    "gen_ai.usage.output_tokens": 200,
                    "gen_ai.usage.cache_read.input_tokens": 400,
                    "gen_ai.usage.reasoning.output_tokens": 50,
                    "gen_ai.input.messages": json.dumps(
                        [{"role": "user", "parts": [{"type": "text", "content": "hi"}]}]
                    ),
                    "gen_ai.output.messages": json.dumps(
                        [{"role": "assistant", "parts": [{"type": "text", "content": "hello"}]}]
                    ),
                },
            ),
            (
                "t1",
                "a1",
                "execute_tool search",
                {
                    "gen_ai.operation.name": "execute_tool",
                    "gen_ai.tool.name": "search",
                    "gen_ai.tool.call.arguments": '{"q": "x"}',
                    "gen_ai.tool.call.result": "found",
                },
            ),
            (
                "d1",
                "",
                "chat",
                {
                    "gen_ai.system": "az.ai.openai",
                    "gen_ai.request.model": "gpt-4o",
                    "gen_ai.usage.prompt_tokens": 30,
                    "gen_ai.usage.completion_tokens": 7,
                },
            ),
        ],
    )
    rows = normalised(warehouse)
    chat, tool, old = rows["c1"], rows["t1"], rows["d1"]
    assert (chat["agent"], chat["operation"], chat["provider"], chat["model"]) == (
        "Planner",
        "chat",
        "openai",
        "gpt-4o-mini-2024-07-18",
    )
    assert (chat["input_tokens"], chat["output_tokens"], chat["cached_tokens"], chat["reasoning_tokens"]) == (
        1000,
        200,
        400,
        50,
    )
    assert (chat["session"], chat["user"], chat["role"]) == ("conv-1", "u-9", "assistant")
    assert "hi" in chat["input_content"] and "hello" in chat["output_content"]
    assert chat["cost_usd"] is not None and chat["cost_usd"] > 0
    assert chat["price_source"].startswith("genai-prices ")
    # gpt-4o-mini: 600 input at $0.15/M, 400 cached at $0.075/M, 200 output at $0.6/M.
    assert chat["cost_usd"] == pytest.approx((600 * 0.15 + 400 * 0.075 + 200 * 0.6) / 1e6)
    assert (tool["agent"], tool["operation"], tool["tool"], tool["role"]) == (
        "Planner",
        "execute_tool",
        "search",
        "tool",
    )
    assert (tool["input_content"], tool["output_content"], tool["cost_usd"]) == ('{"q": "x"}', "found", None)
    assert (old["provider"], old["input_tokens"], old["output_tokens"]) == ("azure.ai.openai", 30, 7)


def test_openinference_langgraph_agents_and_handoffs(warehouse: ClickHouseWarehouse) -> None:
    meta = {"langgraph_node": "researcher", "thread_id": "th-1", "langgraph_step": 1}
    insert(
        warehouse,
        "o1",
        [
            ("g", "", "LangGraph", {"openinference.span.kind": "CHAIN", "input.value": "question"}),
            ("n1", "g", "researcher", {"openinference.span.kind": "CHAIN", "metadata": json.dumps(meta)}),
            (
                "l1",
                "n1",
                "ChatOpenAI",
                {
                    "openinference.span.kind": "LLM",
                    "llm.model_name": "gpt-4o-mini",
                    "llm.provider": "openai",
                    "llm.system": "openai",
                    "llm.token_count.prompt": 12,
                    "llm.token_count.completion": 3,
                    "llm.token_count.prompt_details.cache_read": 2,
                    "llm.token_count.completion_details.reasoning": 1,
                    "llm.input_messages.0.message.role": "system",
                    "llm.input_messages.0.message.content": "be brief",
                    "llm.input_messages.1.message.role": "user",
                    "llm.input_messages.1.message.content": "what?",
                    "llm.output_messages.0.message.role": "assistant",
                    "llm.output_messages.0.message.content": "this",
                    "session.id": "sess-7",
                    "user.id": "alice",
                },
            ),
            (
                "e1",
                "g",
                "Embeddings",
                {"openinference.span.kind": "EMBEDDING", "embedding.model_name": "text-embedding-3-small"},
            ),
            # OpenAI Agents SDK through OpenInference: a hand-off sets the next agent's graph parent.
            (
                "a1",
                "g",
                "Triage",
                {"openinference.span.kind": "AGENT", "graph.node.id": "Triage", "agent.name": "Triage"},
            ),
            (
                "h1",
                "a1",
                "handoff",
                {"openinference.span.kind": "TOOL", "input.value": "Triage", "output.value": "Billing"},
            ),
            (
                "a2",
                "g",
                "Billing",
                {
                    "openinference.span.kind": "AGENT",
                    "graph.node.id": "Billing",
                    "agent.name": "Billing",
                    "graph.node.parent_id": "Triage",
                },
            ),
            ("x1", "a2", "lookup", {"openinference.span.kind": "TOOL", "tool.name": "lookup"}),
        ],
    )
    rows = normalised(warehouse)
    llm = rows["l1"]
    assert (rows["n1"]["agent"], llm["agent"], rows["g"]["agent"]) == ("researcher", "researcher", "")
    assert (llm["operation"], llm["model"], llm["provider"]) == ("chat", "gpt-4o-mini", "openai")
    assert (llm["input_tokens"], llm["output_tokens"], llm["cached_tokens"], llm["reasoning_tokens"]) == (
        12,
        3,
        2,
        1,
    )
    assert llm["input_content"] == "system: be brief\nuser: what?"
    assert llm["output_content"] == "assistant: this"
    assert (llm["session"], llm["user"]) == ("sess-7", "alice")
    # The rest of the trace takes the trace's session (LangGraph's thread id on the node is first).
    assert rows["n1"]["session"] == "th-1" and rows["g"]["session"] == "sess-7"
    assert (rows["g"]["operation"], rows["e1"]["operation"], rows["e1"]["model"]) == (
        "invoke_workflow",
        "embeddings",
        "text-embedding-3-small",
    )
    assert (rows["a2"]["operation"], rows["x1"]["agent"], rows["x1"]["operation"]) == (
        "invoke_agent",
        "Billing",
        "execute_tool",
    )
    assert rows["a2"]["producer_span_id"] == "a1"
    edges = {
        (e["source"], e["target"], e["kind"]) for e in features.run_edges(spans.load_day(warehouse, DAY))
    }
    assert ("Triage", "Billing", "handoff") in edges


def test_openllmetry_traceloop_current_and_legacy(warehouse: ClickHouseWarehouse) -> None:
    assoc = {
        "traceloop.association.properties.session_id": "s-42",
        "traceloop.association.properties.user_id": "bob",
    }
    insert(
        warehouse,
        "t1",
        [
            (
                "w",
                "",
                "support.workflow",
                {
                    "traceloop.span.kind": "workflow",
                    "traceloop.entity.name": "support",
                    "traceloop.entity.input": '{"q": 1}',
                    **assoc,
                },
            ),
            (
                "ag",
                "w",
                "writer.agent",
                {"traceloop.span.kind": "agent", "traceloop.entity.name": "writer", **assoc},
            ),
            (
                "tk",
                "ag",
                "draft.task",
                {"traceloop.span.kind": "task", "traceloop.entity.name": "draft", **assoc},
            ),
            (
                "tl",
                "ag",
                "search.tool",
                {"traceloop.span.kind": "tool", "traceloop.entity.name": "search", **assoc},
            ),
            # opentelemetry-instrumentation-openai 0.2x-0.4x: llm.request.type and the flattened prompt.
            (
                "c",
                "tk",
                "openai.chat",
                {
                    "llm.request.type": "chat",
                    "gen_ai.system": "OpenAI",
                    "gen_ai.request.model": "gpt-4o-mini",
                    "gen_ai.usage.prompt_tokens": 100,
                    "gen_ai.usage.completion_tokens": 20,
                    "llm.usage.total_tokens": 120,
                    "gen_ai.prompt.0.role": "system",
                    "gen_ai.prompt.0.content": "sys",
                    "gen_ai.prompt.1.role": "user",
                    "gen_ai.prompt.1.content": "ask",
                    "gen_ai.completion.0.role": "assistant",
                    "gen_ai.completion.0.content": "answer",
                    **assoc,
                },
            ),
            (
                "e",
                "tk",
                "openai.embeddings",
                {
                    "llm.request.type": "embedding",
                    "gen_ai.system": "openai",
                    "gen_ai.request.model": "made-up-embedder",
                    "gen_ai.usage.prompt_tokens": 5,
                },
            ),
        ],
    )
    rows = normalised(warehouse)
    assert [rows[s]["operation"] for s in ("w", "ag", "tk", "tl", "c", "e")] == [
        "invoke_workflow",
        "invoke_agent",
        "invoke_workflow",
        "execute_tool",
        "chat",
        "embeddings",
    ]
    chat = rows["c"]
    assert (chat["agent"], chat["provider"], chat["model"], chat["input_tokens"], chat["output_tokens"]) == (
        "writer",
        "openai",
        "gpt-4o-mini",
        100,
        20,
    )
    assert (chat["session"], chat["user"]) == ("s-42", "bob")
    assert chat["input_content"] == "system: sys\nuser: ask" and chat["output_content"] == "assistant: answer"
    assert chat["cost_usd"] > 0
    assert rows["tl"]["tool"] == "search" and rows["w"]["input_content"] == '{"q": 1}'
    # An unknown model has an unknown cost, not a free one.
    assert (rows["e"]["cost_usd"], rows["e"]["price_source"], rows["e"]["session"]) == (None, "", "s-42")


def test_vercel_ai_sdk(warehouse: ClickHouseWarehouse) -> None:
    usage = {"ai.usage.promptTokens": 50, "ai.usage.completionTokens": 10}
    insert(
        warehouse,
        "v1",
        [
            (
                "o",
                "",
                "ai.generateText",
                {
                    "ai.operationId": "ai.generateText",
                    "ai.telemetry.functionId": "helper",
                    "ai.model.id": "gpt-4o-mini",
                    "ai.model.provider": "openai.chat",
                    "ai.telemetry.metadata.sessionId": "vs",
                    "ai.telemetry.metadata.userId": "vu",
                    "ai.prompt": '{"prompt":"hey"}',
                    "ai.response.text": "yo",
                    **usage,
                },
            ),
            (
                "g",
                "o",
                "ai.generateText.doGenerate",
                {
                    "ai.operationId": "ai.generateText.doGenerate",
                    "ai.model.id": "gpt-4o-mini",
                    "ai.model.provider": "openai.chat",
                    "ai.response.model": "gpt-4o-mini",
                    **usage,
                },
            ),
            (
                "t",
                "o",
                "ai.toolCall",
                {
                    "ai.operationId": "ai.toolCall",
                    "ai.toolCall.name": "weather",
                    "ai.toolCall.args": '{"city":"Paris"}',
                    "ai.toolCall.result": "sunny",
                },
            ),
        ],
    )
    rows = normalised(warehouse)
    assert (rows["o"]["operation"], rows["g"]["operation"], rows["t"]["operation"]) == (
        "invoke_workflow",
        "chat",
        "execute_tool",
    )
    # Usage counts once: on the provider call, not again on the span that sums its steps.
    assert (rows["o"]["input_tokens"], rows["g"]["input_tokens"], rows["g"]["output_tokens"]) == (0, 50, 10)
    assert (rows["g"]["provider"], rows["g"]["agent"], rows["g"]["session"], rows["g"]["user"]) == (
        "openai",
        "helper",
        "vs",
        "vu",
    )
    assert (rows["t"]["tool"], rows["t"]["input_content"], rows["t"]["output_content"]) == (
        "weather",
        '{"city":"Paris"}',
        "sunny",
    )


def test_agent_parentage_is_a_handoff_and_omium_spans_unchanged(warehouse: ClickHouseWarehouse) -> None:
    insert(
        warehouse,
        "p1",
        [
            (
                "m",
                "",
                "invoke_agent Manager",
                {"gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": "Manager"},
            ),
            ("s", "m", "invoke_agent Specialist", {"gen_ai.operation.name": "invoke_agent"}),
            ("c", "s", "chat", {"gen_ai.operation.name": "chat"}),
            (
                "k",
                "m",
                "step",
                {
                    "omium.step_kind": "llm",
                    "omium.role": "planner",
                    "omium.content": "plan",
                    "omium.step_index": 0,
                },
            ),
        ],
    )
    rows = normalised(warehouse)
    assert rows["s"]["agent"] == "Specialist"  # from the span name
    assert (rows["s"]["producer_span_id"], rows["c"]["agent"], rows["c"]["producer_span_id"]) == (
        "m",
        "Specialist",
        "",
    )
    assert (rows["k"]["operation"], rows["k"]["role"], rows["k"]["content"], rows["k"]["agent"]) == (
        "chat",
        "planner",
        "plan",
        "Manager",
    )


def test_price_table_tiers_and_unknowns() -> None:
    table = prices.table(
        [("openai", "gpt-4o-mini"), ("anthropic", "claude-sonnet-4-5"), ("openai", "nope-1"), ("", "")]
    )
    assert table.keys == ["openai|gpt-4o-mini", "anthropic|claude-sonnet-4-5"]
    assert table.starts[0] == [0] and len(table.starts[1]) >= 2
    assert table.input[0][0] == pytest.approx(0.15e-6) and table.cached[0][0] == pytest.approx(0.075e-6)
    assert table.input[1][1] > table.input[1][0]  # the long-context tier costs more


def test_handoff_spans_name_their_target(warehouse: ClickHouseWarehouse) -> None:
    """Omium's Agents SDK adapter and OpenLLMetry's openai-agents instrumentation record a hand-off as
    a span naming source and target; the target agent's next span is handed off by it."""
    insert(warehouse, "h1", [
        ("t", "", "invoke_agent Triage", {"gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": "Triage"}),
        ("h", "t", "handoff Triage -> Billing", {"gen_ai.agent.name": "Triage", "omium.handoff.from": "Triage",
                                                  "omium.handoff.to": "Billing"}),
        ("b", "", "invoke_agent Billing", {"gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": "Billing"}),
        ("h2", "b", "Billing → Refunds.handoff", {"traceloop.span.kind": "handoff", "gen_ai.operation.name": "handoff",
                                                  "gen_ai.agent.name": "Billing", "gen_ai.handoff.from_agent": "Billing",
                                                  "gen_ai.handoff.to_agent": "Refunds"}),
        ("r", "", "Refunds.agent", {"gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": "Refunds"}),
    ])
    rows = normalised(warehouse)
    assert (rows["b"]["producer_span_id"], rows["r"]["producer_span_id"], rows["t"]["producer_span_id"]) == (
        "h", "h2", "")
    found = {(e["source"], e["target"], e["kind"]) for e in features.run_edges(spans.load_day(warehouse, DAY))}
    assert {("Triage", "Billing", "handoff"), ("Billing", "Refunds", "handoff")} <= found
