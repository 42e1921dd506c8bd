"""Every Company X scenario under its policy (in-memory store; the Day 5 test uses the warehouse)."""

from __future__ import annotations

import json

import pytest

from omium import workflow
from omium.errors import ConflictError
from omium.examples.company_x import workflow as company_x
from omium.recovery import incidents, resume, review, supervise
from omium.recovery.policy import Policy
from omium.sdk import serde
from omium.sdk.guards import register_detector, unregister_detector
from omium.sdk.store import MemoryStore

waits: list[float] = []


def recorded_sleep(seconds: float) -> None:
    waits.append(seconds)


@pytest.fixture
def store() -> MemoryStore:
    waits.clear()
    return MemoryStore()


def onboard(store: MemoryStore, customer: str, scenario: str) -> object:
    company_x.seed_customer(store, customer)
    return supervise(
        company_x.onboard_customer, customer, scenario, run_id=customer, store=store, sleep=recorded_sleep
    )


@pytest.mark.parametrize("scenario", ["ok", "transient", "race"])
def test_healthy_runs_complete_without_an_incident(store: MemoryStore, scenario: str) -> None:
    outcome = onboard(store, f"c-{scenario}", scenario)
    assert outcome.status == "completed" and not outcome.incident  # type: ignore[attr-defined]
    assert company_x.WORLD.send_attempts[f"c-{scenario}"] == 1
    if scenario == "transient":
        tool = next(s for s in store.steps("c-transient") if s.name.endswith("fetch_customer"))
        assert tool.attempt == 3  # two timeouts absorbed by the tool's retry


def test_a_race_on_the_order_loses_no_update(store: MemoryStore) -> None:
    onboard(store, "c-race", "race")
    for _ in range(200):  # fulfilment's thread finishes its five updates
        latest = store.read_state("orders", "order-c-race")
        order = serde.loads(store.get_blob(latest.value_hash)) if latest else {}
        if order.get("packing_slip") == 5:
            break
        __import__("time").sleep(0.01)
    assert order["status"] == "offer_sent" and order["packing_slip"] == 5


def test_a_one_off_hallucination_is_rolled_back_and_retried(store: MemoryStore) -> None:
    outcome = onboard(store, "c-flaky", "flaky_hallucination")
    assert outcome.status == "completed"  # type: ignore[attr-defined]
    assert (outcome.retries, outcome.rollbacks, outcome.checkpoint) == (1, 1, "credit_scored")  # type: ignore[attr-defined]
    assert len(waits) == 1 and 1.0 <= waits[0] <= 1.2
    (incident,) = incidents(store, "c-flaky")
    assert incident.stages == ["detected", "rolled_back", "retried", "completed"]
    rolled = incident.events[1]
    assert json.loads(rolled.after)["checkpoint"] == "credit_scored"
    assert rolled.attributes["agents"] == "terms_generator"  # the minimal window: one agent
    (email,) = company_x.WORLD.emails_to("c-flaky")
    assert "0% APR" not in email["body"]


def test_a_detector_catches_an_unsupported_claim(store: MemoryStore) -> None:
    register_detector(company_x.UNSUPPORTED_CLAIMS)
    try:
        outcome = onboard(store, "c-claim", "unsupported_claim")
    finally:
        unregister_detector("unsupported_claim")
    assert outcome.status == "completed"  # type: ignore[attr-defined]
    (incident,) = incidents(store, "c-claim")
    assert incident.trigger == "hallucination_detected"
    assert "guaranteed approval" in incident.events[0].reason
    assert "guaranteed" not in company_x.WORLD.emails_to("c-claim")[0]["body"]


def test_a_stale_handoff_is_redone_from_before_it_was_sent(store: MemoryStore) -> None:
    outcome = onboard(store, "c-stale", "stale")
    assert outcome.status == "completed"  # type: ignore[attr-defined]
    assert outcome.checkpoint == "application_received"  # type: ignore[attr-defined]
    (incident,) = incidents(store, "c-stale")
    assert (
        incident.trigger == "stale_handoff"
        and "customers/c-stale changed v1 -> v2" in incident.events[0].reason
    )
    (email,) = company_x.WORLD.emails_to("c-stale")
    assert "Jane Doe-Smith" in email["body"]  # the corrected name reached the customer


def test_a_high_value_offer_waits_for_approval(store: MemoryStore, webhook: object) -> None:
    outcome = onboard(store, "c-big", "high_value")
    assert outcome.status == "paused" and outcome.failure.trigger == "high_value_operation"  # type: ignore[attr-defined]
    assert store.get_run("c-big").attributes["awaiting"] == "approval"
    assert company_x.WORLD.send_attempts["c-big"] == 0
    with pytest.raises(ConflictError, match="awaiting approval"):
        supervise(company_x.onboard_customer, "c-big", "high_value", run_id="c-big", store=store)
    review("c-big", "approve", reviewer="risk-officer", store=store)
    assert resume("c-big", store=store).status == "completed"
    assert company_x.WORLD.send_attempts["c-big"] == 1
    assert "$25,000" in company_x.WORLD.emails_to("c-big")[0]["body"]


def test_a_rejected_run_ends(store: MemoryStore) -> None:
    onboard(store, "c-bad", "hallucination")
    review("c-bad", "reject", reviewer="bob", reason="customer withdrew", store=store)
    assert store.get_run("c-bad").status == "rejected"
    with pytest.raises(ConflictError):
        review("c-bad", "approve", store=store)
    assert company_x.WORLD.send_attempts["c-bad"] == 0


@workflow
def boom() -> None:
    raise KeyError("no such account")


def test_failures_the_policy_does_not_name_fail_the_run(store: MemoryStore) -> None:
    outcome = supervise(
        boom,
        run_id="boom",
        store=store,
        policy=Policy.from_yaml("rollback_triggers: {policy_violation: true}"),
    )
    assert outcome.status == "failed" and store.get_run("boom").status == "failed"
    assert incidents(store, "boom")[0].stages == ["detected", "failed"]
    named = Policy.from_yaml(
        "rollback_triggers: {exception: [KeyError]}\nretry_policy: {max_retries: 2, backoff: fixed(1s), condition: always}"
    )
    outcome = supervise(boom, run_id="boom2", store=store, policy=named, sleep=recorded_sleep)
    assert outcome.status == "failed" and outcome.retries == 2
    assert incidents(store, "boom2")[0].stages == [
        "detected",
        "retried",
        "detected",
        "retried",
        "detected",
        "failed",
    ]


def test_a_fork_inherits_the_handoffs_sent_before_its_checkpoint(store: MemoryStore) -> None:
    from omium import fork

    onboard(store, "c-fork", "ok")
    branch = fork(
        "c-fork",
        "credit_scored",
        overrides={"terms_generator.prompt": company_x.FIXED_PROMPT},
        new_run_id="c-fork-b",
        store=store,
    )
    inherited = store.handoffs("c-fork-b", "credit_scorer->terms_generator")
    assert [(m.status, m.receive_key) for m in inherited] == [("sent", "")]  # received after the fork point
    assert [m.status for m in store.handoffs("c-fork-b", "kyc_verification_agent->credit_scorer")] == [
        "acked"
    ]
    assert resume(branch.run_id, store=store).status == "completed"
    assert company_x.WORLD.send_attempts["c-fork"] == 2  # the branch sent its own offer
