"""Hand-offs are validated by Omium: a rejected one stops the run, with the reason recorded."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from agents import Agent, Runner, handoff
from agents.testing import ScriptedModel, function_call

import omium
from omium.adapters.openai_agents import agent_workflow, handoff_validator
from omium.errors import HandoffRejected
from omium.testing import Runtime
from tests.adapters.openai_agents import flows


def _hand_off(arguments: dict[str, Any]) -> list[Any]:
    return [function_call("transfer_to_billing", arguments, call_id="h1")]


def test_a_hand_off_breaking_its_constraints_stops_the_run(rt: Runtime) -> None:
    triage, model = flows.support([_hand_off({"customer": "jane", "amount": -5.0}), flows.ANSWER])
    with pytest.raises(HandoffRejected, match="below the minimum 0") as caught:
        omium.run(agent_workflow(triage, name="support"), "refund me", run_id="bad-handoff")
    assert "amount" in caught.value.reason
    # Billing never ran: one model call (triage's), no tool call.
    assert len(model.calls) == 1 and not flows.executed
    run = rt.store.get_run("bad-handoff")
    assert run.status == "failed" and "HandoffRejected" in run.error and "minimum" in run.error
    (message,) = rt.store.handoffs("bad-handoff", "triage->billing")
    assert (message.status, message.sender, message.receiver) == ("rejected", "triage", "billing")
    assert "below the minimum" in message.reason and message.schema_name == "Ticket"
    (event,) = [e for e in rt.store.events("bad-handoff") if e.kind == "handoff_rejected"]
    assert event.reason == message.reason and event.attributes["channel"] == "triage->billing"
    rejected = [s for s in rt.spans.get_finished_spans() if s.name == "handoff_send triage->billing"]
    assert rejected[0].status.status_code.name == "ERROR"
    assert rejected[0].attributes["omium.handoff.verdict"] == "rejected"  # type: ignore[index]


def test_a_hand_off_breaking_its_schema_is_rejected_too(rt: Runtime) -> None:
    triage, _ = flows.support([_hand_off({"customer": "jane"})])
    with pytest.raises(HandoffRejected, match="does not match Ticket"):
        omium.run(agent_workflow(triage, name="support"), "refund me", run_id="no-amount")
    (message,) = rt.store.handoffs("no-amount", "triage->billing")
    assert message.status == "rejected" and "amount" in message.reason


def test_an_accepted_hand_off_is_sent_and_acknowledged_once(rt: Runtime) -> None:
    triage, _ = flows.support([flows.HANDOFF, flows.LOOKUP, flows.ANSWER])
    omium.run(agent_workflow(triage, name="support"), "refund me", run_id="good-handoff")
    (message,) = rt.store.handoffs("good-handoff", "triage->billing")
    assert message.status == "acked" and message.schema_name == "Ticket"
    # The hand-off tool asks the model for the data Omium checks.
    handoff_tool = triage.handoffs[0]
    assert set(handoff_tool.input_json_schema["required"]) == {"customer", "amount"}  # type: ignore[union-attr]


def test_the_filter_validates_outside_an_omium_run_too() -> None:
    model = ScriptedModel([_hand_off({"customer": "", "amount": 3})])
    billing: Agent[Any] = Agent(name="billing", model=model)
    checked = handoff(billing, input_filter=handoff_validator(constraints={"customer": {"not_empty": True}}))
    triage: Agent[Any] = Agent(name="triage", model=model, handoffs=[checked])
    with pytest.raises(HandoffRejected, match="customer: value is empty"):
        asyncio.run(Runner.run(triage, "hi"))
