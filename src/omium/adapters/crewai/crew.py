"""``instrument()`` a CrewAI crew, then ``OmiumCrew.kickoff`` it as a durable Omium run.

The crew stays the team's own: its agents, tasks, tools and models are untouched. Omium attaches
through CrewAI's synchronous step hooks (``pre_step`` / ``post_step``, registered once per process
and acting only on crews being run by Omium) and its event bus (:mod:`omium.adapters.crewai.spans`):

* ``pre_step`` begins the task's recorded call (:func:`omium.sdk.recording.begin_call`), holds a
  review gate, opens its span, and enters the call's ``running()`` for the task's own code;
* ``post_step`` checks the task's hand-off, records its output and checkpoints the crew;
* a stop (rejected hand-off, review gate, Omium error) raises CrewAI's ``HookAborted``, which ends
  the kickoff without running the next task; the run then records why.
"""

from __future__ import annotations

import contextvars
import functools
import json
import threading
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from crewai import Crew
from crewai.hooks.dispatch import HookAborted, InterceptionPoint, register
from opentelemetry import context as otel_context
from opentelemetry.trace import Status, StatusCode

from omium import semconv
from omium.adapters import handoffs, review, stops
from omium.adapters.crewai import spans
from omium.adapters.crewai.session import Session, Stop, TaskCall, agent_role, task_name
from omium.adapters.handoffs import HandoffCheck
from omium.adapters.review import ReviewGate
from omium.errors import ApprovalRequired, ConflictError, GuardViolation, HandoffRejected
from omium.sdk import runs
from omium.sdk.context import current
from omium.sdk.store import CheckpointStore


@dataclass(frozen=True)
class Outcome:
    """How :meth:`OmiumCrew.kickoff` ended.

    ``status`` is ``completed``, ``rejected`` (a hand-off was rejected: ``reason`` says which and
    why; the run is stored as failed) or ``paused`` (a review gate waits for a person; the run is
    stored as paused). ``result`` is the run's stored result (``raw``, per-task ``tasks``,
    ``json``); ``output`` is CrewAI's ``CrewOutput`` when the crew ran in this call. The counts are
    of this execution: tasks that ran, tasks restored from the record, model calls.
    """

    run_id: str
    status: str
    result: dict[str, Any] | None = None
    output: Any = None
    reason: str = ""
    executed: int = 0
    replayed: int = 0
    model_calls: int = 0


@dataclass
class _Running:
    """A crew Omium is running now: its owner and the session of this execution."""

    owner: OmiumCrew
    session: Session
    model_calls: int = 0
    output: Any = None  # CrewAI's CrewOutput, once the kickoff returned
    guard_failures: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # by task id


# CrewAI task id -> the execution it belongs to (hooks are global; they act only on these tasks).
_running: dict[str, _Running] = {}
_running_lock = threading.Lock()
# The task a guardrail is judging (CrewAI runs guardrails inside the task, after pre_step).
_judging: contextvars.ContextVar[tuple[_Running, TaskCall] | None] = contextvars.ContextVar(
    "omium_crewai_task", default=None
)
_hooks_installed = False


def _install_hooks() -> None:
    global _hooks_installed
    with _running_lock:
        if _hooks_installed:
            return
        register(InterceptionPoint.PRE_STEP, _pre_step)
        register(InterceptionPoint.POST_STEP, _post_step)
        _hooks_installed = True
    spans.install()


def _running_for(ctx: Any) -> _Running | None:
    if getattr(ctx, "kind", None) != "task" or getattr(ctx, "task", None) is None:
        return None
    return _running.get(str(ctx.task.id))


def _abort(running: _Running, stop: Stop) -> HookAborted:
    running.session.stop_with(stop)
    return HookAborted(stop.reason, source="omium")


OMIUM_ERROR = "omium error"


def _fail_closed(hook: Callable[[Any], None]) -> Callable[[Any], None]:
    """CrewAI swallows a hook's exceptions (other than ``HookAborted``) and carries on; a task
    Omium could not record must not be carried past, so any error stops the crew instead."""

    @functools.wraps(hook)
    def guarded(ctx: Any) -> None:
        try:
            return hook(ctx)
        except HookAborted:
            raise
        except Exception as error:
            running = _running_for(ctx)
            if running is None:
                raise
            name = task_name(ctx.task)
            stop = Stop(
                OMIUM_ERROR, f"{type(error).__name__}: {error}", str(ctx.agent_role or ""), name, -1, error
            )
            raise _abort(running, stop) from error

    return guarded


@_fail_closed
def _pre_step(ctx: Any) -> None:
    running = _running_for(ctx)
    if running is None:
        return None
    session, owner = running.session, running.owner
    role = ctx.agent_role or agent_role(ctx.task, ctx.agent)
    call = session.begin(ctx.task, role, _text(ctx.payload))
    gate = owner.gate_for(role, call.occurrence)
    if gate is not None:
        key = review.gate_key(session.context, call.call_id)
        if not review.approved(session.context, key):
            session.open.pop(str(ctx.task.id), None)
            reason = f"{gate.name}: awaiting approval before {role}'s task {call.name!r}"
            evidence: dict[str, Any] = {
                "gate": key,
                "gate_name": gate.name,
                "task": call.name,
                "reason": gate.reason,
            }
            waiting = ApprovalRequired(reason, trigger=review.TRIGGER, check=gate.name, evidence=evidence)
            raise _abort(
                running,
                Stop(stops.AWAITING_REVIEW, reason, role, call.name, call.position, waiting, evidence),
            )
    call.span = spans.start_task_span(session, call, owner.name, owner.capture_content)
    spans.watch(str(ctx.task.id))
    _judging.set((running, call))
    call.start()  # omium.idempotency_key() in the task's tools; Omium calls inside are part of it
    return None


@_fail_closed
def _post_step(ctx: Any) -> None:
    running = _running_for(ctx)
    if running is None:
        return None
    session, owner = running.session, running.owner
    call = session.open.pop(str(ctx.task.id), None)
    if call is None:
        return None
    call.end()
    _judging.set(None)
    output = ctx.payload
    running.model_calls += spans.write_calls(
        session, call, spans.take(str(ctx.task.id)), owner.capture_content
    )
    for check in owner.checks_for(call.agent):
        verdict = check.validate(_handed_value(output))
        message = handoffs.record(session.context, check, output.raw, verdict, call.key)
        if call.span is not None:
            call.span.set_attribute(
                semconv.OMIUM_HANDOFF_VERDICT, "acked" if verdict.accepted else "rejected"
            )
        if not verdict.accepted:
            reason = f"{check.channel} rejected: {verdict.reason}"
            error = HandoffRejected(f"hand-off {reason}", verdict.reason, send_position=call.position)
            session.fail(call, error)
            _end(call, error)
            incident = uuid.uuid4().hex[:12]
            evidence = {"incident": incident, "channel": message.channel, "seq": message.seq}
            raise _abort(
                running,
                Stop(stops.HANDOFF_REJECTED, reason, call.agent, call.name, call.position, error, evidence),
            )
    session.complete(call, output)
    if call.span is not None and owner.capture_content:
        call.span.set_attribute(
            semconv.GEN_AI_OUTPUT_MESSAGES, json.dumps([{"role": "assistant", "content": output.raw}])
        )
    _end(call, None)
    return None


def _end(call: TaskCall, error: BaseException | None) -> None:
    if call.span is None:
        return
    if error is not None:
        call.span.set_attribute("error.type", type(error).__qualname__)
        call.span.set_status(Status(StatusCode.ERROR, str(error)))
    call.span.end()
    call.span = None


def _handed_value(output: Any) -> Any:
    """What a task hands on: its structured output if it has one, else its text."""
    if getattr(output, "pydantic", None) is not None:
        return output.pydantic
    if getattr(output, "json_dict", None) is not None:
        return output.json_dict
    return output.raw


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ("" if value is None else str(value))


def _result(output: Any) -> dict[str, Any]:
    """The run's stored result: the crew's final text, each task's text, and its JSON if any."""
    return {
        "raw": str(getattr(output, "raw", "")),
        "tasks": [str(t.raw) for t in getattr(output, "tasks_output", [])],
        "json": getattr(output, "json_dict", None),
    }


class OmiumCrew:
    """A CrewAI crew under Omium (made by :func:`instrument`)."""

    def __init__(
        self,
        crew: Crew,
        *,
        name: str,
        run_id: str | None = None,
        store: CheckpointStore | None = None,
        handoffs: Iterable[HandoffCheck] = (),
        reviews: Iterable[ReviewGate] = (),
        capture_content: bool | None = None,
    ) -> None:
        self.crew = crew
        self.name = name
        self.run_id = run_id
        self.store = store
        self.handoffs = list(handoffs)
        self.reviews = list(reviews)
        self._capture_content = capture_content
        self._busy = threading.Lock()

    @property
    def capture_content(self) -> bool:
        """Whether spans carry task inputs, replies and tool data (default: Omium's setting)."""
        return spans.capture_content(self._capture_content)

    def checks_for(self, agent: str) -> list[HandoffCheck]:
        """The hand-off checks on what ``agent``'s tasks hand on."""
        return [c for c in self.handoffs if c.sender == agent]

    def gate_for(self, agent: str, occurrence: int) -> ReviewGate | None:
        """The review gate before ``agent``'s task number ``occurrence``, if any."""
        return next((g for g in self.reviews if g.applies(agent, occurrence)), None)

    def kickoff(
        self,
        inputs: dict[str, Any] | None = None,
        *,
        run_id: str | None = None,
        store: CheckpointStore | None = None,
    ) -> Outcome:
        """Kick the crew off as an Omium run, or resume run ``run_id`` from its finished tasks.

        A run paused at a review gate must be approved first (``omium review RUN --approve``).

        Raises:
            ConflictError: the run awaits review or was rejected in review, or this crew is
                already running another run in this process.
            GuardViolation: a task's Omium guardrail still failed when CrewAI ran out of retries.
            Exception: whatever the crew raised (the run is stored as failed).
        """
        store = store or self.store or runs.default_store()
        run_id = run_id or self.run_id or uuid.uuid4().hex
        review.refuse_unreviewed(store, run_id)
        holder: list[_Running] = []
        flow = self._workflow(self.name, holder)
        try:
            result = runs.run(flow, inputs, run_id=run_id, store=store)
        except (HandoffRejected, ApprovalRequired) as error:
            stop = holder[0].session.stop if holder else None
            status = stops.settle(store, run_id, error, stop, {"task": stop.task} if stop else {})
            if status is None or stop is None:
                raise
            return self._outcome(run_id, status, holder, reason=stop.reason)
        return self._outcome(run_id, "completed", holder, result=result)

    def workflow(self, *, name: str | None = None) -> Any:
        """The crew as an Omium ``@workflow`` (taking the kickoff ``inputs``), registered under
        ``name`` (default: the crew's), so ``omium worker`` and :func:`omium.recovery.resume` can
        resume its runs — after ``omium review RUN --approve``, say.

        A stopped crew raises at the run level: a rejected hand-off
        :class:`~omium.errors.HandoffRejected` (a policy's ``handoff_rejected`` trigger), a review
        gate :class:`~omium.errors.ApprovalRequired`. :meth:`kickoff` turns those into an
        :class:`Outcome` and stores a gated run as paused.
        """
        return self._workflow(name or self.name, [])

    def _workflow(self, name: str, holder: list[_Running]) -> Any:
        def body(inputs: dict[str, Any] | None = None) -> dict[str, Any]:
            session = Session(current(), otel_context.get_current())
            running = _Running(self, session)
            holder.append(running)
            if not self._busy.acquire(blocking=False):
                raise ConflictError(
                    f"crew {self.name!r} is already running a run in this process; "
                    "instrument another Crew object to run two at once"
                )
            try:
                running.output = self._kick(running, inputs)
            finally:
                self._busy.release()
            return _result(running.output)

        body.__qualname__ = body.__name__ = name
        return runs.workflow(body, name=name)

    def _kick(self, running: _Running, inputs: dict[str, Any] | None) -> Any:
        crew, session = self.crew, running.session
        _install_hooks()
        restored = session.restore(list(crew.tasks))
        previous = crew.checkpoint_kickoff_event_id
        if restored:
            # CrewAI's own resume path: tasks with an output before the first without are skipped.
            crew.checkpoint_kickoff_event_id = f"omium:{session.context.run_id}"
        # A new kickoff event each time (CrewAI skips it when it thinks it resumes a kickoff of
        # its own, which leaves the kickoff's completion without a start).
        crew._kickoff_event_id = None
        with _running_lock:
            for task in crew.tasks:
                _running[str(task.id)] = running
        try:
            return crew.kickoff(inputs=inputs)
        except BaseException as error:
            failure = self._close_open(running, error)
            if session.stop is not None:
                raise session.stop.error from error
            if failure is not None:
                raise failure from error
            raise
        finally:
            for call in session.open.values():  # a task CrewAI never finished: its code is over
                call.end()
            with _running_lock:
                for task in crew.tasks:
                    if _running.get(str(task.id)) is running:
                        del _running[str(task.id)]
            crew.checkpoint_kickoff_event_id = previous
            _judging.set(None)

    def _close_open(self, running: _Running, error: BaseException) -> GuardViolation | None:
        """Record the tasks the error interrupted as failed; a guardrail that gave up becomes a
        :class:`GuardViolation` (the failure the run records)."""
        failure: GuardViolation | None = None
        session = running.session
        for task_id, call in list(session.open.items()):
            session.open.pop(task_id)
            call.end()
            running.model_calls += spans.write_calls(session, call, spans.take(task_id), self.capture_content)
            judged = running.guard_failures.get(task_id)
            # CrewAI gives up on a guardrail with "... Last error: MESSAGE": only then did the guard fail.
            if judged and session.stop is None and judged[-1]["message"] in str(error):
                last = judged[-1]
                failure = GuardViolation(
                    f"guardrail {last['guardrail']} on {call.agent}'s task {call.name!r} still failed after "
                    f"{len(judged)} attempts: {last['message']}",
                    trigger=str(last["trigger"]),
                    check=str(last["guardrail"]),
                    evidence={"task": call.name, "attempts": judged},
                )
            chosen = failure or error
            session.fail(call, chosen)
            _end(call, chosen)
        return failure

    def _outcome(
        self, run_id: str, status: str, holder: list[_Running], *, result: Any = None, reason: str = ""
    ) -> Outcome:
        running = holder[0] if holder else None
        return Outcome(
            run_id=run_id,
            status=status,
            result=result,
            output=running.output if running else None,
            reason=reason,
            executed=running.session.executed if running else 0,
            replayed=running.session.replayed if running else 0,
            model_calls=running.model_calls if running else 0,
        )


def note_guardrail(guardrail: str, trigger: str, passed: bool, message: str) -> None:
    """Record a guardrail's verdict on the task being judged (an event on its span)."""
    judged = _judging.get()
    if judged is None:
        return
    running, call = judged
    attempts = running.guard_failures.setdefault(str(call.task.id), [])
    if call.span is not None:
        call.span.add_event(
            "omium.guardrail",
            {
                "omium.guardrail.name": guardrail,
                "omium.guardrail.passed": passed,
                "omium.guardrail.message": message,
            },
        )
    if not passed:
        attempts.append({"guardrail": guardrail, "trigger": trigger, "message": message})


def instrument(
    crew: Crew,
    *,
    name: str | None = None,
    run_id: str | None = None,
    store: CheckpointStore | None = None,
    handoffs: Iterable[HandoffCheck] = (),
    reviews: Iterable[ReviewGate] = (),
    capture_content: bool | None = None,
) -> OmiumCrew:
    """Put a CrewAI crew under Omium: its tasks are traced, checkpointed, validated and resumable.

    Args:
        crew: a ``crewai.Crew`` (sequential or hierarchical), unchanged.
        name: the workflow name its runs are recorded under (default: the crew's name).
        run_id: the default run id of :meth:`OmiumCrew.kickoff` (default: a new one per run).
        store: where runs are stored (default: the store ``omium.init`` chose).
        handoffs: checks on what an agent's task hands to the next (by agent role).
        reviews: review gates that pause the crew before an agent's task until a person approves.
        capture_content: whether spans carry task inputs, replies and tool data.

    Raises:
        ValueError: a check or gate names a role that is not one of the crew's agents.

    Example::

        app = instrument(crew, handoffs=[HandoffCheck("kyc", "credit", schema=KycResult)],
                         reviews=[ReviewGate("email")])
        outcome = app.kickoff({"customer": "Ada"}, run_id="onboard-ada")
    """
    if not isinstance(crew, Crew):
        raise TypeError(f"instrument() takes a crewai.Crew, not {type(crew).__name__}")
    roles = {agent_role(task) for task in crew.tasks} | {str(a.role) for a in crew.agents}
    roles.discard("")
    app = OmiumCrew(
        crew,
        name=name or str(crew.name or "crew"),
        run_id=run_id,
        store=store,
        handoffs=handoffs,
        reviews=reviews,
        capture_content=capture_content,
    )
    for check in app.handoffs:
        if check.sender not in roles:
            raise ValueError(
                f"hand-off check on {check.sender!r}, which is not one of the crew's agents {sorted(roles)}"
            )
    for gate in app.reviews:
        if gate.before not in roles:
            raise ValueError(
                f"review gate before {gate.before!r}, which is not one of the crew's agents {sorted(roles)}"
            )
    _install_hooks()
    return app


__all__ = ["OmiumCrew", "Outcome", "instrument", "note_guardrail"]
