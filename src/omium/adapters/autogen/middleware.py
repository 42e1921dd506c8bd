"""The AG2 middleware that puts each agent turn under Omium.

Per turn (``on_turn``): an ``invoke_agent {agent}`` span; the turn's record answers it when the
run is resumed (no model call, the agent's stream restored); otherwise a review gate may pause
the conversation, the turn runs, its reply is checked as a hand-off, and the turn is recorded and
checkpointed. The turn is a call of the public recording interface
(:func:`omium.sdk.recording.begin_call`): its code runs inside ``call.running()``, so
:func:`omium.idempotency_key` in a tool is the turn's key and Omium calls made inside are part of it.
Per model call (``on_llm_call``) a ``chat {model}`` span, per tool execution
(``on_tool_execution``) an ``execute_tool {tool}`` span, children of the turn's. Every span
carries ``omium.run_id`` and ``omium.step_index`` (the turn's position in the run); the turn's
span also its ``omium.call_id``.

Nothing here raises into AG2 to stop a conversation: a stop ends the turn with a stop message
(:mod:`omium.adapters.autogen.termination`). Errors of the turn itself propagate as usual, except
inside an AG2 network, whose turn handler would swallow them and leave the channel waiting: there
the failure is recorded and the conversation stopped, and the run raises it afterwards.
"""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from ag2.annotations import Context
from ag2.events import (
    BaseEvent,
    ModelRequest,
    ModelResponse,
    ToolCallEvent,
    ToolErrorEvent,
    ToolResultEvent,
    ToolResultsEvent,
)
from ag2.middleware import AgentTurn, BaseMiddleware, LLMCall, ToolExecution, ToolResultType
from ag2.middleware.describe import MiddlewareDescription
from ag2.network.policies import AGENT_CLIENT_DEP, CHANNEL_DEP
from ag2.utils import MODEL_CONFIG_CONTEXT_DEPENDENCY_KEY
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Span, StatusCode

from omium import semconv
from omium.adapters import handoffs, review
from omium.adapters.autogen.recording import request_text
from omium.adapters.autogen.session import Session, Stop, TurnCall
from omium.adapters.autogen.termination import stop_response
from omium.errors import ControlSignal, HandoffRejected
from omium.recovery import audit
from omium.sdk import tracing
from omium.sdk.context import current, enter, leave, maybe_current

if TYPE_CHECKING:
    from omium.adapters.autogen.team import Team

TURN = "omium.turn"


class OmiumMiddleware:
    """An AG2 middleware factory for one agent of a :class:`~omium.adapters.autogen.Team`.

    :func:`~omium.adapters.autogen.instrument` installs it as the agent's outermost middleware;
    it is a no-op for turns taken outside an Omium run.
    """

    def __init__(self, team: Team, agent: str) -> None:
        self.team = team
        self.agent = agent

    def describe(self) -> MiddlewareDescription:
        """What AG2 reports about this middleware."""
        return MiddlewareDescription(kind=type(self).__qualname__, config={"agent": self.agent})

    def __call__(self, event: BaseEvent, context: Context) -> BaseMiddleware:
        return _TurnMiddleware(event, context, team=self.team, agent=self.agent)


class _TurnMiddleware(BaseMiddleware):
    """One turn of one agent (AG2 makes a middleware instance per turn)."""

    def __init__(self, event: BaseEvent, context: Context, *, team: Team, agent: str) -> None:
        super().__init__(event, context)
        self.team = team
        self.agent = agent
        self.session: Session | None = None
        self.call: TurnCall | None = None

    # --- the turn
    async def on_turn(self, call_next: AgentTurn, event: BaseEvent, context: Context) -> ModelResponse:
        session = self.team.session_for_turn()
        if session is None:
            return await call_next(event, context)
        self.session = session
        with _entered(session):
            if session.stop is not None:  # stopped earlier in this run: answer the stop, run nothing
                return stop_response(session.stop.kind, session.stop.reason)
            try:
                return await self._turn(session, call_next, event, context)
            except (Exception, ControlSignal) as error:
                if CHANNEL_DEP not in context.dependencies:
                    raise
                # An AG2 network would swallow this and wait for a reply forever: stop instead.
                call = self.call
                stop = session.stop_with(
                    Stop(
                        "turn failed",
                        f"{self.agent}: {type(error).__name__}: {error}",
                        self.agent,
                        call.turn if call else session.turns,
                        call.position if call else -1,
                        error=error,
                    )
                )
                return stop_response(stop.kind, stop.reason)

    async def _turn(
        self, session: Session, call_next: AgentTurn, event: BaseEvent, context: Context
    ) -> ModelResponse:
        request = request_text(event)
        call = self.call = session.begin(self.agent, request)
        with tracing.span(
            f"invoke_agent {self.agent}", self._turn_attributes(session, call, context)
        ) as span:
            if self.team.capture_content and request:
                span.set_attribute(
                    semconv.GEN_AI_INPUT_MESSAGES, json.dumps([{"role": "user", "content": request}])
                )
            if call.replayed:
                return await self._replay(session, call, context, span)
            gate = self.team.gate_for(call.agent, call.occurrence)
            if gate is not None:
                run = current()
                key = review.gate_key(run, call.call_id)
                span.set_attribute("omium.review.gate", gate.name)
                if not review.approved(run, key):
                    span.set_attribute("omium.review.status", "awaiting")
                    stop = session.stop_with(
                        Stop(
                            "awaiting review",
                            f"{gate.name}: {gate.reason or 'a person must approve this turn'}",
                            call.agent,
                            call.turn,
                            call.position,
                            evidence={"gate": key, "gate_name": gate.name, "turn": call.turn},
                        )
                    )
                    return stop_response(stop.kind, stop.reason)
                span.set_attribute("omium.review.status", "approved")
            before = len(list(await context.stream.history.get_events()))
            response = await self._execute(session, call, call_next, event, context)
            events = list(await context.stream.history.get_events())[before:]
            self._annotate_reply(span, response)
            for check in self.team.checks_for(call.agent):
                if not self._hand_off(session, call, check, response, span):
                    assert session.stop is not None
                    return stop_response(session.stop.kind, session.stop.reason)
            session.complete(call, request, response, events)
            return response

    async def _execute(
        self, session: Session, call: TurnCall, call_next: AgentTurn, event: BaseEvent, context: Context
    ) -> ModelResponse:
        try:
            # omium.idempotency_key() in tools; Omium calls inside are part of the turn.
            with call.call.running():
                return await call_next(event, context)
        except (Exception, ControlSignal) as error:
            session.fail(call, error)
            raise

    async def _replay(self, session: Session, call: TurnCall, context: Context, span: Span) -> ModelResponse:
        record = session.replay(call)
        # The agent's stream gets the turn's events back, so a continuation (reply.ask) or the
        # network's routing sees the turn as if it had just run.
        history = list(await context.stream.history.get_events())
        await context.stream.history.replace([*history, *record.stream_events()])
        span.set_attribute("omium.replayed", True)
        response = record.reply()
        self._annotate_reply(span, response)
        return response

    def _hand_off(
        self,
        session: Session,
        call: TurnCall,
        check: handoffs.HandoffCheck,
        response: ModelResponse,
        span: Span,
    ) -> bool:
        """Check the reply as a hand-off; on rejection stop the conversation. True: accepted."""
        text = response.content or ""
        with tracing.span(
            f"handoff_send {check.channel}",
            {
                semconv.OMIUM_RUN_ID: session.context.run_id,
                semconv.OMIUM_STEP_INDEX: call.position,
                semconv.OMIUM_STEP_KIND: "handoff_send",
                semconv.GEN_AI_AGENT_NAME: call.agent,
            },
        ) as handoff_span:
            verdict = check.validate(text)
            message = handoffs.record(current(), check, text, verdict, call.key)
            attributes: dict[str, str | int] = {
                semconv.OMIUM_HANDOFF_VERDICT: message.status,
                "omium.handoff.channel": message.channel,
                "omium.handoff.seq": message.seq,
                "omium.handoff.schema": message.schema_name,
            }
            if not verdict.accepted:
                attributes["omium.handoff.reason"] = verdict.reason
                handoff_span.set_status(StatusCode.ERROR, f"hand-off rejected: {verdict.reason}")
            for key, value in attributes.items():
                handoff_span.set_attribute(key, value)
                span.set_attribute(key, value)
        if verdict.accepted:
            return True
        reason = f"{message.channel} #{message.seq}: {verdict.reason}"
        session.fail(call, f"HandoffRejected: {reason}")
        incident = uuid.uuid4().hex[:12]
        audit.record(
            session.context.store,
            session.context.run_id,
            "detected",
            reason=f"hand-off {reason}",
            after={"channel": message.channel, "seq": message.seq, "violations": verdict.violations},
            incident=incident,
            trigger="handoff_rejected",
            agent=call.agent,
            position=call.position,
            step=message.channel,
        )
        span.set_attribute(semconv.ERROR_TYPE, "HandoffRejected")
        span.set_status(StatusCode.ERROR, f"hand-off rejected: {verdict.reason}")
        session.stop_with(
            Stop(
                "handoff rejected",
                reason,
                call.agent,
                call.turn,
                call.position,
                error=HandoffRejected(f"hand-off {reason}", verdict.reason, send_position=call.position),
                evidence={"incident": incident, "channel": message.channel, "seq": message.seq},
            )
        )
        return False

    def _turn_attributes(self, session: Session, call: TurnCall, context: Context) -> dict[str, Any]:
        channel = context.dependencies.get(CHANNEL_DEP)
        client = context.dependencies.get(AGENT_CLIENT_DEP)
        return {
            semconv.GEN_AI_OPERATION_NAME: "invoke_agent",
            semconv.GEN_AI_AGENT_NAME: call.agent,
            semconv.GEN_AI_AGENT_ID: getattr(client, "agent_id", None),
            semconv.GEN_AI_WORKFLOW_NAME: session.context.workflow,
            semconv.GEN_AI_CONVERSATION_ID: getattr(channel, "channel_id", None) or session.conversation_id,
            semconv.OMIUM_RUN_ID: session.context.run_id,
            semconv.OMIUM_STEP_INDEX: call.position,
            semconv.OMIUM_STEP_KIND: "agent_turn",
            TURN: call.turn,
            "omium.call_id": call.call_id,
            "omium.idempotency_key": call.key,
        }

    def _call_attributes(self) -> dict[str, Any]:
        assert self.session is not None and self.call is not None
        return {
            semconv.GEN_AI_AGENT_NAME: self.call.agent,
            semconv.OMIUM_RUN_ID: self.session.context.run_id,
            semconv.OMIUM_STEP_INDEX: self.call.position,
            TURN: self.call.turn,
        }

    def _annotate_reply(self, span: Span, response: ModelResponse) -> None:
        if self.team.capture_content:
            span.set_attribute(
                semconv.GEN_AI_OUTPUT_MESSAGES,
                json.dumps([{"role": "assistant", "content": response.content or ""}]),
            )

    # --- model calls and tools inside the turn
    async def on_llm_call(
        self, call_next: LLMCall, events: Sequence[BaseEvent], context: Context
    ) -> ModelResponse:
        if self.session is None or self.call is None:
            return await call_next(events, context)
        self.session.model_calls += 1
        model = _configured_model(context)
        attributes = {
            **self._call_attributes(),
            semconv.GEN_AI_OPERATION_NAME: "chat",
            semconv.GEN_AI_REQUEST_MODEL: model,
        }
        with tracing.span(f"chat {model}" if model else "chat", attributes) as span:
            if self.team.capture_content:
                with contextlib.suppress(Exception):  # recording a call must never fail it
                    span.set_attribute(
                        semconv.GEN_AI_INPUT_MESSAGES, json.dumps(_messages(events), default=str)
                    )
            response = await call_next(events, context)
            if not model and response.model:
                span.update_name(f"chat {response.model}")
                span.set_attribute(semconv.GEN_AI_REQUEST_MODEL, response.model)
            for key, value in (
                (semconv.GEN_AI_RESPONSE_MODEL, response.model),
                (semconv.GEN_AI_PROVIDER_NAME, response.provider),
                (semconv.GEN_AI_USAGE_INPUT_TOKENS, _tokens(response.usage.prompt_tokens)),
                (semconv.GEN_AI_USAGE_OUTPUT_TOKENS, _tokens(response.usage.completion_tokens)),
            ):
                if value is not None:
                    span.set_attribute(key, value)
            if response.finish_reason:
                span.set_attribute("gen_ai.response.finish_reasons", [response.finish_reason])
            if self.team.capture_content:
                with contextlib.suppress(Exception):
                    span.set_attribute(
                        semconv.GEN_AI_OUTPUT_MESSAGES, json.dumps(_messages([response]), default=str)
                    )
            return response

    async def on_tool_execution(
        self, call_next: ToolExecution, event: ToolCallEvent, context: Context
    ) -> ToolResultType:
        if self.session is None or self.call is None:
            return await call_next(event, context)
        self.session.tool_calls += 1
        attributes = {
            **self._call_attributes(),
            semconv.GEN_AI_OPERATION_NAME: "execute_tool",
            semconv.GEN_AI_TOOL_NAME: event.name,
            semconv.GEN_AI_TOOL_CALL_ID: event.id,
            "gen_ai.tool.type": "function",
            semconv.OMIUM_STEP_KIND: "tool",
        }
        if self.team.capture_content:
            attributes["gen_ai.tool.call.arguments"] = event.arguments
        with tracing.span(f"execute_tool {event.name}", attributes) as span:
            result = await call_next(event, context)
            if isinstance(result, ToolErrorEvent):
                span.set_attribute(semconv.ERROR_TYPE, type(result.error).__qualname__)
                span.set_status(StatusCode.ERROR, str(result.error))
            elif isinstance(result, ToolResultEvent) and self.team.capture_content:
                span.set_attribute("gen_ai.tool.call.result", _tool_text(result))
            return result


@contextlib.contextmanager
def _entered(session: Session) -> Iterator[None]:
    """Make the session's run current for the turn (AG2 networks run turns in their own tasks)."""
    token = enter(session.context) if maybe_current() is not session.context else None
    attached = None
    if session.otel_context is not None and not trace.get_current_span().get_span_context().is_valid:
        attached = otel_context.attach(session.otel_context)  # parent the turn under the run's span
    try:
        yield
    finally:
        if attached is not None:
            otel_context.detach(attached)
        if token is not None:
            leave(token)


def _configured_model(context: Context) -> str | None:
    config = context.dependencies.get(MODEL_CONFIG_CONTEXT_DEPENDENCY_KEY)
    try:
        model = getattr(config, "model", None)
    except NotImplementedError:  # AG2's test config without a model name
        return None
    return model if isinstance(model, str) and model else None


def _tokens(value: float | None) -> int | None:
    return int(value) if value else None


def _messages(events: Sequence[BaseEvent]) -> list[dict[str, Any]]:
    """The conversation a model call saw, as OpenAI-style messages (for span content)."""
    out: list[dict[str, Any]] = []
    for event in events:
        if isinstance(event, ModelRequest):
            out.append({"role": "user", "content": request_text(event)})
        elif isinstance(event, ModelResponse):
            message: dict[str, Any] = {"role": "assistant", "content": event.content}
            if event.tool_calls:
                message["tool_calls"] = [{"id": c.id, "name": c.name} for c in event.tool_calls.calls]
            out.append(message)
        elif isinstance(event, ToolResultsEvent):
            out.extend(
                {"role": "tool", "tool_call_id": r.parent_id, "content": _tool_text(r)} for r in event.results
            )
    return out


def _tool_text(result: ToolResultEvent) -> str:
    parts = getattr(result.result, "parts", None) or []
    return "\n".join(str(getattr(p, "content", None) or getattr(p, "data", "")) for p in parts)


__all__ = ["TURN", "OmiumMiddleware"]
