"""One execution of a crew inside an Omium run: its tasks as recorded calls, checkpoints, stop state.

Each task a crew runs takes the run's next position, the way an Omium step does: when it finishes,
its ``TaskOutput`` is stored by content address as the step's output and a ``task-N`` checkpoint
lists the outputs so far. When the run is resumed, the finished tasks' outputs are put back on the
crew's tasks and CrewAI's own resume path (``checkpoint_kickoff_event_id`` set, outputs present)
starts at the first unfinished task — finished tasks, and the tools they called, do not run again.
A crew must therefore run its tasks in the same order when it is resumed (true of sequential and
hierarchical crews; a ``ConditionalTask`` that skipped differently ends the restored stretch there).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from crewai.tasks.task_output import TaskOutput
from opentelemetry.trace import Span

from omium.errors import NonDeterminismError
from omium.sdk import serde
from omium.sdk.calls import record_call
from omium.sdk.checkpoint import record_checkpoint
from omium.sdk.context import RunContext
from omium.sdk.store import StepRecord, now_us

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
class TaskCall:
    """A task running now: where it stands in the run and its span."""

    task: Any
    name: str
    agent: str
    position: int
    key: str
    occurrence: int  # the agent's own task number, from 1
    started_at: int
    request: str
    span: Span | None = None


class Session:
    """The tasks of one execution of a crew in an Omium run."""

    def __init__(self, context: RunContext, otel_parent: Any) -> None:
        self.context = context
        self.otel_parent = otel_parent  # the run's span: task spans hang under it
        self.occurrences: dict[str, int] = {}
        self.open: dict[str, TaskCall] = {}  # by CrewAI task id
        self.stop: Stop | None = None
        self.executed = 0
        self.replayed = 0

    # --- resuming
    def restore(self, tasks: list[Any]) -> int:
        """Put the recorded outputs of the finished leading tasks back on ``tasks``; how many."""
        context = self.context
        restored = 0
        for task in tasks:
            position = context.next_position
            recorded = context.recorded.get(position)
            if (
                recorded is None
                or recorded.status != "completed"
                or (recorded.kind, recorded.name) != (TASK_KIND, task_name(task))
            ):
                break
            context.take_position()
            data = serde.loads(context.store.get_blob(recorded.output_hash))
            task.output = decode_output(data, task)
            role = agent_role(task) or recorded.agent
            self.occurrences[role] = self.occurrences.get(role, 0) + 1
            context.next_checkpoint_seq += 1  # its checkpoint is recorded already
            context.replayed += 1
            self.replayed += 1
            restored += 1
        return restored

    # --- running
    def begin(self, task: Any, agent: str, request: str) -> TaskCall:
        """Take the next position for ``task``.

        Raises:
            NonDeterminismError: the record has another call at this position.
        """
        context = self.context
        position = context.take_position()
        name = task_name(task)
        recorded = context.recorded.get(position)
        if recorded is not None and (recorded.kind, recorded.name) != (TASK_KIND, name):
            raise NonDeterminismError(
                f"run {context.run_id!r} position {position}: the recording has {recorded.kind} "
                f"{recorded.name!r} but the crew ran task {name!r}; a resumed crew must run its "
                "tasks in the same order"
            )
        self.occurrences[agent] = self.occurrences.get(agent, 0) + 1
        call = TaskCall(
            task=task,
            name=name,
            agent=agent,
            position=position,
            key=context.call_key_for(position),
            occurrence=self.occurrences[agent],
            started_at=now_us(),
            request=request,
        )
        self.open[str(task.id)] = call
        return call

    def complete(self, call: TaskCall, output: TaskOutput) -> str:
        """Record a finished task and checkpoint the crew after it; returns the output's hash."""
        store = self.context.store
        output_hash = store.put_blob(serde.dumps(encode_output(output)))
        step = self._step(call, "completed", output_hash=output_hash)
        self.context.recorded[call.position] = step
        self._checkpoint(call)
        self.context.executed += 1
        self.executed += 1
        return output_hash

    def fail(self, call: TaskCall, error: str) -> None:
        """Record a task that did not finish (it runs again when the run is resumed)."""
        self._step(call, "failed", error=error)

    def stop_with(self, stop: Stop) -> Stop:
        """Stop the crew (the first stop wins)."""
        if self.stop is None:
            self.stop = stop
        return self.stop

    def _step(self, call: TaskCall, status: str, output_hash: str = "", error: str = "") -> StepRecord:
        return record_call(
            self.context,
            position=call.position,
            kind=TASK_KIND,
            name=call.name,
            agent=call.agent,
            status=status,
            inputs={"task": call.name, "agent": call.agent, "context": call.request},
            key=call.key,
            started_at=call.started_at,
            output_hash=output_hash,
            error=error,
        )

    def _checkpoint(self, call: TaskCall) -> None:
        # The outputs of every finished task so far (restored ones included), by position.
        record_checkpoint(
            self.context,
            f"task-{call.position}",
            0,
            {"task": call.name, "agent": call.agent},
            agent=call.agent,
        )


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
