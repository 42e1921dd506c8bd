"""The SDK's traces become OpenTelemetry spans with the GenAI conventions, and land in otel_traces."""

from __future__ import annotations

import asyncio
from typing import Any

from agents import Agent, Model, ModelResponse, Runner, Usage, function_tool, generation_span, trace
from agents.testing import ScriptedModel, assistant_message, function_call
from agents.tool_guardrails import ToolGuardrailFunctionOutput, tool_input_guardrail
from agents.tracing import get_trace_provider
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

import omium
from omium.adapters.openai_agents import OmiumTracingProcessor, agent_workflow
from omium.sdk import tracing
from omium.testing import Runtime, runtime
from omium.warehouse import ClickHouseWarehouse
from omium.warehouse.span_exporter import WarehouseSpanExporter
from tests.adapters.openai_agents import flows


def _named(spans: list[ReadableSpan]) -> dict[str, list[ReadableSpan]]:
    found: dict[str, list[ReadableSpan]] = {}
    for span in sorted(spans, key=lambda s: s.start_time or 0):
        found.setdefault(span.name, []).append(span)
    return found


def _parent(span: ReadableSpan, spans: list[ReadableSpan]) -> ReadableSpan:
    assert span.parent is not None, span.name
    (parent,) = [s for s in spans if s.context.span_id == span.parent.span_id]
    return parent


def test_only_omiums_processor_is_registered(processor: OmiumTracingProcessor) -> None:
    # The SDK's default processor (its exporter uploads to OpenAI) is replaced, not joined.
    assert get_trace_provider()._multi_processor._processors == (processor,)  # type: ignore[attr-defined]


def test_multi_agent_run_is_traced_under_its_omium_run(rt: Runtime) -> None:
    triage, _ = flows.support([flows.HANDOFF, flows.LOOKUP, flows.ANSWER])
    result = omium.run(agent_workflow(triage, name="support"), "Jane was charged twice", run_id="traced")
    assert result == "Jane is premium; refund of 42.00 sorted."
    spans = list(rt.spans.get_finished_spans())
    found = _named(spans)
    root = found["invoke_workflow support"][0]
    assert all(s.attributes["omium.run_id"] == "traced" for s in spans)  # type: ignore[index]
    # Agents hang under the run; their turns under them; model and tool calls under the turns.
    triage_span, billing_span = found["invoke_agent triage"][0], found["invoke_agent billing"][0]
    assert _parent(triage_span, spans) is root and _parent(billing_span, spans) is root
    assert billing_span.attributes["gen_ai.operation.name"] == "invoke_agent"  # type: ignore[index]
    assert billing_span.attributes["openai_agents.tools"] == ("lookup_account",)  # type: ignore[index]
    tool = found["execute_tool lookup_account"][0]
    assert tool.attributes["gen_ai.tool.name"] == "lookup_account"  # type: ignore[index]
    assert tool.attributes["gen_ai.agent.name"] == "billing"  # type: ignore[index]
    turn = _parent(tool, spans)
    assert turn.name == "turn billing" and _parent(turn, spans) is billing_span
    chats = found["chat ScriptedModel"]
    assert len(chats) == 3 and [c.attributes["gen_ai.agent.name"] for c in chats] == [  # type: ignore[index]
        "triage",
        "billing",
        "billing",
    ]
    assert all(c.attributes["gen_ai.operation.name"] == "chat" for c in chats)  # type: ignore[index]
    assert "gen_ai.usage.input_tokens" in chats[0].attributes  # type: ignore[operator]
    # The hand-off: the SDK's span, with Omium's validated send and acknowledgement inside.
    handoff = found["handoff triage -> billing"][0]
    assert handoff.attributes["omium.handoff.from"] == "triage"  # type: ignore[index]
    assert handoff.attributes["omium.handoff.to"] == "billing"  # type: ignore[index]
    assert _parent(handoff, spans).name == "turn triage"
    send = found["handoff_send triage->billing"][0]
    assert _parent(send, spans) is handoff and send.attributes["omium.handoff.verdict"] == "sent"  # type: ignore[index]
    assert found["handoff_receive triage->billing"][0].attributes["omium.handoff.verdict"] == "acked"  # type: ignore[index]
    # Each recorded call is one span: the SDK's own generation/function spans were folded into them.
    assert sorted(
        s.attributes.get("omium.step_index", -1) for s in spans if "omium.step_index" in s.attributes
    ) == [  # type: ignore[union-attr, operator]
        0,
        1,
        2,
        3,
        4,
        5,
    ]


def test_outside_an_omium_run_the_trace_is_the_root() -> None:
    @function_tool
    def flaky(order: str) -> str:
        """Fails."""
        raise ValueError(f"no order {order}")

    model = ScriptedModel(
        [[function_call("flaky", {"order": "o-1"}, call_id="f1")], [assistant_message("sorry")]],
        emit_traces=True,
    )
    agent: Agent[Any] = Agent(name="clerk", model=model, tools=[flaky])
    with runtime() as test_runtime:

        async def main() -> None:
            with trace("orders", group_id="conversation-7", metadata={"omium.run_id": "orders-1"}):
                await Runner.run(agent, "where is o-1?")

        asyncio.run(main())
        spans = list(test_runtime.spans.get_finished_spans())
    found = _named(spans)
    root = found["invoke_workflow orders"][0]
    assert root.parent is None
    assert root.attributes["gen_ai.conversation.id"] == "conversation-7"  # type: ignore[index]
    assert {s.attributes["omium.run_id"] for s in spans} == {"orders-1"}  # type: ignore[index]
    tool = found["execute_tool flaky"][0]
    assert tool.status.status_code.name == "ERROR"
    assert tool.attributes["error.type"]  # type: ignore[index]
    assert tool.attributes["gen_ai.tool.call.arguments"] == '{"order":"o-1"}'  # type: ignore[index]
    assert found["chat"][0].attributes["gen_ai.operation.name"] == "chat"  # type: ignore[index]
    assert _parent(found["invoke_agent clerk"][0], spans) is root


def test_spans_land_in_otel_traces(rt: Runtime, warehouse: ClickHouseWarehouse) -> None:
    provider: Any = tracing._provider
    provider.add_span_processor(SimpleSpanProcessor(WarehouseSpanExporter(warehouse)))
    triage, _ = flows.support([flows.HANDOFF, flows.LOOKUP, flows.ANSWER])
    omium.run(agent_workflow(triage, name="support"), "Jane was charged twice", run_id="in-warehouse")
    rows = warehouse.query_rows(
        "SELECT SpanId, ParentSpanId, SpanName, SpanAttributes['gen_ai.agent.name'] AS agent, "
        "SpanAttributes['gen_ai.operation.name'] AS operation FROM otel_traces FINAL "
        "WHERE RunId = {r:String} ORDER BY Timestamp",
        {"r": "in-warehouse"},
    )
    by_id = {r["SpanId"]: r for r in rows}
    names = [r["SpanName"] for r in rows]
    assert names[0] == "invoke_workflow support"
    tool = next(r for r in rows if r["SpanName"] == "execute_tool lookup_account")
    assert (tool["agent"], tool["operation"]) == ("billing", "execute_tool")
    chain = []
    parent = tool["ParentSpanId"]
    while parent:
        chain.append(by_id[parent]["SpanName"])
        parent = by_id[parent]["ParentSpanId"]
    assert chain == ["turn billing", "invoke_agent billing", "invoke_workflow support"]
    agents = {r["agent"] for r in rows if r["operation"] == "invoke_agent"}
    assert agents == {"triage", "billing"}
    assert names.count("chat ScriptedModel") == 3


def test_a_recorded_tool_the_sdk_settles_without_calling_is_still_traced(rt: Runtime) -> None:
    @tool_input_guardrail
    def no_refunds_to_bob(data: Any) -> ToolGuardrailFunctionOutput:
        if "bob" in data.context.tool_arguments:
            return ToolGuardrailFunctionOutput.reject_content("no refunds to bob")
        return ToolGuardrailFunctionOutput.allow()

    @function_tool(tool_input_guardrails=[no_refunds_to_bob])
    def credit(customer: str) -> str:
        """Credit a customer."""
        raise AssertionError("the guardrail stops it")

    model = ScriptedModel(
        [[function_call("credit", {"customer": "bob"}, call_id="c1")], [assistant_message("no")]]
    )
    flow = agent_workflow(Agent(name="clerk", model=model, tools=[credit]), name="credits")
    omium.run(flow, "credit bob", run_id="guarded")
    assert [s.kind for s in rt.store.steps("guarded")] == ["llm", "llm"]  # nothing ran, nothing recorded
    (span,) = [s for s in rt.spans.get_finished_spans() if s.name == "execute_tool credit"]
    assert span.attributes["gen_ai.tool.call.result"] == "no refunds to bob"  # type: ignore[index]
    assert span.attributes["gen_ai.agent.name"] == "clerk"  # type: ignore[index]


USAGE = Usage(requests=1, input_tokens=120, output_tokens=30, total_tokens=150)


def _tokens(spans: list[ReadableSpan], key: str) -> int:
    return sum(int(s.attributes.get(key, 0)) for s in spans if s.attributes)  # type: ignore[arg-type]


def test_a_runs_tokens_are_counted_once(rt: Runtime) -> None:
    triage, model = flows.support([flows.HANDOFF, flows.LOOKUP, flows.ANSWER])
    model.set_default_usage(USAGE)
    omium.run(agent_workflow(triage, name="support"), "Jane was charged twice", run_id="tokens")
    spans = list(rt.spans.get_finished_spans())
    turns = [s for s in spans if s.name.startswith("turn ")]
    assert len(turns) == 3
    # Tokens sit on the chat spans alone: a turn's total would count them a second time.
    assert not any(key.startswith("gen_ai.usage.") for turn in turns for key in turn.attributes or {})
    assert '"input_tokens": 120' in str(turns[0].attributes["openai_agents.turn.usage"])  # type: ignore[index]
    assert _tokens(spans, "gen_ai.usage.input_tokens") == 3 * 120 == len(model.calls) * 120
    assert _tokens(spans, "gen_ai.usage.output_tokens") == 3 * 30


class MeteredModel(Model):
    """Answers "hello", reporting its usage on a generation span as the SDK's OpenAI models do."""

    async def get_response(self, *args: Any, **kwargs: Any) -> ModelResponse:
        usage = {"input_tokens": USAGE.input_tokens, "output_tokens": USAGE.output_tokens}
        with generation_span(model="metered", usage=usage):
            return ModelResponse(output=[assistant_message("hello")], usage=USAGE, response_id=None)

    def stream_response(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError


def test_tokens_are_counted_once_outside_an_omium_run_too() -> None:
    agent: Agent[Any] = Agent(name="greeter", model=MeteredModel())
    with runtime() as test_runtime:
        result = asyncio.run(Runner.run(agent, "hi"))
        spans = list(test_runtime.spans.get_finished_spans())
    assert [s.name for s in spans if s.name.startswith("turn ")] == ["turn greeter"]
    assert [s.name for s in spans if "gen_ai.usage.input_tokens" in (s.attributes or {})] == ["chat metered"]
    assert _tokens(spans, "gen_ai.usage.input_tokens") == result.context_wrapper.usage.input_tokens == 120
    assert _tokens(spans, "gen_ai.usage.output_tokens") == result.context_wrapper.usage.output_tokens == 30
