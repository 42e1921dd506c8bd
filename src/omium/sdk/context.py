"""The run context: what a recorded call needs, shared by the run and kept per task.

Two objects, two lifetimes:

* :class:`RunContext` — one per execution of a run, shared by every task and thread of it: the
  run id, the store, the recording loaded at start, the lease's fencing token, rollbacks.
* :class:`Scope` — one per task or thread of the run (a ContextVar, so ``asyncio`` copies it into
  each task): where that task stands (its next call id), which agent is running, the call
  executing now. Nothing that depends on scheduling lives in shared fields.

**Call ids.** Every recorded call gets an id that is the same on every execution of the same code,
whatever the interleaving: a hierarchical position. The run's own task counts ``0, 1, 2, ...``; a
task spawned while the run is in progress (``asyncio.gather``, ``TaskGroup``, ``create_task``, or a
thread started with :func:`omium.sdk.concurrency.spawn`) takes the parent's next number as it is
*created* (synchronously, in the parent, so in program order) and counts inside it: ``3.0, 3.1``.
A sequential run's call ids are ``"0", "1", ...``, its positions.

**Positions** stay integers: the slot a call's records are stored under, in the order calls first
ran (what the console numbers). A call recorded before keeps its slot; a new one takes the next.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterable
from contextvars import ContextVar, Token
from dataclasses import dataclass, field
from typing import Any

from omium.errors import NotFoundError, OmiumError, OutsideRunError
from omium.sdk.store import CheckpointRecord, CheckpointStore, StepRecord


class StopReached(BaseException):
    """A test fix got past the failed call: the run stops here (a BaseException, so that user
    code catching ``Exception`` cannot swallow it)."""

    def __init__(self, position: int) -> None:
        super().__init__(f"stopped before position {position}")
        self.position = position


class UnsupportedConcurrency(OmiumError):
    """Two tasks or threads share one place in a run (a thread that copied the run's context
    without :func:`omium.sdk.concurrency.spawn`): their calls cannot be told apart on resume."""


def call_order(call_id: str) -> tuple[int, ...]:
    """The sort key of a call id: ``"3.10"`` after ``"3.9"``, children right after their spawn."""
    return tuple(int(part) for part in call_id.split(".")) if call_id else ()


def step_call_id(step: StepRecord) -> str:
    """A recorded call's id (records written before call ids existed: their position)."""
    return step.call_id or str(step.position)


def checkpoint_call_id(checkpoint: CheckpointRecord) -> str:
    """Where a checkpoint stands: the id of the first call after it."""
    return checkpoint.call_id or str(checkpoint.step_index)


def key_generation(key: str) -> int:
    """The generation in an idempotency key ``RUN:CALL[:gN]`` (0 without one)."""
    tail = key.rsplit(":", 1)[-1]
    return int(tail[1:]) if tail.startswith("g") and tail[1:].isdigit() else 0


def key_call_id(key: str, run_id: str) -> str:
    """The call id in an idempotency key of ``run_id`` ('' if the key is not one of its calls')."""
    if not key.startswith(f"{run_id}:"):
        return ""
    call_id = key[len(run_id) + 1 :].split(":", 1)[0]
    return call_id if call_id and all(p.isdigit() for p in call_id.split(".")) else ""


def step_generation(step: StepRecord) -> int:
    """The generation a recorded call ran in (older records carry it only in their key)."""
    return step.generation or key_generation(step.idempotency_key)


def _whoami() -> tuple[int, Any]:
    """This thread, and the asyncio task running in it (None outside one)."""
    try:
        task = asyncio.current_task()
    except RuntimeError:  # no running event loop in this thread
        task = None
    return threading.get_ident(), task


@dataclass
class Scope:
    """Where one task or thread of a run stands. Only its owner uses it (checked at each call)."""

    run: RunContext
    prefix: str = ""  # "" for the run's own task, "3." for the task spawned at call id 3
    next: int = 0
    agents: tuple[str, ...] = ()
    call_key: str = ""  # the idempotency key of the recorded call executing in this scope
    # Steps recorded inside open transactions wait here until the outermost one commits.
    pending: tuple[list[StepRecord], ...] = ()
    state_reads: dict[str, int] = field(default_factory=dict)  # "namespace/key" -> version last seen
    thread: int | None = None  # adopted by the first thread / task that uses the scope
    task: Any = None

    @property
    def agent(self) -> str:
        """The innermost agent running in this scope, or ''."""
        return self.agents[-1] if self.agents else ""

    def boundary(self) -> str:
        """The id the next call of this scope will get (where a checkpoint here stands)."""
        return f"{self.prefix}{self.next}"

    def claim(self) -> None:
        """Check that the caller owns this scope (adopting it on first use)."""
        thread, task = _whoami()
        if self.thread is None:
            self.thread = thread
        if task is not None and task is not self.task:
            if self.task is None or self.task.done():  # first use, or a finished event loop's task
                self._adopt(task)
                task = self.task
        if self.thread != thread or (task is not None and task is not self.task):
            raise UnsupportedConcurrency(
                f"run {self.run.run_id!r}: two threads or tasks are recording calls from one place "
                "in the run, so their calls could not be told apart on resume. Start threads with "
                "omium.spawn(...) or omium.ThreadPoolExecutor (asyncio tasks need nothing)."
            )

    def _adopt(self, task: Any) -> None:
        from omium.sdk.concurrency import ensure_task_scopes

        self.task = task
        ensure_task_scopes(task.get_loop())  # tasks this one spawns get scopes of their own

    def take(self) -> str:
        """The id of the next call (or spawned task) of this scope."""
        self.claim()
        call_id = f"{self.prefix}{self.next}"
        self.next += 1
        return call_id

    def child(self) -> Scope:
        """The scope of a task or thread spawned here now (it takes this scope's next id)."""
        return Scope(
            run=self.run,
            prefix=f"{self.take()}.",
            agents=self.agents,
            pending=self.pending,
            state_reads=dict(self.state_reads),
        )


@dataclass
class RunContext:
    """State of one execution of a run, shared by all of its tasks and threads."""

    run_id: str
    workflow: str
    store: CheckpointStore
    recorded: dict[str, StepRecord] = field(default_factory=dict)  # live completed calls by call id
    positions: dict[str, int] = field(default_factory=dict)  # every call id ever stored -> its slot
    next_position: int = 0  # the next free slot
    checkpoint_seqs: dict[tuple[str, str], int] = field(default_factory=dict)  # (call id, name) -> seq
    next_checkpoint_seq: int = 0
    # Next hand-off sequence number per channel this run sends on (kept in step with replays).
    channel_seq: dict[str, int] = field(default_factory=dict)
    seq_by_key: dict[str, int] = field(default_factory=dict)  # a retried send keeps its number
    executed: int = 0  # calls that really ran (not served from the recording)
    replayed: int = 0  # calls served from the recording
    answered: set[str] = field(default_factory=set)  # call ids served from the recording
    verify_only: bool = False  # a verification replay: execute nothing, write nothing
    # After a rollback, calls at or after its boundary belong to a new generation: their
    # idempotency keys differ from the rolled-back attempt's, so they really run again.
    generation: int = 0
    rollbacks: list[tuple[int, str]] = field(default_factory=list)  # (generation, call id), oldest first
    # Agents' editable configuration: defaults by agent, and "agent.field" overrides of this run.
    agent_configs: dict[str, dict[str, Any]] = field(default_factory=dict)
    overrides: dict[str, Any] = field(default_factory=dict)
    # Set by the recovery supervisor: the run's policy (high-value threshold) and extra detectors.
    policy: Any = None
    detectors: list[Any] = field(default_factory=list)
    # A test fix stops the run once the call at this position has passed.
    stop_after: int | None = None
    # The lease this execution holds: every write presents its fencing token.
    fence: int = 0
    holder: str = ""
    lost: BaseException | None = None  # set when the lease was lost: the next call raises it
    # An operator's stop request (omium.sdk.stop.RunStopped), seen by a write or a renewal: the
    # next recorded call raises it before it executes.
    stop: BaseException | None = None
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    root: Scope | None = field(default=None, repr=False)
    # Recorded results, fetched together at the first replayed call (one read, not one per call).
    values: dict[str, bytes] | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.root is None:
            self.root = Scope(self)

    def recorded_value(self, digest: str) -> bytes:
        """A recorded result's bytes; the first asked fetches every recorded result in one read."""
        if self.values is None:
            wanted = {s.output_hash for s in list(self.recorded.values()) if s.output_hash}
            try:
                self.values = self.store.get_blobs(sorted(wanted))
            except NotFoundError:  # one missing value: fetch them one at a time, as asked
                self.values = {}
        found = self.values.get(digest)
        if found is None:
            found = self.values[digest] = self.store.get_blob(digest)
        return found

    def load(self, steps: Iterable[StepRecord], checkpoints: Iterable[CheckpointRecord]) -> None:
        """Take in what earlier executions stored: slots of every call, live completed calls."""
        for step in steps:
            call_id = step_call_id(step)
            self.positions[call_id] = step.position
            self.next_position = max(self.next_position, step.position + 1)
            if step.status == "completed" and not self.undone(call_id, step_generation(step)):
                self.recorded[call_id] = step
        for checkpoint in checkpoints:
            self.checkpoint_seqs[(checkpoint_call_id(checkpoint), checkpoint.name)] = checkpoint.seq
            self.next_checkpoint_seq = max(self.next_checkpoint_seq, checkpoint.seq + 1)

    def slot(self, call_id: str) -> int:
        """The storage position of ``call_id``: the one it was stored under, else the next free one."""
        with self.lock:
            position = self.positions.get(call_id)
            if position is None:
                position = self.positions[call_id] = self.next_position
                self.next_position += 1
        if self.stop_after is not None and position > self.stop_after:
            raise StopReached(position)
        return position

    def position_at(self, call_id: str) -> int:
        """The position a checkpoint at ``call_id`` stands at: that call's slot if it was stored
        before, else the next free one (the same in a run without concurrent tasks)."""
        with self.lock:
            return self.positions.get(call_id, self.next_position)

    def checkpoint_seq(self, call_id: str, name: str) -> int:
        """The sequence number of the checkpoint ``name`` at ``call_id`` (kept across resumes)."""
        with self.lock:
            seq = self.checkpoint_seqs.get((call_id, name))
            if seq is None:
                seq = self.checkpoint_seqs[(call_id, name)] = self.next_checkpoint_seq
                self.next_checkpoint_seq += 1
            return seq

    def generation_of(self, call_id: str) -> int:
        """The generation the call ``call_id`` runs in now: that of the latest rollback before it."""
        order = call_order(call_id)
        return max((g for g, boundary in self.rollbacks if order >= call_order(boundary)), default=0)

    def call_key_for(self, call_id: str, generation: int | None = None) -> str:
        """The idempotency key of the call ``call_id`` (unique per call and generation; pass the
        generation when it is known already)."""
        generation = self.generation_of(call_id) if generation is None else generation
        return f"{self.run_id}:{call_id}:g{generation}" if generation else f"{self.run_id}:{call_id}"

    def undone(self, call_id: str, generation: int) -> bool:
        """Whether a call made in ``generation`` lies in a stretch a later rollback undid."""
        order = call_order(call_id)
        return any(g > generation and order >= call_order(b) for g, b in self.rollbacks)

    def rolled_back(self, key: str) -> bool:
        """Whether the call with idempotency key ``key`` lies in a stretch a later rollback undid."""
        call_id = key_call_id(key, self.run_id)
        return bool(call_id) and self.undone(call_id, key_generation(key))

    def check_lease(self) -> None:
        """Raise the lease loss, if this execution lost its lease (it must stop)."""
        if self.lost is not None:
            raise self.lost

    def check_stop(self) -> None:
        """Raise the lease loss or an operator's stop request, if either came (before a call
        executes: a call that already ran is still recorded)."""
        if self.lost is not None:
            raise self.lost
        if self.stop is not None:
            raise self.stop

    @property
    def scope(self) -> Scope:
        """The scope of the task or thread calling (the run's own if none was set)."""
        scope = _scope.get()
        return scope if scope is not None and scope.run is self else self.root  # type: ignore[return-value]

    @property
    def agent(self) -> str:
        """The innermost agent running in the calling task, or ''."""
        return self.scope.agent

    @property
    def call_key(self) -> str:
        """The idempotency key of the recorded call executing in the calling task ('' if none)."""
        return self.scope.call_key

    @property
    def state_reads(self) -> dict[str, int]:
        """Shared-state versions the calling task has read ("namespace/key" -> version)."""
        return self.scope.state_reads


_current: ContextVar[RunContext | None] = ContextVar("omium_run", default=None)
_scope: ContextVar[Scope | None] = ContextVar("omium_scope", default=None)


@dataclass(frozen=True)
class Supervision:
    """What the recovery supervisor hands to the run it starts (see :mod:`omium.recovery`)."""

    policy: Any = None
    detectors: tuple[Any, ...] = ()
    stop_after: int | None = None
    lease_seconds: float | None = None  # the run lease (workers: their command lease)
    wait: bool | float = False  # wait for a run another execution holds (a worker replacing a dead one)


supervision: ContextVar[Supervision | None] = ContextVar("omium_supervision", default=None)


def current() -> RunContext:
    """The run in progress; :class:`OutsideRunError` outside one."""
    context = _current.get()
    if context is None:
        raise OutsideRunError(
            "no Omium run in progress: call this inside a @workflow or @agent function "
            "(or start one with omium.run(fn, ...)); threads started with threading.Thread do not "
            "carry the run: start them with omium.spawn(...) or omium.ThreadPoolExecutor"
        )
    return context


def maybe_current() -> RunContext | None:
    """The run in progress, or None."""
    return _current.get()


def current_scope() -> Scope:
    """The calling task's scope in the run in progress; :class:`OutsideRunError` outside one."""
    return current().scope


def maybe_scope() -> Scope | None:
    """The calling task's scope, or None outside a run."""
    context = _current.get()
    return None if context is None else context.scope


@dataclass(frozen=True)
class Entered:
    """What :func:`enter` changed, for :func:`leave` to restore (the run and this task's scope)."""

    run: Token[RunContext | None]
    scope: Token[Scope | None]


def enter(context: RunContext) -> Entered:
    """Make ``context`` current, at its root scope; pass the result to :func:`leave`."""
    return Entered(_current.set(context), _scope.set(context.root))


def leave(entered: Entered) -> None:
    """Restore the run and the scope that were current before :func:`enter` (a run started inside
    a task of another run gives that task its own place back)."""
    _scope.reset(entered.scope)
    _current.reset(entered.run)


def enter_scope(scope: Scope) -> Token[Scope | None]:
    """Make ``scope`` the calling task's (threads and tasks Omium spawns); see :func:`leave_scope`."""
    return _scope.set(scope)


def leave_scope(token: Token[Scope | None]) -> None:
    """Undo :func:`enter_scope`."""
    _scope.reset(token)


def idempotency_key() -> str:
    """The idempotency key of the call executing now: stable across retries and resumes, and
    different for every call of the run, whichever task makes it.

    Side-effecting tools pass it to the systems they call (payment APIs, email senders) so that a
    call repeated after a crash is recognised there and applied once.
    """
    key = current().call_key
    if not key:
        raise OutsideRunError("idempotency_key() is available inside a @step or @tool call")
    return key


__all__ = [
    "Entered",
    "RunContext",
    "Scope",
    "StopReached",
    "Supervision",
    "UnsupportedConcurrency",
    "call_order",
    "checkpoint_call_id",
    "current",
    "current_scope",
    "enter",
    "enter_scope",
    "idempotency_key",
    "key_call_id",
    "key_generation",
    "leave",
    "leave_scope",
    "maybe_current",
    "maybe_scope",
    "step_call_id",
    "step_generation",
    "supervision",
]
