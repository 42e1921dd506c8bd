"""One team's conversation inside an Omium run: its turns, transcript and stop state.

A turn is a recorded call of the run (:func:`omium.sdk.recording.begin_call`): it takes the next
call id of the task it runs in, and a call recorded as completed answers it when the run is
resumed. AG2 runs each ``Agent.ask`` in a task of its own, which Omium places in the run when it is
created, so a turn's call id depends on where the conversation asked, never on how tasks were
scheduled: two teams talking at once in one run (``asyncio.gather``) keep their own call ids.
Within a conversation the turns must happen in the same order when it is run again — true of
sequential chats and of AG2 workflow channels, where one agent speaks at a time; a turn the
recording does not have there raises :class:`~omium.errors.NonDeterminismError` naming its call id.

A :class:`Session` is one team's conversation in one execution of a run: its turn numbers
(``turn-N`` checkpoints), transcript and stop. Concurrent conversations need separate teams.
"""

from __future__ import annotations

import weakref
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
from omium.adapters.recorded import OnCall
from omium.errors import OutsideRunError
from omium.sdk.checkpoint import record_checkpoint
from omium.sdk.context import RunContext, current
from omium.sdk.recording import Call, begin_call


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
class TurnCall(OnCall):
    """A turn about to run: who speaks, its number in the conversation, and its recorded call."""

    call: Call
    agent: str
    turn: int
    occurrence: int  # the agent's own turn number, from 1


class Session:
    """The turns of one team's conversation in one execution of a run (see :class:`Sessions`)."""

    def __init__(self, context: RunContext, team: str = "") -> None:
        # Weak: the session lives in its team, and must not keep a finished run's context alive.
        self._context = weakref.ref(context)
        self.team = team
        self.otel_context: Any = None  # the run's span, for turns AG2 runs in its own tasks
        self.conversation_id = context.run_id
        self.turns = 0
        self.occurrences: dict[str, int] = {}
        self.transcript: list[str] = []
        self.stop: Stop | None = None
        self.executed = 0
        self.replayed = 0
        self.model_calls = 0
        self.tool_calls = 0

    @property
    def context(self) -> RunContext:
        """The execution of the run this conversation belongs to."""
        context = self._context()
        if context is None:
            raise OutsideRunError(f"the execution of run {self.conversation_id!r} has ended")
        return context

    def begin(self, agent: str, request: str) -> TurnCall:
        """Take the calling task's next call for ``agent``'s turn.

        Raises:
            NonDeterminismError: the recording has another call there.
            ReplayDivergence: a verification replay reached a turn that was never completed.
        """
        call = begin_call(
            TURN_KIND, agent, inputs={"agent": agent, "turn": self.turns, "request": request}, agent=agent
        )
        self.occurrences[agent] = self.occurrences.get(agent, 0) + 1
        turn = TurnCall(call=call, agent=agent, turn=self.turns, occurrence=self.occurrences[agent])
        self.turns += 1
        return turn

    def replay(self, turn: TurnCall) -> TurnRecord:
        """The recorded turn (it does not run again)."""
        record = TurnRecord.from_data(turn.call.result)
        self.transcript.extend(record.messages)
        self.replayed += 1
        return record

    def complete(
        self, turn: TurnCall, request: str, response: ModelResponse, events: list[BaseEvent]
    ) -> TurnRecord:
        """Record a finished turn and checkpoint the conversation after it."""
        context = current()
        messages = []
        if request:
            messages.append(
                put_message(context.store, turn=turn.turn, agent=turn.agent, role="user", content=request)
            )
        messages.append(
            put_message(
                context.store,
                turn=turn.turn,
                agent=turn.agent,
                role="assistant",
                content=response.content or "",
            )
        )
        record = TurnRecord(
            agent=turn.agent,
            turn=turn.turn,
            response=encode_event(response),
            events=encode_events(events),
            messages=messages,
        )
        turn.call.complete(record.to_data())
        self.transcript.extend(messages)
        # The checkpoint holds the turn's output (the stretch from its call id on) and the transcript.
        record_checkpoint(
            context,
            f"turn-{turn.turn}",
            turn.call_id,
            {
                "turn": turn.turn,
                "agent": turn.agent,
                "team": self.team,
                "conversation": self.conversation_id,
                "transcript": list(self.transcript),
            },
            agent=turn.agent,
        )
        self.executed += 1
        return record

    def fail(self, turn: TurnCall, error: BaseException | str) -> None:
        """Record a turn that did not complete (it runs again when the run is resumed)."""
        turn.call.fail(error)

    def stop_with(self, stop: Stop) -> Stop:
        """Stop the conversation (the first stop wins)."""
        if self.stop is None:
            self.stop = stop
        return self.stop


class Sessions:
    """A team's sessions: one per execution of a run it takes part in, kept while that lasts."""

    def __init__(self, team: str) -> None:
        self.team = team
        self._by_execution: dict[int, Session] = {}

    def of(self, context: RunContext) -> Session:
        """The session of the execution ``context`` (made on first use)."""
        key = id(context)
        found = self._by_execution.get(key)
        if found is None or found._context() is not context:
            found = self._by_execution[key] = Session(context, self.team)
            weakref.finalize(context, self._by_execution.pop, key, None)
        return found


__all__ = ["Session", "Sessions", "Stop", "TurnCall"]
