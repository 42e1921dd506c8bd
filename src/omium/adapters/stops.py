"""How a framework run that Omium stopped is recorded: a rejected hand-off or a review gate.

An adapter stops a framework's run in the framework's own way (a stop message in AG2, an aborted
hook in CrewAI); the run then raises :class:`~omium.errors.HandoffRejected` or
:class:`~omium.errors.ApprovalRequired` at the run level. :func:`settle` records the ending the
same way for every adapter: a rejected hand-off as a failure in the audit trail, a review gate as
a run paused awaiting review (which ``omium review RUN --approve`` releases).
"""

from __future__ import annotations

from typing import Any, Protocol

from omium.adapters import review
from omium.errors import ApprovalRequired, HandoffRejected
from omium.recovery import audit
from omium.sdk.store import CheckpointStore

HANDOFF_REJECTED = "handoff rejected"
AWAITING_REVIEW = "awaiting review"


class StopLike(Protocol):
    """What an adapter knows of why it stopped a run."""

    @property
    def kind(self) -> str: ...

    @property
    def agent(self) -> str: ...

    @property
    def position(self) -> int: ...

    @property
    def evidence(self) -> dict[str, Any]: ...


def settle(
    store: CheckpointStore,
    run_id: str,
    error: BaseException,
    stop: StopLike | None,
    where: dict[str, Any],
) -> str | None:
    """Record how the stopped run ``run_id`` ended; returns ``rejected`` or ``paused``.

    ``where`` says where in the run it stopped (``{"turn": 3}``, ``{"task": "send offer"}``).
    Returns None when ``error`` is not the adapter's own stop (the caller re-raises it).
    """
    if stop is None:
        return None
    if isinstance(error, HandoffRejected) and stop.kind == HANDOFF_REJECTED:
        audit.record(
            store, run_id, "failed", reason=str(error), incident=str(stop.evidence.get("incident", ""))
        )
        return "rejected"
    if isinstance(error, ApprovalRequired) and stop.kind == AWAITING_REVIEW:
        review.pause(
            store,
            run_id,
            gate=str(stop.evidence["gate_name"]),
            key=str(stop.evidence["gate"]),
            agent=stop.agent,
            position=stop.position,
            message=str(error),
            evidence=where,
        )
        return "paused"
    return None


__all__ = ["AWAITING_REVIEW", "HANDOFF_REJECTED", "StopLike", "settle"]
