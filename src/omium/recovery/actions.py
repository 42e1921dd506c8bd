"""An operator's actions on a run: pause it, resume it, cancel it.

Each is decided by the control database (compare-and-set on the run's lease record or on the
run's version, never a lock in this process) and audited as what it is, by whoever asked:

* **pause** — a run being executed is asked to stop (``pause_requested``): the request is written
  on the lease its execution holds, and the execution stops at its next recorded call, stores the
  run as ``paused`` and ends, so the run holds no process (see :mod:`omium.sdk.stop`). A run nobody
  executes now (queued, rolled back, or whose executor died) is paused at once, under a lease of
  this action's own so that no execution starts meanwhile. Either way the event is ``paused``,
  "paused by operator".
* **resume** — a paused run (paused by an operator, or by the supervisor after a failure) is
  queued to continue from its recording: a worker resumes it and no completed call executes again
  (``resumed``).
* **cancel** — as pause, but the run ends ``cancelled`` and is never resumed (``cancel_requested``,
  then ``cancelled``); a paused run is cancelled at once.

A run in a state the action does not apply to is a :class:`~omium.errors.ConflictError` saying
so (the control API's 409); an unknown run a :class:`~omium.errors.NotFoundError` (404).
"""

from __future__ import annotations

from dataclasses import dataclass

from omium.errors import ConflictError, RunBusy
from omium.recovery import audit
from omium.recovery.supervisor import AWAITING_ATTRIBUTE, INCIDENT_ATTRIBUTE
from omium.recovery.worker import enqueue
from omium.sdk import lease, runs
from omium.sdk.stop import CANCEL, CANCELLED_BY, PAUSE, PAUSED_BY, record_stop_event
from omium.sdk.store import CheckpointStore, RunRecord, holder_gone, now_us

ACTIONS = ("pause", "resume", "cancel")
# The statuses each action applies to.
PAUSABLE = ("running", "queued", "rolled_back")
CANCELLABLE = ("running", "queued", "rolled_back", "paused")
RESUMABLE = ("paused",)
# A run whose lease or version keeps changing under the action this many times in a row is a bug.
_ATTEMPTS = 50
_LEASE_SECONDS = 30.0  # the action's own lease while it stops a run nobody executes


@dataclass(frozen=True)
class ActionResult:
    """What an action did.

    Attributes:
        run_id: the run.
        action: ``pause``, ``resume`` or ``cancel``.
        status: the run's status now (a running run asked to stop is still ``running``).
        effect: ``done`` (it took effect now), ``requested`` (at the run's next recorded call) or
            ``queued`` (a worker resumes it).
        message: one sentence for a person.
    """

    run_id: str
    action: str
    status: str
    effect: str
    message: str


def _refuse(run: RunRecord, action: str, allowed: tuple[str, ...]) -> ConflictError:
    said = {
        "pause": "only a running, queued or rolled-back run can be paused",
        "resume": "only a paused run can be resumed",
        "cancel": "only a running, queued, rolled-back or paused run can be cancelled",
    }[action]
    finished = " (it has finished)" if run.status in ("completed", "failed", "rejected", "cancelled") else ""
    return ConflictError(f"run {run.run_id!r} is {run.status}{finished}: {said}")


def _stop(store: CheckpointStore, run_id: str, request: str, actor: str, reason: str) -> ActionResult:
    action = "pause" if request == PAUSE else "cancel"
    allowed = PAUSABLE if request == PAUSE else CANCELLABLE
    for _ in range(_ATTEMPTS):
        run = store.get_run(run_id)  # NotFoundError: 404
        if run.status not in allowed:
            raise _refuse(run, action, allowed)
        held = store.lease(run_id)
        if held is not None and held.lease_until > now_us() and not holder_gone(held.holder):
            # An execution holds the run: ask it, on its lease; it stops at its next call.
            if held.stop == CANCEL and request == PAUSE:
                raise ConflictError(f"run {run_id!r} is being cancelled already: it cannot be paused")
            if store.request_stop(run_id, held.fence, request, actor) is None:
                continue  # that lease ended or changed hands meanwhile: look again
            audit.record(
                store,
                run_id,
                f"{action}_requested",
                actor=actor,
                reason=reason or f"{action} requested: it takes effect at the run's next recorded call",
                before={"status": run.status},
                incident=run.attributes.get(INCIDENT_ATTRIBUTE, ""),
                fence=held.fence,
            )
            return ActionResult(
                run_id,
                action,
                run.status,
                "requested",
                f"run {run_id} will {'pause' if request == PAUSE else 'be cancelled'} "
                "at its next recorded call",
            )
        # Nobody executes it: stop it here, holding its lease so that no execution starts meanwhile
        # (and a late write of an earlier execution is fenced out).
        holder = lease.new_holder()
        try:
            taken = store.acquire_lease(run_id, holder, _LEASE_SECONDS)
        except RunBusy:
            continue  # an execution started just now: ask it instead
        try:
            run = store.get_run(run_id)
            if run.status not in allowed:
                raise _refuse(run, action, allowed)
            status = "paused" if request == PAUSE else "cancelled"
            attributes = {PAUSED_BY: actor} if request == PAUSE else {CANCELLED_BY: actor, PAUSED_BY: ""}
            if request == CANCEL:
                attributes[AWAITING_ATTRIBUTE] = ""  # no review is pending on a cancelled run
            store.update_run(
                run_id, run.version, status=status, error=run.error, attributes=attributes, fence=taken.fence
            )
        finally:
            store.release_lease(run_id, holder, taken.fence)
        where = "at once: no process was executing it" + (f"; {reason}" if reason else "")
        record_stop_event(store, run, status, actor, where)
        return ActionResult(run_id, action, status, "done", f"run {run_id} {status}")
    raise ConflictError(f"run {run_id!r} kept changing while it was asked to {action}; try again")


def pause(
    run_id: str, *, store: CheckpointStore | None = None, actor: str = "operator", reason: str = ""
) -> ActionResult:
    """Pause run ``run_id``: at its next recorded call if a process executes it, else at once.

    Raises:
        NotFoundError: unknown run.
        ConflictError: the run is not running, queued or rolled back (paused, finished), or is
            being cancelled.
    """
    return _stop(store or runs.default_store(), run_id, PAUSE, actor, reason)


def cancel(
    run_id: str, *, store: CheckpointStore | None = None, actor: str = "operator", reason: str = ""
) -> ActionResult:
    """Cancel run ``run_id`` (it is never resumed): at its next recorded call if a process
    executes it, else at once (a paused run).

    Raises:
        NotFoundError: unknown run.
        ConflictError: the run has finished (completed, failed, rejected, cancelled).
    """
    return _stop(store or runs.default_store(), run_id, CANCEL, actor, reason)


def resume(
    run_id: str, *, store: CheckpointStore | None = None, actor: str = "operator", reason: str = ""
) -> ActionResult:
    """Queue paused run ``run_id`` to continue from its recording (a worker resumes it; completed
    calls are answered from the recording, not executed again). A pause awaiting a review is
    lifted too: resuming is the operator's decision.

    Raises:
        NotFoundError: unknown run.
        ConflictError: the run is not paused, or changed meanwhile.
    """
    store = store or runs.default_store()
    run = store.get_run(run_id)
    if run.status not in RESUMABLE:
        raise _refuse(run, "resume", RESUMABLE)
    store.update_run(  # a compare-and-set on the run's version: a concurrent change wins, this is a 409
        run_id,
        run.version,
        status="queued",
        error=run.error,
        attributes={PAUSED_BY: "", AWAITING_ATTRIBUTE: ""},
    )
    paused_by = run.attributes.get(PAUSED_BY) or (
        f"the supervisor, awaiting {run.attributes[AWAITING_ATTRIBUTE]}"
        if run.attributes.get(AWAITING_ATTRIBUTE)
        else "the supervisor"
    )
    # Audited before it is queued: the worker that resumes it sees its resume recorded already.
    audit.record(
        store,
        run_id,
        "resumed",
        actor=actor,
        reason=reason or "resumed by operator: queued to continue from its recording",
        before={"status": run.status, "paused_by": paused_by},
        after={"status": "queued"},
        incident=run.attributes.get(INCIDENT_ATTRIBUTE, ""),
    )
    enqueue(store, run_id, "resume")
    return ActionResult(
        run_id, "resume", "queued", "queued", f"run {run_id} queued to resume (a worker continues it)"
    )


def act(
    run_id: str,
    action: str,
    *,
    store: CheckpointStore | None = None,
    actor: str = "operator",
    reason: str = "",
) -> ActionResult:
    """Do ``action`` (one of :data:`ACTIONS`) on run ``run_id``."""
    chosen = {"pause": pause, "resume": resume, "cancel": cancel}.get(action)
    if chosen is None:
        raise ValueError(f"an action is one of {', '.join(ACTIONS)}, not {action!r}")
    return chosen(run_id, store=store, actor=actor, reason=reason)


__all__ = ["ACTIONS", "ActionResult", "act", "cancel", "pause", "resume"]
