"""An operator's request to stop a run that is executing: pause it, or cancel it.

The request is written on the run's lease record in the control database
(:meth:`~omium.sdk.store.CheckpointStore.request_stop`, a compare-and-set on the lease the
execution holds), so any process may ask, and no process has to be reached. The execution learns
of it where it already reads its lease, never by one more query per call:

* each recorded call's write reads the lease row in its own transaction to check the fence
  (:meth:`~omium.sdk.store.CheckpointStore.record_call` answers with the request it saw);
* each lease renewal returns the lease row (stores without the first way, the remote one).

The call whose write saw the request is recorded as usual (its work is kept); the next recorded
call raises :class:`RunStopped` before it executes. The execution then ends cleanly: the run's
status becomes ``paused`` (the run holds no process until it is resumed) or ``cancelled`` (never
resumed), with an audit event naming who asked, and the lease is released.
"""

from __future__ import annotations

import json
import uuid
from typing import TYPE_CHECKING

from omium.errors import ControlSignal
from omium.sdk.store import CheckpointStore, EventRecord, RunRecord, now_us

if TYPE_CHECKING:
    from omium.sdk.context import RunContext

PAUSE = "pause"
CANCEL = "cancel"
REQUESTS = (PAUSE, CANCEL)
# Run attributes: who paused (a run paused by an operator waits for an operator's resume) or
# cancelled it.
PAUSED_BY = "paused_by"
CANCELLED_BY = "cancelled_by"
INCIDENT = "incident"  # the supervisor's incident of the run, if any: its events join it


class RunStopped(ControlSignal):
    """An operator asked the run to stop (``request``: ``pause`` or ``cancel``; ``actor``: who).

    A :class:`~omium.errors.ControlSignal`, so agent code's ``except Exception:`` cannot swallow it.
    """

    def __init__(self, run_id: str, request: str, actor: str = "") -> None:
        done = "paused" if request == PAUSE else "cancelled"
        super().__init__(f"run {run_id!r} {done} by {actor or 'an operator'}")
        self.run_id = run_id
        self.request = request
        self.actor = actor

    @property
    def status(self) -> str:
        """The run's status once stopped: ``paused`` or ``cancelled``."""
        return "paused" if self.request == PAUSE else "cancelled"


def notice(context: RunContext, request: str, actor: str) -> None:
    """Note a stop request the store answered with: the run's next recorded call raises it."""
    if request in REQUESTS and context.stop is None:
        context.stop = RunStopped(context.run_id, request, actor)


def stopped_run(context: RunContext, record: RunRecord, signal: RunStopped, agents: str) -> None:
    """Store the run as paused or cancelled (fenced: only by the execution holding the lease) and
    audit it. ``record`` is the run as this execution began it; ``agents`` its agents' JSON list."""
    store = context.store
    by = PAUSED_BY if signal.request == PAUSE else CANCELLED_BY
    store.update_run(
        context.run_id,
        record.version,
        status=signal.status,
        error=record.error,
        attributes={by: signal.actor or "operator", "agents": agents},
        fence=context.fence,
    )
    record_stop_event(store, record, signal.status, signal.actor, "at its next recorded call")


def record_stop_event(
    store: CheckpointStore, run: RunRecord, status: str, actor: str, where: str
) -> EventRecord:
    """The audit event of a run paused or cancelled by an operator (``where``: how it stopped)."""
    event = EventRecord(
        event_id=uuid.uuid4().hex,
        run_id=run.run_id,
        kind=status,
        actor=actor or "operator",
        reason=f"{status} by operator ({where})",
        before=json.dumps({"status": run.status}),
        after=json.dumps({"status": status}),
        attributes={
            INCIDENT: run.attributes.get(INCIDENT, ""),
            "request": PAUSE if status == "paused" else CANCEL,
        },
        ts=now_us(),
    )
    store.record_event(event)
    return event


__all__ = [
    "CANCEL",
    "CANCELLED_BY",
    "PAUSE",
    "PAUSED_BY",
    "REQUESTS",
    "RunStopped",
    "notice",
    "record_stop_event",
    "stopped_run",
]
