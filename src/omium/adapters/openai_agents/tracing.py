"""The Agents SDK's traces as OpenTelemetry spans, through Omium's tracer.

:class:`OmiumTracingProcessor` receives the SDK's trace and span events as they happen and opens
and closes an OpenTelemetry span for each, with the SDK's start and end times and parentage, so
they reach whatever provider :func:`omium.init` configured (the embedded warehouse's
``otel_traces``, the server's OTLP endpoint, or the application's own). Names and attributes
follow the GenAI semantic conventions:

========================  ============================  ===========================================
SDK span                  OpenTelemetry span            attributes
========================  ============================  ===========================================
trace (outside a run)     ``invoke_workflow {name}``    ``gen_ai.workflow.name``, conversation id
agent                     ``invoke_agent {name}``       ``gen_ai.agent.name``, tools, hand-offs
generation / response     ``chat {model}``              ``gen_ai.request.model``, usage tokens
function                  ``execute_tool {name}``       ``gen_ai.tool.name``, arguments, result
handoff                   ``handoff {from} -> {to}``    ``omium.handoff.from|to|channel``
turn                      ``turn {agent}``              ``omium.agents.turn``, ``openai_agents.turn.usage``
guardrail / custom / ...  ``guardrail {name}`` / name   the SDK's data under ``openai_agents.*``
========================  ============================  ===========================================

Inside an Omium run the run's own ``invoke_workflow`` span stands for the trace, and the SDK's
task span (one per ``Runner.run``) is always folded into the trace's span. Every span carries
``omium.run_id`` (the Omium run in progress when the trace started, else the SDK's trace id) and the
name of the agent it belongs to; an SDK error sets status Error and ``error.type``. When a call is
recorded by Omium (a durable tool or model, see :mod:`.durable`), Omium's own span is the span of
that call and the SDK's span for it is folded away, so no call is counted twice. Tokens are
counted on ``chat`` spans alone: a turn's usage (the sum of its chat spans') is kept as JSON
under ``openai_agents.turn.usage``, never as ``gen_ai.usage.*``.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from agents import add_trace_processor, set_trace_processors
from agents.tracing import Span as SdkSpan
from agents.tracing import Trace, TracingProcessor, get_current_span
from agents.tracing.span_data import (
    AgentSpanData,
    FunctionSpanData,
    GenerationSpanData,
    ResponseSpanData,
    SpanData,
    TaskSpanData,
    TurnSpanData,
)
from opentelemetry import context as otel_context
from opentelemetry import trace as otel_trace

from omium import semconv
from omium.adapters.openai_agents._conventions import PREFIX, describe_end, describe_start, set_error, text
from omium.sdk import tracing
from omium.sdk.context import maybe_current

logger = logging.getLogger(__name__)

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)

# Names of function tools whose calls Omium records itself (see durable.durable_tool).
_recorded_tools: set[str] = set()
# Set while a durable model calls the model it wraps: the SDK's generation span is folded.
_in_recorded_model: ContextVar[bool] = ContextVar("omium_agents_recorded_model", default=False)


@dataclass
class _Open:
    """An SDK span (or trace) being mirrored."""

    span: Any  # the OpenTelemetry span, None when folded into its parent
    context: otel_context.Context  # what children are parented to
    agent: str
    run_id: str
    token: object = None  # an attached OTel context, detached when the SDK span ends
    folded_tool: bool = False
    started_ns: int = 0


def _ns(iso: str | None) -> int:
    """Nanoseconds since the epoch of an SDK timestamp (now if missing)."""
    if not iso:
        return time.time_ns()
    moment = dt.datetime.fromisoformat(iso)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return (moment - _EPOCH) // dt.timedelta(microseconds=1) * 1000


class OmiumTracingProcessor(TracingProcessor):
    """Mirrors Agents SDK traces and spans as OpenTelemetry spans (see the module docstring).

    Register it with :func:`instrument`. It is thread-safe, never raises into the SDK (a failure
    is logged), and keeps no span once the SDK has ended it.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._traces: dict[str, _Open] = {}
        self._spans: dict[str, _Open] = {}

    # --- the TracingProcessor interface
    def on_trace_start(self, trace: Trace) -> None:
        """Open ``invoke_workflow {name}``; inside an Omium run, use the run's span instead."""
        try:
            self._trace_started(trace)
        except Exception:  # never break the agent run over its telemetry
            logger.exception("could not mirror the start of trace %s", trace.trace_id)

    def on_trace_end(self, trace: Trace) -> None:
        """Close the trace's span."""
        with self._lock:
            opened = self._traces.pop(trace.trace_id, None)
        if opened is not None and opened.span is not None:
            try:
                opened.span.end(end_time=time.time_ns())
            except Exception:
                logger.exception("could not mirror the end of trace %s", trace.trace_id)

    def on_span_start(self, span: SdkSpan[Any]) -> None:
        """Open the span's OpenTelemetry twin (or fold it into its parent)."""
        try:
            self._span_started(span)
        except Exception:
            logger.exception("could not mirror the start of span %s", span.span_id)

    def on_span_end(self, span: SdkSpan[Any]) -> None:
        """Set what is known at the end (model, usage, output, error) and close the twin."""
        try:
            self._span_ended(span)
        except Exception:
            logger.exception("could not mirror the end of span %s", span.span_id)

    def shutdown(self) -> None:
        """End whatever is still open (an interrupted run), so it is not lost."""
        with self._lock:
            leftovers = [*self._spans.values(), *self._traces.values()]
            self._spans.clear()
            self._traces.clear()
        for opened in leftovers:
            if opened.span is not None:
                opened.span.end()

    def force_flush(self) -> None:
        """Spans are handed to OpenTelemetry as they end; its provider does the flushing."""

    # --- helpers for the adapter
    def context_of(self, span_id: str) -> otel_context.Context | None:
        """The OpenTelemetry context the children of SDK span ``span_id`` are parented to."""
        with self._lock:
            opened = self._spans.get(span_id)
        return opened.context if opened is not None else None

    def annotate(self, span_id: str, attributes: dict[str, Any], event: str = "") -> None:
        """Set attributes (or add an event) on the span SDK span ``span_id`` is mirrored as."""
        with self._lock:
            opened = self._spans.get(span_id)
        target = otel_trace.get_current_span(opened.context) if opened is not None else None
        if target is None or not target.is_recording():
            return
        if event:
            target.add_event(event, attributes)
        else:
            target.set_attributes(attributes)

    # --- implementation
    def _trace_started(self, trace: Trace) -> None:
        run = maybe_current()
        if run is not None:
            # Inside an Omium run the run's span is the workflow: the trace's spans hang under it.
            with self._lock:
                self._traces[trace.trace_id] = _Open(None, otel_context.get_current(), "", run.run_id)
            return
        metadata = getattr(trace, "metadata", None) or {}
        run_id = str(metadata.get("omium.run_id") or trace.trace_id)
        attributes: dict[str, Any] = {
            semconv.GEN_AI_OPERATION_NAME: "invoke_workflow",
            semconv.GEN_AI_WORKFLOW_NAME: trace.name,
            semconv.OMIUM_RUN_ID: run_id,
            f"{PREFIX}.trace_id": trace.trace_id,
        }
        group = getattr(trace, "group_id", None)
        if group:
            attributes[semconv.GEN_AI_CONVERSATION_ID] = group
        attributes.update({f"{PREFIX}.metadata.{k}": text(v) for k, v in metadata.items()})
        span = tracing.tracer().start_span(
            f"invoke_workflow {trace.name}",
            context=otel_context.get_current(),
            attributes=attributes,
            start_time=time.time_ns(),
        )
        with self._lock:
            self._traces[trace.trace_id] = _Open(span, otel_trace.set_span_in_context(span), "", run_id)

    def _parent(self, span: SdkSpan[Any]) -> _Open:
        with self._lock:
            parent = self._spans.get(span.parent_id or "") or self._traces.get(span.trace_id)
        if parent is not None:
            return parent
        # A trace this processor did not see start (one reattached from a RunState): its spans
        # hang under whatever span is current, an Omium run's when there is one.
        run = maybe_current()
        return _Open(None, otel_context.get_current(), "", run.run_id if run else span.trace_id)

    def _span_started(self, span: SdkSpan[Any]) -> None:
        data = span.span_data
        parent = self._parent(span)
        start = _ns(span.started_at)
        if self._folded(data):
            opened = _Open(None, parent.context, parent.agent, parent.run_id, started_ns=start)
            if isinstance(data, FunctionSpanData):
                opened.folded_tool = True
                # A recorded tool's Omium span belongs under the turn, like the SDK span would.
                opened.token = otel_context.attach(parent.context)
            with self._lock:
                self._spans[span.span_id] = opened
            return
        agent = parent.agent
        if isinstance(data, AgentSpanData):
            agent = data.name
        elif isinstance(data, TurnSpanData):
            agent = data.agent_name or agent
        name, kind, attributes = describe_start(data)
        attributes[semconv.OMIUM_RUN_ID] = parent.run_id
        attributes[f"{PREFIX}.span_type"] = data.type
        attributes[f"{PREFIX}.span_id"] = span.span_id
        attributes[f"{PREFIX}.trace_id"] = span.trace_id
        if agent:
            attributes.setdefault(semconv.GEN_AI_AGENT_NAME, agent)
        otel_span = tracing.tracer().start_span(
            name, context=parent.context, kind=kind, attributes=attributes, start_time=start
        )
        opened = _Open(otel_span, otel_trace.set_span_in_context(otel_span), agent, parent.run_id)
        if isinstance(data, FunctionSpanData):
            # Function spans are entered and left in one task: what the tool does (its own spans,
            # Omium's recorded calls) nests under this span.
            opened.token = otel_context.attach(opened.context)
        with self._lock:
            self._spans[span.span_id] = opened

    @staticmethod
    def _folded(data: SpanData) -> bool:
        if isinstance(data, TaskSpanData):
            return True  # the trace's span stands for the task
        if isinstance(data, (GenerationSpanData, ResponseSpanData)):
            return _in_recorded_model.get()
        if isinstance(data, FunctionSpanData):
            return data.name in _recorded_tools and maybe_current() is not None
        return False

    def _span_ended(self, span: SdkSpan[Any]) -> None:
        with self._lock:
            opened = self._spans.pop(span.span_id, None)
        if opened is None:
            return
        if opened.token is not None:
            try:
                otel_context.detach(opened.token)  # type: ignore[arg-type]
            except ValueError:  # ended in another context than it started in
                pass
        if opened.span is None:
            if opened.folded_tool and span.span_id not in _ran:
                self._unrecorded_tool(span, opened)
            _ran.discard(span.span_id)
            return
        otel_span = opened.span
        name, attributes = describe_end(span.span_data)
        if name:
            otel_span.update_name(name)
        if attributes:
            otel_span.set_attributes(attributes)
        if span.error is not None:
            set_error(otel_span, span.error)
        otel_span.end(end_time=_ns(span.ended_at))

    def _unrecorded_tool(self, span: SdkSpan[Any], opened: _Open) -> None:
        """A recorded tool the SDK settled without calling it (a guardrail, a rejection): the
        SDK's span is the only account of the call, so it is mirrored after all."""
        data = span.span_data
        name, kind, attributes = describe_start(data)
        attributes.update({semconv.OMIUM_RUN_ID: opened.run_id, f"{PREFIX}.span_type": data.type})
        if opened.agent:
            attributes[semconv.GEN_AI_AGENT_NAME] = opened.agent
        attributes.update(describe_end(data)[1])
        otel_span = tracing.tracer().start_span(
            name, context=opened.context, kind=kind, attributes=attributes, start_time=opened.started_ns
        )
        if span.error is not None:
            set_error(otel_span, span.error)
        otel_span.end(end_time=_ns(span.ended_at))


# SDK function spans inside which a recorded tool call ran (its Omium span stands for it).
_ran: set[str] = set()


# --- registration
_installed: OmiumTracingProcessor | None = None
_install_lock = threading.Lock()


def instrument(*, keep_other_processors: bool = False) -> OmiumTracingProcessor:
    """Send the Agents SDK's traces to Omium (idempotent); returns the processor.

    By default the processor replaces the SDK's processors, so its default exporter (which uploads
    traces to OpenAI) is off. ``keep_other_processors=True`` adds it beside them instead.
    """
    global _installed
    with _install_lock:
        if _installed is None:
            _installed = OmiumTracingProcessor()
            if keep_other_processors:
                add_trace_processor(_installed)
            else:
                set_trace_processors([_installed])
        return _installed


def uninstrument() -> None:
    """Stop sending the SDK's traces to Omium (the SDK is left with no processor)."""
    global _installed
    with _install_lock:
        if _installed is not None:
            _installed.shutdown()
            set_trace_processors([])
            _installed = None


def installed() -> OmiumTracingProcessor | None:
    """The processor :func:`instrument` registered, if any."""
    return _installed


# --- what the durable wrappers use
def register_recorded_tool(name: str) -> None:
    """Omium records calls of the function tool ``name``: its SDK span is folded into Omium's."""
    _recorded_tools.add(name)


@contextmanager
def sdk_span_as_parent(*, tool_ran: bool = False) -> Iterator[None]:
    """Make the span the current SDK span is mirrored as the current OpenTelemetry span.

    Omium spans opened inside (recorded model and tool calls, hand-off validations) then sit where
    the SDK's own span for that work would. ``tool_ran`` notes that a recorded tool ran inside the
    current (folded) function span, so its failure is shown by Omium's span, not a second one.
    """
    processor, current = _installed, get_current_span()
    parent = processor.context_of(current.span_id) if processor and current is not None else None
    if tool_ran and processor is not None and current is not None:
        _ran.add(current.span_id)
    if parent is None:
        yield
        return
    token = otel_context.attach(parent)
    try:
        yield
    finally:
        otel_context.detach(token)


@contextmanager
def recorded_model_call() -> Iterator[None]:
    """Inside, the SDK's generation/response spans are folded: Omium's ``chat`` span stands for them."""
    token = _in_recorded_model.set(True)
    try:
        yield
    finally:
        _in_recorded_model.reset(token)


def mark_current(attributes: dict[str, Any], event: str = "") -> None:
    """Annotate (or add an event to) the span the current SDK span is mirrored as."""
    processor, current = _installed, get_current_span()
    if processor is not None and current is not None:
        processor.annotate(current.span_id, attributes, event)


__all__ = [
    "OmiumTracingProcessor",
    "installed",
    "instrument",
    "mark_current",
    "recorded_model_call",
    "register_recorded_tool",
    "sdk_span_as_parent",
    "uninstrument",
]
