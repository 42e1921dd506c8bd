"""One execution of a crew inside an Omium run: its tasks as recorded calls, checkpoints, stop state.

Each task a crew runs is a recorded call of the run (:func:`omium.sdk.recording.begin_call`) in the
task or thread that kicked the crew off, as an Omium step is: when it finishes, its ``TaskOutput``
is the call's result and a ``task-N`` checkpoint lists the crew's outputs so far. While it runs,
:func:`omium.idempotency_key` is its key and Omium calls made inside are part of it. When the run
is resumed, the finished tasks' outputs are put back on the crew's tasks and CrewAI's own resume
path (``checkpoint_kickoff_event_id`` set, outputs present) starts at the first unfinished task —
finished tasks, and the tools they called, do not run again. A crew must therefore run its tasks in
the same order when it is resumed (true of sequential and hierarchical crews; a ``ConditionalTask``
that skipped differently ends the restored stretch there); a task the recording does not have at
its place raises :class:`~omium.errors.NonDeterminismError` naming the call id.

Two crews may run at once in one run when each is kicked off in a task or thread of its own
(``omium.ThreadPoolExecutor``, ``omium.spawn``): their tasks take the call ids of their own thread.
Tasks a crew runs with ``async_execution=True`` share their crew's place from threads CrewAI starts,
which Omium refuses (:class:`~omium.sdk.context.UnsupportedConcurrency`).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any

from crewai.tasks.task_output import TaskOutput
from opentelemetry.trace import Span

from omium.adapters.recorded import OnCall
from omium.sdk.checkpoint import record_checkpoint
from omium.sdk.context import RunContext
from omium.sdk.recording import Call, begin_call, peek_recorded

TASK_KIND = "crewai.task"


def task_name(task: Any) -> str:
    """How a task is named in the run's records: its ``name``, else its description's first line."""
    if getattr(task, "name", None):
        return str(task.name)
    first = str(getattr(task, "description", "") or "task").strip().splitlines()[0]
    return first if len(first) <= 80 else first[:77] + "..."


def agent_role(task: Any, agent: Any = None) -> str:
    """The role of the agent doing ``task`` (CrewAI's agent identity)."""
    chosen = agent if agent is not None else getattr(task, "agent", None)
    return str(getattr(chosen, "role", "") or "")


def encode_output(output: TaskOutput) -> dict[str, Any]:
    """A task's output as JSON-compatible data."""
    return output.model_dump(mode="json")


def decode_output(data: dict[str, Any], task: Any) -> TaskOutput:
    """The ``TaskOutput`` stored by :func:`encode_output`, its pydantic value rebuilt as the task's model."""
    fields = dict(data)
    structured = fields.pop("pydantic", None)
    output = TaskOutput.model_validate(fields)
    model = getattr(task, "output_pydantic", None)
    if structured is not None and model is not None:
        output.pydantic = model.model_validate(structured)
    return output


@dataclass(frozen=True)
class Stop:
    """Why a crew stopped before its end.

    ``kind`` is ``handoff rejected`` or ``awaiting review``; ``error`` is what the run raises.
    """

    kind: str
    reason: str
    agent: str
    task: str
    position: int
    error: BaseException
    evidence: dict[str, Any] = field(default_factory=dict)


@dataclass
class TaskCall(OnCall):
    """A task running now: its recorded call, its span, and what it was given."""

    task: Any
    call: Call
    name: str
    agent: str
    occurrence: int  # the agent's own task number, from 1
    request: str
    span: Span | None = None
    _running: contextlib.ExitStack = field(default_factory=contextlib.ExitStack, repr=False)

    def start(self) -> None:
        """The task's own code starts (CrewAI's ``pre_step``): :meth:`Call.running` until :meth:`end`."""
        self._running.enter_context(self.call.running())

    def end(self) -> None:
        """The task's own code is over (``post_step``, or the crew stopped); idempotent."""
        self._running.close()


class Session:
    """The tasks of one execution of a crew in an Omium run."""

    def __init__(self, context: RunContext, otel_parent: Any) -> None:
        self.context = context
        self.otel_parent = otel_parent  # the run's span: task spans hang under it
        self.start = context.scope.boundary()  # where the crew's stretch of the run begins
        self.occurrences: dict[str, int] = {}
        self.open: dict[str, TaskCall] = {}  # by CrewAI task id
        self.stop: Stop | None = None
        self.executed = 0
        self.replayed = 0

    # --- resuming
    def restore(self, tasks: list[Any]) -> int:
        """Put the recorded outputs of the finished leading tasks back on ``tasks``; how many."""
        restored = 0
        for task in tasks:
            name = task_name(task)
            recorded = peek_recorded()
            if recorded is None or (recorded.kind, recorded.name) != (TASK_KIND, name):
                break  # the first task to run (a different one there fails when it begins)
            role = agent_role(task) or recorded.agent
            call = begin_call(TASK_KIND, name, agent=role)
            task.output = decode_output(call.result, task)
            self.occurrences[role] = self.occurrences.get(role, 0) + 1
            self.replayed += 1
            restored += 1
        return restored

    # --- running
    def begin(self, task: Any, agent: str, request: str) -> TaskCall:
        """Take the calling thread's next call for ``task``.

        Raises:
            NonDeterminismError: the recording has another call at this place.
            ReplayDivergence: a verification replay reached a task that was never completed.
        """
        name = task_name(task)
        call = begin_call(
            TASK_KIND, name, inputs={"task": name, "agent": agent, "context": request}, agent=agent
        )
        self.occurrences[agent] = self.occurrences.get(agent, 0) + 1
        running = TaskCall(
            task=task,
            call=call,
            name=name,
            agent=agent,
            occurrence=self.occurrences[agent],
            request=request,
        )
        self.open[str(task.id)] = running
        return running

    def complete(self, call: TaskCall, output: TaskOutput) -> str:
        """Record a finished task and checkpoint the crew after it; returns the output's hash."""
        step = call.call.complete(encode_output(output))
        # The outputs of every finished task of the crew so far (restored ones included), by call id.
        record_checkpoint(
            self.context,
            f"task-{call.call_id}",
            self.start,
            {"task": call.name, "agent": call.agent},
            agent=call.agent,
        )
        self.executed += 1
        return step.output_hash

    def fail(self, call: TaskCall, error: BaseException | str) -> None:
        """Record a task that did not finish (it runs again when the run is resumed)."""
        call.call.fail(error)

    def stop_with(self, stop: Stop) -> Stop:
        """Stop the crew (the first stop wins)."""
        if self.stop is None:
            self.stop = stop
        return self.stop


__all__ = [
    "TASK_KIND",
    "Session",
    "Stop",
    "TaskCall",
    "agent_role",
    "decode_output",
    "encode_output",
    "task_name",
]
