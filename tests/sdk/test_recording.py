"""The public recording interface: what adapters and advanced users record calls with."""

from __future__ import annotations

import pytest

import omium
from omium.errors import NonDeterminismError, OutsideRunError
from omium.sdk import serde
from omium.sdk.recording import acting_as, begin_call, continue_at, current_agent, peek_recorded
from omium.sdk.store import MemoryStore

RAN: list[str] = []


def charge(amount: int) -> dict[str, object]:
    call = begin_call("tool", "charge_card", inputs={"amount": amount})
    if call.replayed:
        return dict(call.result)
    with call.running():
        RAN.append(omium.idempotency_key())
        receipt = {"amount": amount, "key": call.key}
    call.complete(receipt)
    return receipt


def test_a_call_runs_once_and_is_answered_from_the_recording_after() -> None:
    store = MemoryStore()
    RAN.clear()

    @omium.workflow(name="recording_charge")
    def flow() -> list[dict[str, object]]:
        return [charge(10), charge(20)]

    first = omium.run(flow, run_id="rec-1", store=store)
    assert RAN == ["rec-1:0", "rec-1:1"]
    [a, _] = store.steps("rec-1")
    assert (a.call_id, a.kind, a.name, a.status, a.fence) == ("0", "tool", "charge_card", "completed", 1)
    assert serde.loads(store.get_blob(a.input_hash)) == {"amount": 10}
    store.update_run("rec-1", store.get_run("rec-1").version, status="failed")  # as after a crash
    assert omium.run(flow, run_id="rec-1", store=store) == first
    assert RAN == ["rec-1:0", "rec-1:1"]  # nothing ran again


def test_a_different_call_at_a_recorded_place_names_the_call_and_both_recordings() -> None:
    store = MemoryStore()

    @omium.workflow(name="recording_diverge")
    def flow(kind: str) -> None:
        with acting_as("billing"):
            call = begin_call(kind, "charge_card")
            if not call.replayed:
                call.complete("ok")
        failing = begin_call("tool", "email")
        failing.fail(RuntimeError("smtp down"))
        raise RuntimeError("smtp down")

    with pytest.raises(RuntimeError):
        omium.run(flow, "tool", run_id="rec-2", store=store)
    steps = store.steps("rec-2")
    assert [(s.agent, s.status, s.error) for s in steps] == [
        ("billing", "completed", ""),
        ("recording_diverge", "failed", "RuntimeError: smtp down"),
    ]
    with pytest.raises(NonDeterminismError) as diverged:
        omium.run(flow, "step", run_id="rec-2", store=store)
    message = str(diverged.value)
    assert "call 0" in message and "tool 'charge_card'" in message and "step 'charge_card'" in message
    assert "'billing'" in message


def test_outside_a_run_it_says_so() -> None:
    with pytest.raises(OutsideRunError):
        begin_call("tool", "x")
    with pytest.raises(OutsideRunError):
        peek_recorded()


def test_peek_and_continue_at_for_adapters_restoring_state() -> None:
    store = MemoryStore()
    seen: list[object] = []

    @omium.workflow(name="recording_peek")
    def flow(skip: bool) -> str:
        if skip:
            seen.append(peek_recorded())
            continue_at("2")  # state restored from a checkpoint at call 2
            with pytest.raises(ValueError, match="not a place of this task"):
                continue_at("0.1")
        else:
            for name in ("a", "b"):
                call = begin_call("step", name)
                call.complete(name)
        last = begin_call("step", "c")
        if last.replayed:
            return str(last.result)
        last.complete("c")
        assert current_agent() == "recording_peek"
        return last.call_id

    assert omium.run(flow, False, run_id="rec-3", store=store) == "2"
    store.update_run("rec-3", store.get_run("rec-3").version, status="failed")
    assert omium.run(flow, True, run_id="rec-3", store=store) == "c"
    assert seen and seen[0] is not None and seen[0].name == "a"  # type: ignore[union-attr]
