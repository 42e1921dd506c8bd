"""The public recording interface: how any code (Omium's decorators, framework adapters, advanced
users) makes a recorded call of the run in progress.

A recorded call takes the calling task's next call id (see :mod:`omium.sdk.context`), is compared
with what an earlier execution recorded there, and is either answered from the recording or run
and then recorded::

    call = begin_call("tool", "charge_card", inputs={"amount": 120})
    if call.replayed:
        receipt = call.result                      # recorded before a crash: not run again
    else:
        with call.running():                       # idempotency_key() is call.key in here
            try:
                receipt = charge(120, key=call.key)
            except Exception as error:
                call.fail(error)
                raise
        call.complete(receipt)

A call whose recording names another call raises :class:`NonDeterminismError` naming the call id
and both calls; during a verification replay a call the recording cannot answer raises
:class:`ReplayDivergence`. :func:`acting_as` attributes calls to an agent the framework runs.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from omium.errors import NonDeterminismError, ReplayDivergence, SerializationError
from omium.sdk import serde
from omium.sdk.context import RunContext, Scope, current
from omium.sdk.stop import notice
from omium.sdk.store import StepRecord, now_us

_NO_INPUTS = object()


class Call:
    """One recorded call of the run in progress (create it with :func:`begin_call`).

    Attributes:
        call_id: its scheduling-independent id in the run (``"4"``, ``"3.0.1"``).
        position: the slot its records are stored under (the order calls first ran).
        key: its idempotency key, unique per call and generation, stable across resumes.
        kind, name, agent: what it is and who made it.
        recorded: the completed record answering it, or None if it has to run.
    """

    def __init__(
        self,
        context: RunContext,
        scope: Scope,
        kind: str,
        name: str,
        *,
        agent: str | None = None,
        inputs: Any = _NO_INPUTS,
    ) -> None:
        context.check_stop()
        self.context = context
        self.scope = scope
        self.kind = kind
        self.name = name
        self.agent = scope.agent if agent is None else agent
        self.call_id = scope.take()
        self.position = context.slot(self.call_id)
        self.generation = context.generation_of(self.call_id)
        self.key = context.call_key_for(self.call_id, self.generation)
        self.started_at = now_us()
        self._inputs = inputs
        self._input_hash: str | None = None
        self._values: dict[str, bytes] = {}  # stored with the call's record, in one write
        recorded = context.recorded.get(self.call_id)
        if recorded is not None and (recorded.name, recorded.kind) != (name, kind):
            raise NonDeterminismError(
                f"run {context.run_id!r} call {self.call_id} (position {self.position}): the recording "
                f"has {recorded.kind} {recorded.name!r} by {recorded.agent or 'no agent'!r} there, but "
                f"this execution called {kind} {name!r} by {self.agent or 'no agent'!r}; workflow code "
                "must make the same calls in the same order in each task when resumed"
            )
        self.recorded: StepRecord | None = recorded
        if recorded is None and context.verify_only:
            raise ReplayDivergence(
                f"run {context.run_id!r} call {self.call_id}: replay called {kind} {name!r} but the "
                "recording has no completed call there"
            )

    @property
    def replayed(self) -> bool:
        """Whether the recording answers this call (it must not run again)."""
        return self.recorded is not None

    @property
    def result(self) -> Any:
        """The recorded result (only when :attr:`replayed`)."""
        if self.recorded is None:
            raise RuntimeError(f"call {self.call_id} {self.name!r} has no recorded result: it has to run")
        self.context.replayed += 1
        self.context.answered.add(self.call_id)
        return serde.loads(self.context.recorded_value(self.recorded.output_hash))

    @property
    def recorded_output_hash(self) -> str:
        """The content address of the recorded result ('' when the call has to run)."""
        return self.recorded.output_hash if self.recorded is not None else ""

    def set_inputs(self, inputs: Any) -> None:
        """What the call consumed (kept by content address for the step inspector)."""
        self._inputs, self._input_hash = inputs, None

    def input_hash(self) -> str:
        """The content address of the call's inputs ('' if none or not serializable); the value
        is stored with the call's record."""
        if self._input_hash is None:
            if self._inputs is _NO_INPUTS:
                self._input_hash = ""
            else:
                try:
                    self._input_hash = self._value(serde.dumps(self._inputs))
                except SerializationError:
                    self._input_hash = ""  # clients or handles are not part of the recording
        return self._input_hash

    def _value(self, data: bytes) -> str:
        """Keep ``data`` to be stored with the call's record; its content address."""
        key = serde.digest(data)
        self._values[key] = data
        return key

    @contextmanager
    def running(self) -> Iterator[Call]:
        """While the call's own code runs: :func:`omium.idempotency_key` is its key, Omium calls
        made inside are part of it (not recorded separately), and it is attributed to its agent."""
        scope = self.scope
        key, agents = scope.call_key, scope.agents
        scope.call_key = self.key
        if self.agent != scope.agent:
            scope.agents = (*agents, self.agent)
        try:
            yield self
        finally:
            scope.call_key, scope.agents = key, agents

    def complete(self, result: Any, *, attempt: int = 1, output_hash: str = "") -> StepRecord:
        """Record the call as completed with ``result`` (or an already stored ``output_hash``)."""
        if not output_hash:
            output_hash = self._value(serde.dumps(result))
        record = self._record("completed", attempt, output_hash=output_hash)
        self.context.executed += 1
        return record

    def fail(self, error: BaseException | str, *, attempt: int = 1) -> StepRecord:
        """Record a failed attempt (``error``: the exception, or ``"Type: message"``)."""
        text = error if isinstance(error, str) else f"{type(error).__name__}: {error}"
        return self._record("failed", attempt, error=text)

    def _record(self, status: str, attempt: int, output_hash: str = "", error: str = "") -> StepRecord:
        context = self.context
        record = StepRecord(
            run_id=context.run_id,
            position=self.position,
            kind=self.kind,
            name=self.name,
            status=status,
            agent=self.agent,
            attempt=attempt,
            input_hash=self.input_hash(),
            output_hash=output_hash,
            error=error,
            idempotency_key=self.key,
            started_at=self.started_at,
            ended_at=now_us(),
            call_id=self.call_id,
            generation=self.generation,
            fence=context.fence,
        )
        if context.verify_only:
            return record  # a verification replay writes nothing
        values, self._values = self._values, {}
        if self.scope.pending and status == "completed":
            for data in values.values():  # stored now: the transaction's records refer to them
                context.store.put_blob(data)
            self.scope.pending[-1].append(record)  # committed with the transaction, or never
            return record
        context.check_lease()
        stop = context.store.record_call(record, values)
        if status == "completed":
            context.recorded[self.call_id] = record
        if stop is not None:  # read with the fence: the next call stops before it executes
            notice(context, *stop)
        return record


def begin_call(kind: str, name: str, inputs: Any = _NO_INPUTS, *, agent: str | None = None) -> Call:
    """Start a recorded call of the run in progress, in the calling task's next place.

    Args:
        kind: ``step``, ``tool``, ``llm``, ``gate``, or an adapter's own kind (``crewai_task``).
        name: what is called; a resumed run must call the same kind and name here.
        inputs: what the call consumes (JSON-compatible; kept for inspection, never compared).
        agent: who makes it (default: the innermost agent running in this task).

    Raises:
        OutsideRunError: no run is in progress.
        NonDeterminismError: the recording has another call at this place.
        FencedOut: this execution lost the run's lease to another one; it must stop.
    """
    context = current()
    return Call(context, context.scope, kind, name, agent=agent, inputs=inputs)


def peek_recorded() -> StepRecord | None:
    """The completed record at the calling task's next place, without taking the place.

    Adapters that restore a framework's state in bulk (the finished leading tasks of a crew) look
    ahead with it, then take each place with :func:`begin_call`.
    """
    context = current()
    return context.recorded.get(context.scope.boundary())


def continue_at(call_id: str) -> None:
    """Continue the calling task at ``call_id``, a place of this same task recorded earlier (a
    checkpoint's :attr:`~omium.sdk.store.CheckpointRecord.call_id`).

    For adapters that restore a framework's state from a checkpoint (a stored SDK ``RunState``)
    instead of replaying the calls before it: the calls that follow keep the ids they had.

    Raises:
        ValueError: ``call_id`` is not a place of the calling task.
    """
    scope = current().scope
    prefix, _, number = call_id.rpartition(".")
    if (f"{prefix}." if prefix else "") != scope.prefix or not number.isdigit():
        raise ValueError(f"call id {call_id!r} is not a place of this task (its calls are {scope.prefix}N)")
    scope.next = int(number)


@contextmanager
def acting_as(agent: str) -> Iterator[None]:
    """Attribute the calls made inside to ``agent`` (an agent a framework runs, not an ``@agent``)."""
    scope = current().scope
    agents = scope.agents
    scope.agents = (*agents, agent)
    try:
        yield
    finally:
        scope.agents = agents


def current_agent() -> str:
    """The innermost agent running in the calling task ('' outside any)."""
    return current().agent


__all__ = ["Call", "acting_as", "begin_call", "continue_at", "current_agent", "peek_recorded"]
