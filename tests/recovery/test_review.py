"""One home for review decisions: what a run waits for, and approve / reject / edit of it."""

from __future__ import annotations

import json

import pytest

import omium
from omium.errors import ApprovalRequired, ConflictError, EditRefused
from omium.recovery import Policy, review, supervise
from omium.recovery.review import CARRY_ON, ON_REJECT, Decision, awaiting, gate_decision, pause_for_review
from omium.recovery.supervisor import Failure
from omium.sdk.context import current
from omium.sdk.guards import high_value
from omium.sdk.recording import begin_call
from omium.sdk.store import MemoryStore

ran: list[str] = []


def _transfer(amount: float) -> str:
    high_value(amount, "wire transfer", threshold=1000)
    ran.append(f"wired {amount:.2f}")
    return "wired"


def _ask(amount: float) -> str:
    """A gate that takes a rejection as an answer: it goes on without the operation."""
    call = begin_call("gate", "refund approval", {"amount": amount, ON_REJECT: CARRY_ON})
    if call.replayed:
        decided = call.result
    else:
        run = current()
        decision = gate_decision(run.store.get_run(run.run_id), call.key)
        if decision is None:
            waiting = ApprovalRequired(
                "refund needs approval", trigger="high_value_operation", check="refund"
            )
            call.fail(waiting)
            raise waiting
        decided = decision.__dict__
        call.complete(decided)
    if decided["decision"] == "reject":
        return f"not refunded: {decided['reason']}"
    ran.append(f"refunded {amount:.2f}")
    return "refunded"


@pytest.fixture
def store() -> MemoryStore:
    ran.clear()
    memory = MemoryStore()
    omium.init(store=memory, tracer_provider=None)
    return memory


def _stop_at_gate(store: MemoryStore, fn: object, run_id: str) -> None:
    with pytest.raises(ApprovalRequired):
        omium.run(fn, 5000.0, run_id=run_id, store=store)  # type: ignore[arg-type]
    assert store.get_run(run_id).status == "failed"


def test_a_run_stopped_at_a_gate_waits_and_an_approval_lets_it_through(store: MemoryStore) -> None:
    _stop_at_gate(store, _transfer, "wire-1")
    waiting = awaiting(store, "wire-1")
    assert waiting is not None and waiting.gate == "wire-1:0" and not waiting.paused
    assert not waiting.carries_on
    updated = review("wire-1", "approve", reviewer="ann", reason="verified by phone", store=store)
    assert updated.status == "queued" and awaiting(store, "wire-1") is None
    decision = gate_decision(updated, "wire-1:0")
    assert decision is not None and decision.approved
    assert omium.run(_transfer, 5000.0, run_id="wire-1", store=store) == "wired"
    assert ran == ["wired 5000.00"]
    (reviewed,) = [e for e in store.events("wire-1") if e.kind == "reviewed"]
    assert reviewed.actor == "ann" and reviewed.reason == "verified by phone"
    assert json.loads(reviewed.after) == {"decision": "approve", "gate": "wire-1:0", "status": "queued"}
    with pytest.raises(ConflictError, match="not paused awaiting review nor stopped at a gate"):
        review("wire-1", "approve", store=store)  # decided once


def test_rejecting_a_gate_ends_the_run_unless_the_gate_carries_on(store: MemoryStore) -> None:
    _stop_at_gate(store, _transfer, "wire-2")
    ended = review("wire-2", "reject", reason="no such customer", store=store)
    assert ended.status == "rejected"
    assert gate_decision(ended, "wire-2:0") == Decision("reject", "no such customer")

    _stop_at_gate(store, _ask, "refund-1")
    waiting = awaiting(store, "refund-1")
    assert waiting is not None and waiting.carries_on  # it said so in what it asked
    going_on = review("refund-1", "reject", reason="above the limit", store=store)
    assert going_on.status == "queued"
    assert omium.run(_ask, 5000.0, run_id="refund-1", store=store) == "not refunded: above the limit"
    assert ran == []


def test_a_decision_names_the_gate_it_was_shown(store: MemoryStore) -> None:
    _stop_at_gate(store, _transfer, "wire-3")
    with pytest.raises(ConflictError, match="waits at gate 'wire-3:0', not 'wire-3:7'"):
        review("wire-3", "approve", gate="wire-3:7", store=store)
    assert review("wire-3", "approve", gate="wire-3:0", store=store).status == "queued"


def test_a_run_waiting_for_nothing_cannot_be_reviewed(store: MemoryStore) -> None:
    assert omium.run(_transfer, 10.0, run_id="small", store=store) == "wired"
    assert awaiting(store, "small") is None
    with pytest.raises(ConflictError, match="is completed"):
        review("small", "approve", store=store)
    with pytest.raises(ValueError, match="one of approve, reject, edit"):
        review("small", "maybe", store=store)


def test_a_supervised_pause_is_decided_the_same_way(store: MemoryStore) -> None:
    policy = Policy(rollback_triggers={"high_value_operation": True})
    outcome = supervise(_ask, 5000.0, run_id="refund-2", policy=policy, store=store)
    assert outcome.status == "paused"
    waiting = awaiting(store, "refund-2")
    assert waiting is not None and waiting.paused and waiting.gate == "refund-2:0"
    with pytest.raises(EditRefused):
        review("refund-2", "approve", edits={"clerk.model": "gpt-9"}, store=store)
    updated = review("refund-2", "approve", store=store)
    assert updated.status == "queued" and updated.attributes["awaiting"] == ""
    assert supervise(_ask, 5000.0, run_id="refund-2", policy=policy, store=store).status == "completed"
    assert ran == ["refunded 5000.00"]


def test_an_adapters_review_gate_pause_is_decided_here_too(store: MemoryStore) -> None:
    omium.run(lambda: "done", run_id="crew-1", store=store)
    failure = Failure(
        "review_gate", "ApprovalRequired", "review before writer", 3, evidence={"gate": "k:3:review"}
    )
    incident = pause_for_review(store, "crew-1", failure)
    run = store.get_run("crew-1")
    assert run.status == "paused" and run.attributes["incident"] == incident
    (paused,) = [e for e in store.events("crew-1") if e.kind == "paused"]
    assert paused.attributes["incident"] == incident and paused.reason == "review before writer"
    review("crew-1", "edit", edits={}, reason="looked at it", store=store)
    assert store.get_run("crew-1").status == "paused"  # an edit leaves it waiting
    rejected = review("crew-1", "reject", reason="off topic", store=store)
    assert rejected.status == "rejected" and gate_decision(rejected, "k:3:review") is not None
