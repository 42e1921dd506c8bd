"""Review gates: pause a run before an agent's turn (or task) until a person approves it.

A paused run holds no process. The run is stored as ``paused`` awaiting review, the way
Omium's recovery supervisor pauses runs, so the same tools act on it: ``omium review RUN
--approve`` (or :func:`omium.recovery.review`) approves the gate, and running the workflow again
with the same run id — in this process or another — takes the finished turns or tasks from the
record and carries on past the gate. AG2 and CrewAI adapters share these gates; pausing and
deciding are :mod:`omium.recovery.review`'s, the one home of review decisions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from omium.errors import ConflictError, NotFoundError
from omium.recovery.review import gate_decision, pause_for_review
from omium.recovery.supervisor import Failure, check_not_awaiting
from omium.sdk.context import RunContext
from omium.sdk.store import CheckpointStore

TRIGGER = "review_gate"


@dataclass(frozen=True)
class ReviewGate:
    """Pause before ``before``'s turn (or task) number ``occurrence`` (1: its first) until approved.

    Example:
        >>> gate = ReviewGate("reviewer", reason="a person signs off the code before review")
    """

    before: str
    occurrence: int = 1
    reason: str = ""

    @property
    def name(self) -> str:
        """The gate's name in the run's records."""
        return f"review before {self.before}" + (f" #{self.occurrence}" if self.occurrence != 1 else "")

    def applies(self, agent: str, occurrence: int) -> bool:
        """Whether the gate stands before ``agent``'s turn number ``occurrence``."""
        return agent == self.before and occurrence == self.occurrence


def gate_key(context: RunContext, call_id: str) -> str:
    """What an approval of the gate before the call ``call_id`` is stored as (stable across resumes)."""
    return f"{context.call_key_for(call_id)}:review"


def approved(context: RunContext, key: str) -> bool:
    """Whether a reviewer approved the gate ``key`` of the run."""
    decision = gate_decision(context.store.get_run(context.run_id), key)
    return decision is not None and decision.approved


def pause(
    store: CheckpointStore,
    run_id: str,
    *,
    gate: str,
    key: str,
    agent: str,
    position: int,
    message: str,
    evidence: dict[str, Any],
) -> str:
    """Store the run as paused awaiting review of ``gate``; returns the incident id.

    Approving it (``omium.recovery.review(run_id, "approve")``) adds ``key`` to the run's approvals.
    """
    failure = Failure(
        trigger=TRIGGER,
        error_type="ApprovalRequired",
        message=message,
        position=position,
        step=gate,
        agent=agent,
        check=gate,
        evidence={**evidence, "gate": key},
    )
    return pause_for_review(store, run_id, failure)


def refuse_unreviewed(store: CheckpointStore, run_id: str) -> None:
    """Refuse to run ``run_id`` again while it awaits review, or after it was rejected in review.

    Raises:
        ConflictError: the run is paused awaiting review, or was rejected.
    """
    check_not_awaiting(store, run_id)  # paused for review: the supervisor's rule
    try:
        run = store.get_run(run_id)
    except NotFoundError:
        return
    if run.status == "rejected":
        raise ConflictError(f"run {run_id!r} was rejected in review; start a new run")


__all__ = ["TRIGGER", "ReviewGate", "approved", "gate_key", "pause", "refuse_unreviewed"]
