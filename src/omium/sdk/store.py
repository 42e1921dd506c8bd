"""The checkpoint-store interface every backend implements, and the in-memory reference backend.

A store keeps what a durable run needs to survive a crash and be replayed: the run's status
(versioned, compare-and-set), each recorded call by its position in the run, named checkpoints,
and values by content address (a value that did not change is stored once). Backends: this
module's :class:`MemoryStore`, the warehouse (:mod:`omium.warehouse.store`), and the server's
control API. One conformance suite (``tests/sdk/store_conformance.py``) runs against all.

One execution runs a run at a time, under a :class:`RunLease`. Each acquisition gets a fencing
token (``fence``: 1, 2, 3... per run) that the execution presents with every write it makes; the
store refuses (:class:`~omium.errors.FencedOut`) a write whose fence is no longer the run's
current one, so an execution that lost its lease (paused by the GC, cut off by the network) can
never overwrite the work of the one that took over. Fence 0 is an unfenced write (the CLI, a
review, an import) and is always accepted.
"""

from __future__ import annotations

import os
import socket
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar

from omium.errors import ConflictError, FencedOut, NotFoundError, RunBusy

if TYPE_CHECKING:
    from omium.sdk.sql.memory import MemoryStore

R = TypeVar("R")

RUN_STATUSES = ("queued", "running", "paused", "failed", "completed", "rolled_back", "cancelled", "rejected")
COMMAND_STATUSES = ("queued", "claimed", "done", "failed")


def now_us() -> int:
    """Microseconds since the epoch (the resolution stores keep)."""
    return time.time_ns() // 1000


@dataclass(frozen=True)
class RunRecord:
    """One execution of a workflow. ``version`` grows by one at each status change."""

    run_id: str
    workflow: str
    status: str = "running"
    version: int = 1
    parent_run_id: str = ""
    forked_from: str = ""
    error: str = ""
    started_at: int = field(default_factory=now_us)
    updated_at: int = field(default_factory=now_us)
    attributes: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class StepRecord:
    """A recorded call (step, tool, LLM call, hand-off receive) at ``position`` in a run.

    ``call_id`` is the call's identity in the run, independent of how concurrent agents were
    scheduled (hierarchical: ``"5"``, ``"3.0.2"``); an older record without one means
    ``str(position)``. ``generation`` counts the run's rollbacks when the call was recorded, and
    ``fence`` is the lease's fencing token the write presented (0: unfenced).
    """

    run_id: str
    position: int
    kind: str
    name: str
    status: str  # "completed" | "failed"
    agent: str = ""
    attempt: int = 1
    input_hash: str = ""
    output_hash: str = ""
    error: str = ""
    idempotency_key: str = ""
    started_at: int = field(default_factory=now_us)
    ended_at: int = field(default_factory=now_us)
    call_id: str = ""
    generation: int = 0
    fence: int = 0


@dataclass(frozen=True)
class CheckpointRecord:
    """A consistent point of a run that a rollback can return to.

    ``call_id``, ``generation`` and ``fence`` as in :class:`StepRecord`: the call the checkpoint
    was taken after, the run's rollback generation, the writer's fencing token.
    """

    run_id: str
    seq: int
    name: str
    step_index: int
    state_hash: str
    agent: str = ""
    checkpoint_id: str = ""
    parent_checkpoint_id: str = ""
    metadata: str = "{}"
    created_at: int = field(default_factory=now_us)
    call_id: str = ""
    generation: int = 0
    fence: int = 0

    def __post_init__(self) -> None:
        if not self.checkpoint_id:
            object.__setattr__(self, "checkpoint_id", f"{self.run_id}:{self.seq}")


@dataclass(frozen=True)
class HandoffRecord:
    """A message from one agent to another on ``channel`` (``sender->receiver``), by sequence.

    ``status`` goes ``sent`` -> ``acked`` or ``rejected`` (with ``reason``); each change is a new
    ``version`` of the same (run, channel, seq). ``fence`` is the sender's fencing token (0:
    unfenced).
    """

    run_id: str
    channel: str
    seq: int
    sender: str
    receiver: str
    payload_hash: str
    schema_name: str = ""
    status: str = "sent"
    reason: str = ""
    version: int = 1
    send_key: str = ""
    receive_key: str = ""
    created_at: int = field(default_factory=now_us)
    # Shared-state versions the sender had read ("namespace/key" -> version): if one has moved on
    # by the time the message is received, the message is stale.
    depends_on: dict[str, int] = field(default_factory=dict)
    # The producer's span, so the consumer's span can link to it.
    trace_id: str = ""
    span_id: str = ""
    fence: int = 0


@dataclass(frozen=True)
class StateVersion:
    """One version of a shared-state key: ``version`` counts writes from 1."""

    namespace: str
    key: str
    version: int
    value_hash: str
    writer: str = ""
    run_id: str = ""
    written_at: int = field(default_factory=now_us)


@dataclass(frozen=True)
class RunLease:
    """The right of one execution (``holder``) to run ``run_id`` until ``lease_until``.

    ``fence`` is the lease's fencing token: it grows by one at each acquisition of the run (from
    1), and every write the execution makes presents it. ``lease_until`` and ``acquired_at`` are
    microseconds since the epoch; a released lease has ``lease_until`` 0. ``version`` counts the
    changes to the run's lease record (acquisitions, renewals, releases), so the latest one wins
    in append-only storage. ``stop`` is an operator's request to the execution holding it
    (``pause`` or ``cancel``, see :mod:`omium.sdk.stop`; '' if none), made by ``stop_by``; a new
    acquisition clears it.
    """

    run_id: str
    holder: str
    fence: int
    lease_until: int
    acquired_at: int
    version: int = 1
    stop: str = ""
    stop_by: str = ""


def next_run_version(
    current: RunRecord,
    expected_version: int,
    *,
    status: str,
    error: str = "",
    attributes: dict[str, str] | None = None,
) -> RunRecord:
    """The compare-and-set every backend applies to a run: the next version, or ConflictError."""
    if current.version != expected_version:
        raise ConflictError(f"run {current.run_id!r} is at version {current.version}, not {expected_version}")
    return replace(
        current,
        status=status,
        error=error,
        version=current.version + 1,
        updated_at=now_us(),
        attributes=current.attributes | (attributes or {}),
    )


def next_state_version(
    current: StateVersion | None,
    namespace: str,
    key: str,
    expected_version: int,
    value_hash: str,
    writer: str = "",
    run_id: str = "",
) -> StateVersion:
    """The compare-and-set every backend applies to a shared-state key."""
    version = current.version if current else 0
    if version != expected_version:
        raise ConflictError(f"{namespace}/{key} is at version {version}, not {expected_version}")
    return StateVersion(namespace, key, version + 1, value_hash, writer, run_id)


@dataclass(frozen=True)
class EventRecord:
    """An audit event: who did what to a run, why, and what changed (``before`` -> ``after``)."""

    event_id: str
    run_id: str
    kind: str
    actor: str = "omium"
    reason: str = ""
    before: str = ""
    after: str = ""
    attributes: dict[str, str] = field(default_factory=dict)
    ts: int = field(default_factory=now_us)


@dataclass(frozen=True)
class CommandRecord:
    """Work for a worker (start, resume, retry, replay, fork, test-fix a run), leased while it runs.

    ``status`` goes ``queued`` -> ``claimed`` (by ``worker`` until ``lease_until``) -> ``done`` or
    ``failed``; a claim whose lease ran out (its worker died) can be claimed again.
    """

    command_id: str
    run_id: str
    kind: str
    payload: str = "{}"
    status: str = "queued"
    version: int = 1
    worker: str = ""
    lease_until: int = 0
    attempts: int = 0
    result: str = ""
    created_at: int = field(default_factory=now_us)
    updated_at: int = field(default_factory=now_us)


def layered(under: Iterable[R], top: Iterable[R], key: Callable[[R], int]) -> list[R]:
    """Records of a store seen through a layer above it: the layer's record wins for each key."""
    merged = {key(r): r for r in under} | {key(r): r for r in top}
    return [merged[k] for k in sorted(merged)]


class CheckpointStore(ABC):
    """What durable runs are stored in. Methods are safe to call from several threads."""

    # --- content-addressed values
    @abstractmethod
    def put_blob(self, data: bytes) -> str:
        """Store ``data`` once under its SHA-256; returns the digest. Idempotent."""

    @abstractmethod
    def get_blob(self, digest: str) -> bytes:
        """The bytes stored under ``digest``; :class:`NotFoundError` if none."""

    def get_blobs(self, digests: Sequence[str]) -> dict[str, bytes]:
        """The bytes of every digest, by digest (:class:`NotFoundError` if any is unknown).

        Stores that can read many values in one round trip override this: reading a long
        history back (a LangGraph thread of 1,000 messages) is then one query, not 1,000.
        """
        return {d: self.get_blob(d) for d in dict.fromkeys(digests)}

    # --- runs
    @abstractmethod
    def create_run(self, run: RunRecord) -> RunRecord:
        """Create a run; :class:`ConflictError` if the id exists."""

    @abstractmethod
    def get_run(self, run_id: str) -> RunRecord:
        """The run's latest version; :class:`NotFoundError` if unknown."""

    @abstractmethod
    def update_run(
        self,
        run_id: str,
        expected_version: int,
        *,
        status: str,
        error: str = "",
        attributes: dict[str, str] | None = None,
        fence: int = 0,
    ) -> RunRecord:
        """Compare-and-set the run's status (merging ``attributes``); :class:`ConflictError` if its
        version moved on, :class:`FencedOut` if ``fence`` is not the run's current one."""

    @abstractmethod
    def list_runs(self, status: str | None = None, limit: int = 100) -> list[RunRecord]:
        """Runs, newest first, optionally with one status."""

    # --- recorded calls
    @abstractmethod
    def record_step(self, step: StepRecord) -> None:
        """Record a call; recording the same (run, position, attempt) again is harmless.
        :class:`FencedOut` (and nothing recorded) if ``step.fence`` is not the run's current one."""

    def record_call(self, step: StepRecord, values: Mapping[str, bytes]) -> tuple[str, str] | None:
        """Store ``values`` (content address -> bytes: the call's inputs and result) and the
        step that references them: the recorder's one write per call. A backend that can makes
        it one transaction (one commit instead of three); this default writes them in turn,
        values first, so a step never references a value that is not stored.

        Returns an operator's stop request on the run's lease as ``(request, by)`` when the write
        read the lease row anyway to check ``step.fence`` (None otherwise: this default, which
        leaves the request to the lease's renewal)."""
        for data in values.values():
            self.put_blob(data)
        self.record_step(step)
        return None

    @abstractmethod
    def steps(self, run_id: str) -> list[StepRecord]:
        """The run's calls by position, the latest record of each (by time, then attempt)."""

    # --- checkpoints
    @abstractmethod
    def add_checkpoint(self, checkpoint: CheckpointRecord) -> None:
        """Record a checkpoint (idempotent on its sequence number); :class:`FencedOut` if
        ``checkpoint.fence`` is not the run's current one."""

    @abstractmethod
    def checkpoints(self, run_id: str) -> list[CheckpointRecord]:
        """The run's checkpoints in sequence order."""

    # --- hand-offs
    @abstractmethod
    def append_handoff(self, message: HandoffRecord) -> bool:
        """Persist a sent message; False (and no change) if (run, channel, seq) exists already.
        :class:`FencedOut` if ``message.fence`` is not the run's current one."""

    @abstractmethod
    def handoffs(self, run_id: str, channel: str) -> list[HandoffRecord]:
        """The channel's messages in sequence order, latest version of each."""

    @abstractmethod
    def set_handoff_status(
        self,
        run_id: str,
        channel: str,
        seq: int,
        status: str,
        reason: str = "",
        receive_key: str = "",
        *,
        fence: int = 0,
    ) -> HandoffRecord:
        """Acknowledge or reject a message (a new version); :class:`NotFoundError` if unknown,
        :class:`FencedOut` if ``fence`` is not the run's current one."""

    # --- shared state
    @abstractmethod
    def read_state(self, namespace: str, key: str) -> StateVersion | None:
        """The latest version of a shared-state key, or None if never written."""

    @abstractmethod
    def write_state(
        self,
        namespace: str,
        key: str,
        expected_version: int,
        value_hash: str,
        *,
        writer: str = "",
        run_id: str = "",
        fence: int = 0,
    ) -> StateVersion:
        """Write version ``expected_version + 1`` if the key is at ``expected_version`` (0: absent);
        :class:`ConflictError` otherwise, so concurrent writers never lose an update silently.
        A nonzero ``fence`` must be the current one of ``run_id`` (:class:`FencedOut` otherwise)."""

    # --- run leases: one execution runs a run at a time
    @abstractmethod
    def acquire_lease(self, run_id: str, holder: str, lease_seconds: float) -> RunLease:
        """Lease the run to ``holder`` for ``lease_seconds``, with the next fencing token.

        Granted when the run has no lease, its lease expired or was released, or ``holder``
        holds it already (a new fence each time). :class:`RunBusy` (with ``holder`` and
        ``lease_until``) while another holder's lease is live; :class:`NotFoundError` for an
        unknown run.
        """

    @abstractmethod
    def renew_lease(self, run_id: str, holder: str, fence: int, lease_seconds: float) -> RunLease:
        """Extend the lease to ``lease_seconds`` from now. :class:`FencedOut` unless the run's
        current lease is ``holder``'s with this ``fence`` (an expired lease that nobody took over
        may still be renewed; a released one may not)."""

    @abstractmethod
    def release_lease(self, run_id: str, holder: str, fence: int) -> None:
        """End the lease if it is still ``holder``'s with this ``fence``; otherwise do nothing."""

    @abstractmethod
    def lease(self, run_id: str) -> RunLease | None:
        """The run's current lease record (possibly expired or released); None if never leased."""

    def request_stop(self, run_id: str, fence: int, request: str, by: str) -> RunLease | None:
        """Ask the execution holding the run's live lease of ``fence`` to stop (``request``:
        ``pause`` or ``cancel``; ``by``: who asks), a compare-and-set on the lease record.
        Returns the lease as changed, or None if that lease is no longer live (released, expired
        or taken over: the caller reads the run again). See :mod:`omium.sdk.stop`."""
        raise NotImplementedError(f"{type(self).__name__} takes no stop requests: ask the Omium server")

    # --- audit events
    @abstractmethod
    def record_event(self, event: EventRecord) -> None:
        """Append an audit event (idempotent on its id)."""

    @abstractmethod
    def events(self, run_id: str = "", limit: int = 10_000) -> list[EventRecord]:
        """Events of ``run_id`` (all runs if empty), oldest first."""

    # --- commands for workers
    @abstractmethod
    def enqueue_command(self, command: CommandRecord) -> CommandRecord:
        """Queue a command (idempotent on its id: the existing one is returned)."""

    @abstractmethod
    def commands(self, run_id: str = "", status: str = "") -> list[CommandRecord]:
        """Commands, oldest first, optionally of one run and one status."""

    @abstractmethod
    def claim_command(
        self, worker: str, lease_seconds: float, kinds: list[str] | None = None
    ) -> CommandRecord | None:
        """Lease the oldest runnable command to ``worker``: queued, or claimed with an expired
        lease, and of a run no other live lease holds. None if there is none."""

    @abstractmethod
    def renew_command(self, command_id: str, worker: str, lease_seconds: float) -> CommandRecord:
        """Extend ``worker``'s lease; :class:`ConflictError` if it no longer holds the command."""

    @abstractmethod
    def finish_command(self, command_id: str, worker: str, status: str, result: str = "") -> CommandRecord:
        """Mark a held command ``done`` or ``failed``; :class:`ConflictError` if not held by ``worker``."""

    def checkpoint(self, run_id: str, name: str) -> CheckpointRecord:
        """The latest checkpoint of ``run_id`` called ``name``; :class:`NotFoundError` if none."""
        found = [c for c in self.checkpoints(run_id) if c.name == name]
        if not found:
            self.get_run(run_id)  # an unknown run says so first
            raise NotFoundError(f"run {run_id!r} has no checkpoint {name!r}")
        return found[-1]

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release resources."""


def _check_lease_request(holder: str, lease_seconds: float) -> None:
    if not holder:
        raise ValueError("a lease needs a holder (who executes the run)")
    if not lease_seconds > 0:
        raise ValueError(f"a lease lasts more than 0 seconds, not {lease_seconds!r}")


def _iso(us: int) -> str:
    return datetime.fromtimestamp(us / 1e6, UTC).isoformat(timespec="milliseconds")


def holder_gone(holder: str) -> bool:
    """Whether ``holder`` (``host:pid:...``, see :func:`omium.sdk.lease.new_holder`) was a process
    of this host that no longer exists: a run it held after a ``kill -9`` is free at once rather
    than when its lease runs out. A reused pid only makes the run wait for the lease (safe)."""
    host, _, rest = holder.partition(":")
    pid = rest.partition(":")[0]
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except OSError:  # exists, owned by someone else
        return False
    return False


def _busy(lease: RunLease, now: int) -> RunBusy:
    return RunBusy(
        f"run {lease.run_id!r} is being executed by {lease.holder} (fence {lease.fence}); its lease "
        f"expires at {_iso(lease.lease_until)} ({(lease.lease_until - now) / 1e6:.1f} s from now) "
        "unless renewed",
        holder=lease.holder,
        lease_until=lease.lease_until,
    )


def _fenced_out(run_id: str, fence: int, current: RunLease | None) -> FencedOut:
    if current is None:
        return FencedOut(f"run {run_id!r}: fence {fence} was never issued (the run was never leased)")
    if current.fence < fence:
        return FencedOut(f"run {run_id!r}: fence {fence} was never issued (the latest is {current.fence})")
    if current.fence == fence:  # same fence, another holder: a forged or mixed-up token
        return FencedOut(f"run {run_id!r}: fence {fence} is held by {current.holder}, not by this execution")
    return FencedOut(
        f"run {run_id!r}: fence {fence} was superseded by fence {current.fence} (holder {current.holder}); "
        "this execution lost its lease"
    )


def __getattr__(name: str) -> Any:
    # MemoryStore is the control database's code on a throwaway file (SQLAlchemy): loaded on use,
    # so that importing omium stays light.
    if name == "MemoryStore":
        from omium.sdk.sql.memory import MemoryStore

        return MemoryStore
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "COMMAND_STATUSES",
    "RUN_STATUSES",
    "CheckpointRecord",
    "CheckpointStore",
    "CommandRecord",
    "EventRecord",
    "HandoffRecord",
    "MemoryStore",
    "RunLease",
    "RunRecord",
    "StateVersion",
    "StepRecord",
    "layered",
]
