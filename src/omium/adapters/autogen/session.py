"""One execution of a conversation inside an Omium run: its turns, transcript and stop state.

Turns are recorded calls of the run, in the order they happen: a turn takes the run's next
position, and a position recorded as completed is answered from the record when the run is
resumed. The conversation's turns must therefore happen in the same order when it is run again —
true of sequential chats and of AG2 workflow channels, where one agent speaks at a time.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ag2.events import BaseEvent, ModelResponse

from omium.adapters.autogen.recording import (
    TURN_KIND,
    TurnRecord,
    encode_event,
    encode_events,
    put_message,
)
from omium.errors import NonDeterminismError, ReplayDivergence
from omium.sdk import serde
from omium.sdk.calls import record_call
from omium.sdk.context import RunContext
from omium.sdk.store import CheckpointRecord, StepRecord, now_us


@dataclass(frozen=True)
class Stop:
    """Why a conversation stopped before its end.

    ``kind`` is ``handoff rejected``, ``awaiting review`` or ``turn failed``; the conversation ends
    with the stop message ``[omium:stop] KIND: REASON``. ``error`` is what the run raises once the
    conversation has wound down.
    """

    kind: str
    reason: str
    agent: str
    turn: int
    position: int
    error: BaseException | None = None
    evidence: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class TurnCall:
    """A turn about to run: who speaks, its number, its position in the run and its record."""

    agent: str
    turn: int
    occurrence: int  # the agent's own turn number, from 1
    position: int
    key: str
    recorded: StepRecord | None
    started_at: int


# Where a run execution keeps its session: on its RunContext, so the session lives exactly as long
# as that execution and every team whose agents take part in the run shares it.
_ATTRIBUTE = "_omium_autogen_session"


def session_of(context: RunContext) -> Session:
    """The session of this execution of the run (made on first use)."""
    found = getattr(context, _ATTRIBUTE, None)
    if not isinstance(found, Session):
        found = Session(context)
        setattr(context, _ATTRIBUTE, found)
    return found


class Session:
    """The turns of one execution of a run's conversation (see :func:`session_of`)."""

    def __init__(self, context: RunContext, otel_context: Any = None) -> None:
        self.context = context
        self.otel_context = otel_context  # the run's span, for turns AG2 runs in its own tasks
        self.conversation_id = context.run_id
        self.turns = 0
        self.occurrences: dict[str, int] = {}
        self.transcript: list[str] = []
        self.stop: Stop | None = None
        self.executed = 0
        self.replayed = 0
        self.model_calls = 0
        self.tool_calls = 0

    def begin(self, agent: str) -> TurnCall:
        """Take the next turn and position for ``agent``.

        Raises:
            NonDeterminismError: the record has another agent (or another kind of call) here.
            ReplayDivergence: a verification replay reached a turn that was never completed.
        """
        context = self.context
        position = context.take_position()
        recorded = context.recorded.get(position)
        if recorded is not None and (recorded.name, recorded.kind) != (agent, TURN_KIND):
            raise NonDeterminismError(
                f"run {context.run_id!r} position {position}: the recording has {recorded.kind} "
                f"{recorded.name!r} but the conversation gave the turn to {agent!r}; a resumed "
                "conversation must take its turns in the same order"
            )
        done = recorded if recorded is not None and recorded.status == "completed" else None
        if done is None and context.verify_only:
            raise ReplayDivergence(
                f"run {context.run_id!r} position {position}: replay reached {agent!r}'s turn, "
                "which the recording does not have"
            )
        self.occurrences[agent] = self.occurrences.get(agent, 0) + 1
        call = TurnCall(
            agent=agent,
            turn=self.turns,
            occurrence=self.occurrences[agent],
            position=position,
            key=context.call_key_for(position),
            recorded=done,
            started_at=now_us(),
        )
        self.turns += 1
        return call

    def replay(self, call: TurnCall) -> TurnRecord:
        """The recorded turn (it does not run again)."""
        assert call.recorded is not None
        record = TurnRecord.from_data(serde.loads(self.context.store.get_blob(call.recorded.output_hash)))
        self.transcript.extend(record.messages)
        self.context.next_checkpoint_seq += 1  # its checkpoint is recorded already
        self.context.replayed += 1
        self.replayed += 1
        return record

    def complete(
        self, call: TurnCall, request: str, response: ModelResponse, events: list[BaseEvent]
    ) -> TurnRecord:
        """Record a finished turn and checkpoint the conversation after it."""
        store = self.context.store
        messages = []
        if request:
            messages.append(
                put_message(store, turn=call.turn, agent=call.agent, role="user", content=request)
            )
        messages.append(
            put_message(
                store, turn=call.turn, agent=call.agent, role="assistant", content=response.content or ""
            )
        )
        record = TurnRecord(
            agent=call.agent,
            turn=call.turn,
            response=encode_event(response),
            events=encode_events(events),
            messages=messages,
        )
        output_hash = store.put_blob(serde.dumps(record.to_data()))
        step = self._step(call, "completed", request, output_hash=output_hash)
        self.context.recorded[call.position] = step
        self.transcript.extend(messages)
        self._checkpoint(call, output_hash)
        self.context.executed += 1
        self.executed += 1
        return record

    def fail(self, call: TurnCall, request: str, error: str) -> None:
        """Record a turn that did not complete (it runs again when the run is resumed)."""
        self._step(call, "failed", request, error=error)

    def stop_with(self, stop: Stop) -> Stop:
        """Stop the conversation (the first stop wins)."""
        if self.stop is None:
            self.stop = stop
        return self.stop

    def _step(
        self, call: TurnCall, status: str, request: str, output_hash: str = "", error: str = ""
    ) -> StepRecord:
        return record_call(
            self.context,
            position=call.position,
            kind=TURN_KIND,
            name=call.agent,
            agent=call.agent,
            status=status,
            inputs={"agent": call.agent, "turn": call.turn, "request": request},
            key=call.key,
            started_at=call.started_at,
            output_hash=output_hash,
            error=error,
        )

    def _checkpoint(self, call: TurnCall, output_hash: str) -> None:
        context = self.context
        name = f"turn-{call.turn}"
        state = {
            "name": name,
            "position": context.next_position,
            "outputs": {str(call.position): output_hash},
            "values": {
                "turn": call.turn,
                "agent": call.agent,
                "conversation": self.conversation_id,
                "transcript": list(self.transcript),
            },
        }
        context.store.add_checkpoint(
            CheckpointRecord(
                run_id=context.run_id,
                seq=context.next_checkpoint_seq,
                name=name,
                agent=call.agent,
                step_index=context.next_position,
                state_hash=context.store.put_blob(serde.dumps(state)),
            )
        )
        context.next_checkpoint_seq += 1


__all__ = ["Session", "Stop", "TurnCall", "session_of"]
