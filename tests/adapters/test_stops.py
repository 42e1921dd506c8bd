"""settle() records an adapter's own stops, and only those."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from omium.adapters import stops
from omium.errors import ApprovalRequired, HandoffRejected
from omium.sdk.store import MemoryStore, RunRecord


@dataclass(frozen=True)
class _Stop:
    kind: str
    agent: str = "credit"
    position: int = 1
    evidence: dict[str, Any] = field(default_factory=dict)


def _store() -> MemoryStore:
    store = MemoryStore()
    store.create_run(RunRecord("r", "flow"))
    return store


def test_a_rejected_handoff_is_a_failure_in_the_audit_trail() -> None:
    store = _store()
    error = HandoffRejected("hand-off kyc->credit rejected: verified", "verified")
    stop = _Stop(stops.HANDOFF_REJECTED, evidence={"incident": "i-1"})
    assert stops.settle(store, "r", error, stop, {"task": "score"}) == "rejected"
    [event] = [e for e in store.events("r") if e.kind == "failed"]
    assert "kyc->credit" in event.reason


def test_a_review_gate_pauses_the_run_awaiting_review() -> None:
    store = _store()
    error = ApprovalRequired("review before email", trigger="review_gate")
    stop = _Stop(stops.AWAITING_REVIEW, evidence={"gate": "r:3:review", "gate_name": "review before email"})
    assert stops.settle(store, "r", error, stop, {"task": "send offer"}) == "paused"
    run = store.get_run("r")
    assert run.status == "paused" and run.attributes["awaiting"] == "review"


def test_errors_that_are_not_the_adapters_own_stop_are_left_to_the_caller() -> None:
    store = _store()
    rejected = HandoffRejected("from elsewhere")
    assert stops.settle(store, "r", rejected, None, {}) is None
    assert stops.settle(store, "r", rejected, _Stop(stops.AWAITING_REVIEW), {}) is None
    assert (
        stops.settle(store, "r", ApprovalRequired("x", trigger="t"), _Stop(stops.HANDOFF_REJECTED), {})
        is None
    )
    assert store.get_run("r").status == "running" and store.events("r") == []
