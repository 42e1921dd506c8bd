"""How an Agents SDK span reads as an OpenTelemetry span: its name, kind and GenAI attributes.

What is known when the SDK span starts (:func:`describe_start`) opens the OpenTelemetry span;
what the end adds — the model and usage of a generation, a tool's output, a hand-off's target,
an error — is set before it closes (:func:`describe_end`, :func:`set_error`). Prompt and tool
contents follow :data:`omium.sdk.llm.CAPTURE_CONTENT`.
"""

from __future__ import annotations

from typing import Any

from agents.tracing.span_data import (
    AgentSpanData,
    CustomSpanData,
    FunctionSpanData,
    GenerationSpanData,
    GuardrailSpanData,
    HandoffSpanData,
    MCPListToolsSpanData,
    ResponseSpanData,
    SpanData,
    TurnSpanData,
)
from opentelemetry.trace import SpanKind, Status, StatusCode

from omium import semconv
from omium.adapters.genai import text, tokens
from omium.sdk import llm

PREFIX = "openai_agents"


def set_error(otel_span: Any, error: Any) -> None:
    """Status Error, ``error.type`` and the SDK's error data, from an SDK ``SpanError``."""
    message = str(error.get("message") or "error")
    data = error.get("data") or {}
    otel_span.set_status(Status(StatusCode.ERROR, message))
    otel_span.set_attribute(semconv.ERROR_TYPE, str(data.get("name") or data.get("error_type") or message))
    if data:
        otel_span.set_attribute(f"{PREFIX}.error.data", text(data))


def describe_start(data: SpanData) -> tuple[str, SpanKind, dict[str, Any]]:
    """The span name, kind and the attributes known when an SDK span starts."""
    if isinstance(data, AgentSpanData):
        return (
            f"invoke_agent {data.name}",
            SpanKind.INTERNAL,
            {
                semconv.GEN_AI_OPERATION_NAME: "invoke_agent",
                semconv.GEN_AI_AGENT_NAME: data.name,
            },
        )
    if isinstance(data, (GenerationSpanData, ResponseSpanData)):
        model = getattr(data, "model", None) or ""
        attributes: dict[str, Any] = {semconv.GEN_AI_OPERATION_NAME: "chat"}
        if model:
            attributes[semconv.GEN_AI_REQUEST_MODEL] = model
        if isinstance(data, ResponseSpanData):
            attributes[semconv.GEN_AI_PROVIDER_NAME] = "openai"
        return (f"chat {model}" if model else "chat", SpanKind.CLIENT, attributes)
    if isinstance(data, FunctionSpanData):
        return (
            f"execute_tool {data.name}",
            SpanKind.INTERNAL,
            {
                semconv.GEN_AI_OPERATION_NAME: "execute_tool",
                semconv.GEN_AI_TOOL_NAME: data.name,
                "gen_ai.tool.type": "function",
            },
        )
    if isinstance(data, HandoffSpanData):
        source = data.from_agent or ""
        return (
            f"handoff {source} -> {data.to_agent or '?'}",
            SpanKind.INTERNAL,
            {"omium.handoff.from": source, semconv.GEN_AI_AGENT_NAME: source},
        )
    if isinstance(data, TurnSpanData):
        return (
            f"turn {data.agent_name}",
            SpanKind.INTERNAL,
            {"omium.agents.turn": data.turn, semconv.GEN_AI_AGENT_NAME: data.agent_name},
        )
    if isinstance(data, GuardrailSpanData):
        return (f"guardrail {data.name}", SpanKind.INTERNAL, {"openinference.span.kind": "GUARDRAIL"})
    if isinstance(data, MCPListToolsSpanData):
        return (f"mcp_list_tools {data.server or ''}".strip(), SpanKind.CLIENT, {})
    if isinstance(data, CustomSpanData):
        return (data.name, SpanKind.INTERNAL, {})
    return (data.type, SpanKind.INTERNAL, {})


def describe_end(data: SpanData) -> tuple[str, dict[str, Any]]:
    """A better name (when the end knows more) and the attributes known when an SDK span ends."""
    capture = llm.CAPTURE_CONTENT
    attributes: dict[str, Any] = {}
    name = ""
    if isinstance(data, AgentSpanData):
        attributes[f"{PREFIX}.tools"] = list(data.tools or [])
        attributes[f"{PREFIX}.handoffs"] = list(data.handoffs or [])
        if data.output_type:
            attributes[f"{PREFIX}.output_type"] = data.output_type
    elif isinstance(data, GenerationSpanData):
        if data.model:
            name = f"chat {data.model}"
            attributes[semconv.GEN_AI_REQUEST_MODEL] = data.model
        attributes.update(tokens(data.usage))
        if capture and data.input:
            attributes[semconv.GEN_AI_INPUT_MESSAGES] = text(list(data.input))
        if capture and data.output:
            attributes[semconv.GEN_AI_OUTPUT_MESSAGES] = text(list(data.output))
    elif isinstance(data, ResponseSpanData):
        response = data.response
        if response is not None:
            name = f"chat {response.model}"
            attributes[semconv.GEN_AI_REQUEST_MODEL] = str(response.model)
            attributes[semconv.GEN_AI_RESPONSE_MODEL] = str(response.model)
            attributes["gen_ai.response.id"] = response.id
            attributes.update(tokens(response.usage))
        attributes.update(tokens(data.usage))
    elif isinstance(data, FunctionSpanData):
        if capture and data.input is not None:
            attributes["gen_ai.tool.call.arguments"] = text(data.input)
        if capture and data.output is not None:
            attributes["gen_ai.tool.call.result"] = text(data.output)
        if data.mcp_data:
            attributes[f"{PREFIX}.mcp"] = text(data.mcp_data)
    elif isinstance(data, HandoffSpanData):
        source, target = data.from_agent or "", data.to_agent or ""
        name = f"handoff {source} -> {target or '?'}"
        attributes.update({"omium.handoff.to": target, "omium.handoff.channel": f"{source}->{target}"})
    elif isinstance(data, TurnSpanData):
        # The turn's usage sums its chat spans': as gen_ai.usage.* it would count tokens twice.
        if data.usage:
            attributes[f"{PREFIX}.turn.usage"] = text(data.usage)
    elif isinstance(data, GuardrailSpanData):
        attributes[f"{PREFIX}.guardrail.triggered"] = data.triggered
    elif isinstance(data, CustomSpanData):
        attributes.update({f"{PREFIX}.data.{k}": text(v) for k, v in data.data.items()})
    return name, attributes


__all__ = ["PREFIX", "describe_end", "describe_start", "set_error", "text", "tokens"]
