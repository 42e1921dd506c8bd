"""Durable Agents SDK runs: model calls and function tools recorded by Omium, by position.

Inside an Omium run (``omium.run``, a ``@workflow``, or :func:`.agent_workflow`) every model
call of a :class:`DurableModel` and every call of a :func:`durable_tool` is a recorded call of
that run. Resuming the run (same run id) re-runs the agents: the calls recorded as completed
return their recorded results without executing, so a crashed run continues from its last
completed step, and no finished tool call or paid-for model call happens twice. Outside an
Omium run the wrappers simply call what they wrap.

:func:`durable` wraps an agent graph in place (its agents, the agents it hands off to, their
function tools and model instances); :func:`durable_run_config` wraps the models a ``RunConfig``
resolves by name.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import AsyncIterator
from contextlib import AbstractContextManager, nullcontext
from typing import Any

from agents import Agent, FunctionTool, Model, ModelProvider, ModelResponse, RunConfig
from agents.agent_output import AgentOutputSchemaBase
from agents.handoffs import Handoff
from agents.items import TResponseInputItem, TResponseStreamEvent
from agents.model_settings import ModelSettings
from agents.models.interface import ModelTracing
from agents.retry import ModelRetryAdvice, ModelRetryAdviceRequest
from agents.tool import Tool
from agents.tool_context import ToolContext
from agents.tracing import get_current_span
from agents.tracing.span_data import AgentSpanData, TurnSpanData
from agents.usage import deserialize_usage, serialize_usage
from openai.types.responses import ResponseOutputItem
from openai.types.responses.response_prompt_param import ResponsePromptParam
from opentelemetry import trace as otel_trace
from opentelemetry.trace import Status, StatusCode
from pydantic import TypeAdapter

from omium import semconv
from omium.adapters.openai_agents.tracing import (
    PREFIX,
    recorded_model_call,
    register_recorded_tool,
    sdk_span_as_parent,
)
from omium.sdk import llm
from omium.sdk.calls import CallDefinition, ainvoke
from omium.sdk.context import maybe_current
from omium.sdk.recording import acting_as, current_agent
from omium.sdk.retry import NO_RETRY, RetryPolicy

_OUTPUT_ITEM: TypeAdapter[Any] = TypeAdapter(ResponseOutputItem)
_DURABLE = "__omium_durable__"
# The SDK marks sync function tools on their invoker (it refuses timeouts for them).
_SYNC_MARKER = "__agents_sync_function_tool__"


def encode_response(response: ModelResponse) -> dict[str, Any]:
    """A model response as JSON-compatible data (what the recording keeps)."""
    return {
        "output": [
            item.model_dump(mode="json", by_alias=True, exclude_unset=True)
            if hasattr(item, "model_dump")
            else item
            for item in response.output
        ],
        "usage": serialize_usage(response.usage),
        "response_id": response.response_id,
        "request_id": response.request_id,
    }


def decode_response(data: dict[str, Any]) -> ModelResponse:
    """Inverse of :func:`encode_response`."""
    output = []
    for item in data["output"]:
        try:
            output.append(_OUTPUT_ITEM.validate_python(item))
        except ValueError:  # an item type this openai version does not model: keep the dict
            output.append(item)
    return ModelResponse(
        output=output,
        usage=deserialize_usage(data.get("usage") or {}),
        response_id=data.get("response_id"),
        request_id=data.get("request_id"),
    )


def tool_calls_of(response: ModelResponse) -> list[str]:
    """The names of the tools (and hand-offs) a model response calls."""
    return [
        getattr(item, "name", "") for item in response.output if getattr(item, "type", "") == "function_call"
    ]


def as_agent(name: str) -> AbstractContextManager[None]:
    """Attribute the Omium calls made inside (in this task) to the SDK agent ``name``, unless it
    is the one running already (or unknown)."""
    if not name or current_agent() == name:
        return nullcontext()
    return acting_as(name)


def sdk_agent() -> str:
    """The SDK agent whose turn is running in this task ('' if none): the agent or turn span the
    SDK made current (it does so with tracing off too), which every task of the turn inherits."""
    data = getattr(get_current_span(), "span_data", None)
    if isinstance(data, TurnSpanData):
        return data.agent_name or ""
    if isinstance(data, AgentSpanData):
        return data.name
    return ""


class DurableModel(Model):
    """A model whose responses are recorded calls of the Omium run in progress.

    Args:
        model: the model to call.
        name: the model name for spans (default: the model's ``model`` attribute or class name).
        provider: ``gen_ai.provider.name`` for spans (default: ``openai`` for the SDK's OpenAI
            models, else unset).
        retry: Omium's retry policy for a failed call (the same recorded position is retried).
    """

    def __init__(
        self,
        model: Model,
        *,
        name: str | None = None,
        provider: str | None = None,
        retry: RetryPolicy | None = None,
    ) -> None:
        self.model = model
        inner_name = getattr(model, "model", None)
        self.name = name or (inner_name if isinstance(inner_name, str) else type(model).__name__)
        module = type(model).__module__
        self.provider = provider or ("openai" if module.startswith("agents.models.openai") else "")
        self.retry = retry or NO_RETRY

    async def get_response(
        self,
        system_instructions: str | None,
        input: str | list[TResponseInputItem],
        model_settings: ModelSettings,
        tools: list[Tool],
        output_schema: AgentOutputSchemaBase | None,
        handoffs: list[Handoff],
        tracing: ModelTracing,
        *,
        previous_response_id: str | None,
        conversation_id: str | None,
        prompt: ResponsePromptParam | None,
    ) -> ModelResponse:
        """The recorded response at this position of the run, else the model's (then recorded)."""

        async def ask() -> ModelResponse:
            return await self.model.get_response(
                system_instructions,
                input,
                model_settings,
                tools,
                output_schema,
                handoffs,
                tracing,
                previous_response_id=previous_response_id,
                conversation_id=conversation_id,
                prompt=prompt,
            )

        if maybe_current() is None:
            return await ask()
        live: list[ModelResponse] = []

        async def call(*recorded_input: Any) -> dict[str, Any]:
            self._annotate_request(system_instructions, input)
            with recorded_model_call():
                response = await ask()
            live.append(response)
            self._annotate_response(response)
            return encode_response(response)

        # The prompt is the call's recorded input (for the step inspector), unless content stays out.
        recorded = (system_instructions, input) if llm.CAPTURE_CONTENT else ()
        with sdk_span_as_parent(), as_agent(sdk_agent()):
            data = await ainvoke(
                CallDefinition(self.name, "llm", call, self.retry, is_async=True), recorded, {}
            )
        return live[-1] if live else decode_response(data)

    def stream_response(
        self,
        system_instructions: str | None,
        input: str | list[TResponseInputItem],
        model_settings: ModelSettings,
        tools: list[Tool],
        output_schema: AgentOutputSchemaBase | None,
        handoffs: list[Handoff],
        tracing: ModelTracing,
        *,
        previous_response_id: str | None,
        conversation_id: str | None,
        prompt: ResponsePromptParam | None,
    ) -> AsyncIterator[TResponseStreamEvent]:
        """Streamed calls are passed through unrecorded (use ``Runner.run`` for durable runs)."""
        return self.model.stream_response(
            system_instructions,
            input,
            model_settings,
            tools,
            output_schema,
            handoffs,
            tracing,
            previous_response_id=previous_response_id,
            conversation_id=conversation_id,
            prompt=prompt,
        )

    def get_retry_advice(self, request: ModelRetryAdviceRequest) -> ModelRetryAdvice | None:
        """The wrapped model's advice."""
        return self.model.get_retry_advice(request)

    async def close(self) -> None:
        """Close the wrapped model."""
        await self.model.close()

    def _annotate_request(self, system_instructions: str | None, input: Any) -> None:
        span = otel_trace.get_current_span()
        span.set_attribute(semconv.GEN_AI_OPERATION_NAME, "chat")
        span.set_attribute(semconv.GEN_AI_REQUEST_MODEL, self.name)
        if self.provider:
            span.set_attribute(semconv.GEN_AI_PROVIDER_NAME, self.provider)
        if llm.CAPTURE_CONTENT:
            messages = [{"role": "user", "content": input}] if isinstance(input, str) else list(input)
            span.set_attribute(semconv.GEN_AI_INPUT_MESSAGES, json.dumps(messages, default=str))
            if system_instructions:
                span.set_attribute("gen_ai.system_instructions", system_instructions)

    def _annotate_response(self, response: ModelResponse) -> None:
        span = otel_trace.get_current_span()
        span.set_attribute(semconv.GEN_AI_USAGE_INPUT_TOKENS, response.usage.input_tokens)
        span.set_attribute(semconv.GEN_AI_USAGE_OUTPUT_TOKENS, response.usage.output_tokens)
        if response.response_id:
            span.set_attribute("gen_ai.response.id", response.response_id)
        calls = [
            getattr(item, "name", "")
            for item in response.output
            if getattr(item, "type", "") == "function_call"
        ]
        if calls:
            span.set_attribute("omium.tool_calls", json.dumps(calls))
        if llm.CAPTURE_CONTENT:
            span.set_attribute(
                semconv.GEN_AI_OUTPUT_MESSAGES, json.dumps(encode_response(response)["output"], default=str)
            )


class DurableModelProvider(ModelProvider):
    """A model provider whose models are :class:`DurableModel`\\ s (for agents with model names)."""

    def __init__(self, provider: ModelProvider) -> None:
        self.provider = provider
        self._models: dict[str | None, DurableModel] = {}

    def get_model(self, model_name: str | None) -> Model:
        """The wrapped provider's model, made durable (one wrapper per name)."""
        if model_name not in self._models:
            inner = self.provider.get_model(model_name)
            self._models[model_name] = (
                inner if isinstance(inner, DurableModel) else DurableModel(inner, name=model_name)
            )
        return self._models[model_name]

    async def aclose(self) -> None:
        """Close the wrapped provider."""
        await self.provider.aclose()


def durable_tool(tool: FunctionTool) -> FunctionTool:
    """Make ``tool``'s calls recorded calls (kind ``tool``) of the Omium run in progress.

    The tool is changed in place (idempotent) and returned. What is recorded is what the model
    saw: the result, or the message the SDK made of a failure (the span then has status Error).
    Results must be serializable by :mod:`omium.sdk.serde` (JSON types, dataclasses, pydantic).
    """
    original = tool.on_invoke_tool
    if getattr(original, _DURABLE, False):
        return tool
    name = tool.name

    async def invoke(ctx: ToolContext[Any], arguments: str) -> Any:
        if maybe_current() is None:
            return await original(ctx, arguments)

        async def call(recorded_arguments: str) -> Any:
            sdk_span = get_current_span()
            span = otel_trace.get_current_span()
            span.set_attribute(f"{PREFIX}.call_id", call_id)
            if llm.CAPTURE_CONTENT:
                span.set_attribute("gen_ai.tool.call.arguments", recorded_arguments)
            result = await original(ctx, recorded_arguments)
            if llm.CAPTURE_CONTENT:
                span.set_attribute("gen_ai.tool.call.result", str(result))
            error = sdk_span.error if sdk_span is not None else None
            if error is not None:  # the SDK turned a failure into a message for the model
                span.set_status(Status(StatusCode.ERROR, str(error.get("message") or "tool failed")))
                data = error.get("data") or {}
                span.set_attribute(semconv.ERROR_TYPE, str(data.get("error_type") or error.get("message")))
            return result

        call_id = str(getattr(ctx, "tool_call_id", "") or "")
        agent = getattr(getattr(ctx, "agent", None), "name", "") or ""
        with sdk_span_as_parent(tool_ran=True), as_agent(agent):
            return await ainvoke(CallDefinition(name, "tool", call, is_async=True), (arguments,), {})

    setattr(invoke, _DURABLE, True)
    if getattr(original, _SYNC_MARKER, False):
        setattr(invoke, _SYNC_MARKER, True)
    tool.on_invoke_tool = invoke
    register_recorded_tool(name)
    return tool


def durable(agent: Agent[Any], *, models: bool = True) -> Agent[Any]:
    """Make an agent graph durable in place and return ``agent``.

    Every agent reachable through hand-offs gets its function tools wrapped by
    :func:`durable_tool` and (with ``models``) its model instance by :class:`DurableModel`;
    agents that name their model are covered by :func:`durable_run_config`. Idempotent.
    """
    seen: set[int] = set()
    pending: list[Agent[Any]] = [agent]
    while pending:
        current = pending.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        for tool in current.tools:
            if isinstance(tool, FunctionTool):
                durable_tool(tool)
        if models and isinstance(current.model, Model) and not isinstance(current.model, DurableModel):
            current.model = DurableModel(current.model)
        for target in current.handoffs:
            if isinstance(target, Agent):
                pending.append(target)
            elif isinstance(target, Handoff):
                ref = getattr(target, "_agent_ref", None)  # set by agents.handoff()
                found = ref() if ref is not None else None
                if isinstance(found, Agent):
                    pending.append(found)
    return agent


def durable_run_config(config: RunConfig | None = None) -> RunConfig:
    """A copy of ``config`` whose models (by name, or the run-wide one) are durable."""
    config = config or RunConfig()
    provider = config.model_provider
    if not isinstance(provider, DurableModelProvider):
        provider = DurableModelProvider(provider)
    model = config.model
    if isinstance(model, Model) and not isinstance(model, DurableModel):
        model = DurableModel(model)
    return dataclasses.replace(config, model_provider=provider, model=model)


__all__ = [
    "DurableModel",
    "DurableModelProvider",
    "as_agent",
    "decode_response",
    "durable",
    "durable_run_config",
    "durable_tool",
    "encode_response",
    "sdk_agent",
    "tool_calls_of",
]
