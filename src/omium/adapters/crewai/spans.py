"""Spans of a crew's tasks, model calls and tool calls, from CrewAI's event bus.

CrewAI runs its event handlers on a thread pool, so they can run late and out of order. The
listener here therefore only collects the model and tool events of the tasks Omium is running;
when a task ends, Omium flushes the bus and writes the task's ``chat {model}`` and
``execute_tool {tool}`` spans with the events' own timestamps, as children of the task's
``invoke_agent {role}`` span, ordered by CrewAI's emission sequence.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from crewai.events.event_bus import crewai_event_bus
from crewai.events.types.llm_events import (
    LLMCallCompletedEvent,
    LLMCallFailedEvent,
    LLMCallStartedEvent,
)
from crewai.events.types.tool_usage_events import (
    ToolUsageErrorEvent,
    ToolUsageFinishedEvent,
    ToolUsageStartedEvent,
)
from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

from omium import semconv
from omium.adapters.crewai.session import Session, TaskCall
from omium.adapters.genai import text, tokens
from omium.sdk import llm, tracing

logger = logging.getLogger(__name__)

_EVENTS = (
    LLMCallStartedEvent,
    LLMCallCompletedEvent,
    LLMCallFailedEvent,
    ToolUsageStartedEvent,
    ToolUsageFinishedEvent,
    ToolUsageErrorEvent,
)

# CrewAI task id -> the events collected for it while Omium runs it.
_collected: dict[str, list[Any]] = {}
_lock = threading.Lock()
_installed = False


def _task_id(event: Any) -> str:
    found = getattr(event, "task_id", None)
    if not found:
        task = getattr(event, "from_task", None)
        found = getattr(task, "id", None)
    return str(found) if found else ""


def _collect(source: Any, event: Any) -> None:
    key = _task_id(event)
    with _lock:
        bucket = _collected.get(key)
        if bucket is not None:
            bucket.append(event)


def install() -> None:
    """Listen on CrewAI's event bus (once per process)."""
    global _installed
    with _lock:
        if _installed:
            return
        for event_type in _EVENTS:
            crewai_event_bus.on(event_type)(_collect)
        _installed = True


def watch(task_id: str) -> None:
    """Start collecting the events of task ``task_id``."""
    with _lock:
        _collected[task_id] = []


def take(task_id: str) -> list[Any]:
    """Stop collecting for ``task_id``; its events in emission order (the bus flushed first)."""
    if not crewai_event_bus.flush(timeout=10.0):
        logger.warning(
            "CrewAI's event handlers did not finish in 10 s: spans of task %s may lack calls", task_id
        )
    with _lock:
        events = _collected.pop(task_id, [])
    return sorted(events, key=lambda e: e.emission_sequence or 0)


def _ns(moment: datetime | None) -> int | None:
    return int(moment.timestamp() * 1_000_000_000) if moment is not None else None


def start_task_span(session: Session, call: TaskCall, workflow: str, capture: bool) -> Span:
    """The task's ``invoke_agent {role}`` span, under the run's span (not made current: CrewAI may
    run the task in another thread than the hook that ends it)."""
    attributes: dict[str, Any] = {
        semconv.GEN_AI_OPERATION_NAME: "invoke_agent",
        semconv.GEN_AI_AGENT_NAME: call.agent,
        semconv.GEN_AI_WORKFLOW_NAME: workflow,
        semconv.OMIUM_RUN_ID: session.context.run_id,
        semconv.OMIUM_STEP_INDEX: call.position,
        semconv.OMIUM_STEP_KIND: "crewai.task",
        "crewai.task.name": call.name,
    }
    if capture and call.request:
        attributes[semconv.GEN_AI_INPUT_MESSAGES] = json.dumps([{"role": "user", "content": call.request}])
    return tracing.tracer().start_span(
        f"invoke_agent {call.agent}",
        context=session.otel_parent,
        kind=SpanKind.INTERNAL,
        attributes=attributes,
    )


def write_calls(session: Session, call: TaskCall, events: Iterable[Any], capture: bool) -> int:
    """Write the task's model and tool spans from its events; returns how many model calls."""
    if call.span is None:
        return 0
    parent = trace.set_span_in_context(call.span)
    base = {
        semconv.OMIUM_RUN_ID: session.context.run_id,
        semconv.OMIUM_STEP_INDEX: call.position,
        semconv.GEN_AI_AGENT_NAME: call.agent,
    }
    llm_started: dict[str, Any] = {}
    tools_started: dict[str, Any] = {}
    tools_waiting: list[Any] = []
    model_calls = 0
    for event in events:
        if isinstance(event, LLMCallStartedEvent):
            llm_started[event.call_id] = event
        elif isinstance(event, LLMCallCompletedEvent | LLMCallFailedEvent):
            start = llm_started.pop(event.call_id, None)
            _chat_span(parent, base, start, event, capture)
            model_calls += 1
        elif isinstance(event, ToolUsageStartedEvent):
            tools_started[event.event_id] = event
            tools_waiting.append(event)
        elif isinstance(event, ToolUsageFinishedEvent | ToolUsageErrorEvent):
            start = tools_started.pop(event.started_event_id or "", None)
            if start is None and tools_waiting:
                start = tools_waiting[0]
            if start is not None and start in tools_waiting:
                tools_waiting.remove(start)
            _tool_span(parent, base, start, event, capture)
    return model_calls


def _chat_span(parent: Any, base: dict[str, Any], start: Any, end: Any, capture: bool) -> None:
    model = end.model or (start.model if start is not None else None) or "model"
    attributes: dict[str, Any] = {
        **base,
        semconv.GEN_AI_OPERATION_NAME: "chat",
        semconv.GEN_AI_REQUEST_MODEL: model,
        semconv.GEN_AI_RESPONSE_MODEL: model,
    }
    provider = getattr(getattr(end, "from_agent", None), "llm", None)
    if provider is not None and getattr(provider, "provider", None):
        attributes[semconv.GEN_AI_PROVIDER_NAME] = str(provider.provider)
    if isinstance(end, LLMCallCompletedEvent):
        attributes.update(tokens(end.usage))
        if capture:
            if start is not None and start.messages is not None:
                attributes[semconv.GEN_AI_INPUT_MESSAGES] = text(start.messages)
            attributes[semconv.GEN_AI_OUTPUT_MESSAGES] = json.dumps(
                [{"role": "assistant", "content": text(end.response)}]
            )
    span = tracing.tracer().start_span(
        f"chat {model}",
        context=parent,
        kind=SpanKind.CLIENT,
        attributes=attributes,
        start_time=_ns(start.timestamp if start is not None else end.timestamp),
    )
    if isinstance(end, LLMCallFailedEvent):
        span.set_attribute("error.type", "LLMCallFailed")
        span.set_status(Status(StatusCode.ERROR, end.error))
    span.end(end_time=_ns(end.timestamp))


def _tool_span(parent: Any, base: dict[str, Any], start: Any, end: Any, capture: bool) -> None:
    attributes: dict[str, Any] = {
        **base,
        semconv.GEN_AI_OPERATION_NAME: "execute_tool",
        semconv.GEN_AI_TOOL_NAME: end.tool_name,
    }
    if capture:
        attributes["gen_ai.tool.call.arguments"] = text(end.tool_args)
        if isinstance(end, ToolUsageFinishedEvent):
            attributes["gen_ai.tool.call.result"] = text(end.output)
    started = end.started_at if isinstance(end, ToolUsageFinishedEvent) else None
    if started is None and start is not None:
        started = start.timestamp
    finished = end.finished_at if isinstance(end, ToolUsageFinishedEvent) else end.timestamp
    if isinstance(end, ToolUsageFinishedEvent) and end.from_cache:
        attributes["crewai.tool.from_cache"] = True
    span = tracing.tracer().start_span(
        f"execute_tool {end.tool_name}",
        context=parent,
        kind=SpanKind.INTERNAL,
        attributes=attributes,
        start_time=_ns(started or end.timestamp),
    )
    if isinstance(end, ToolUsageErrorEvent):
        span.set_attribute("error.type", "ToolUsageError")
        span.set_status(Status(StatusCode.ERROR, text(end.error)))
    span.end(end_time=_ns(finished))


def capture_content(setting: bool | None) -> bool:
    """Whether spans carry prompts, replies and tool data (default: Omium's setting)."""
    return llm.CAPTURE_CONTENT if setting is None else setting


__all__ = ["capture_content", "install", "start_task_span", "take", "watch", "write_calls"]
