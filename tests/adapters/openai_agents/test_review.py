"""A tool that needs approval pauses the run; its RunState waits in Omium's store; approval resumes it."""

from __future__ import annotations

import pytest

import omium
from omium.adapters.openai_agents import PendingCall, agent_workflow, approve, pending_approval, reject
from omium.adapters.openai_agents.review import CHECKPOINT
from omium.errors import ApprovalRequired, ConflictError
from omium.recovery import Policy, resume, review, supervise
from omium.sdk import serde
from omium.testing import Runtime
from tests.adapters.openai_agents import flows

SCRIPT = [flows.HANDOFF, flows.LOOKUP, flows.REFUND]


def _pause(run_id: str) -> None:
    triage, _ = flows.support(SCRIPT, with_refund=True)
    with pytest.raises(ApprovalRequired, match=r"refund\(") as caught:
        omium.run(agent_workflow(triage, name="refunds"), "refund Jane", run_id=run_id)
    assert caught.value.trigger == "high_value_operation"


def test_a_gated_tool_pauses_and_an_approval_resumes_the_run(rt: Runtime) -> None:
    _pause("refund-1")
    assert flows.executed == {"lookup_account": 1}  # the refund waits
    waiting = pending_approval("refund-1")
    assert waiting is not None
    assert waiting.pending == (PendingCall("billing", "refund", "t2", '{"customer":"jane","amount":42.0}'),)
    # The SDK's run state is a blob of the run, referenced by its checkpoint.
    (checkpoint,) = [c for c in rt.store.checkpoints("refund-1") if c.name == CHECKPOINT]
    stored = serde.loads(rt.store.get_blob(checkpoint.state_hash))["values"]["run_state"]
    assert '"refund"' in stored and stored == waiting.state
    triage, model = flows.support([], with_refund=True)
    with pytest.raises(ApprovalRequired):  # running it again without a decision changes nothing
        omium.run(agent_workflow(triage, name="refunds"), "refund Jane", run_id="refund-1")
    assert flows.executed == {"lookup_account": 1} and not model.calls

    approve("refund-1", reviewer="ann", reason="customer verified")
    assert pending_approval("refund-1") is None
    # Later, in a new process: agents built afresh, the state read back from the store.
    triage, model = flows.support([flows.ANSWER], with_refund=True)
    result = omium.run(agent_workflow(triage, name="refunds"), "refund Jane", run_id="refund-1")
    assert result == "Jane is premium; refund of 42.00 sorted."
    assert flows.executed == {"lookup_account": 1, "refund": 1}
    assert len(model.calls) == 1
    assert rt.store.get_run("refund-1").status == "completed"
    (reviewed,) = [e for e in rt.store.events("refund-1") if e.kind == "reviewed"]
    assert reviewed.actor == "ann" and reviewed.attributes["decision"] == "approve"
    with pytest.raises(ConflictError):
        approve("refund-1")


def test_a_rejection_is_reported_to_the_model_which_carries_on(rt: Runtime) -> None:
    _pause("refund-2")
    reject("refund-2", reason="refunds above 40 need a manager")
    triage, model = flows.support([flows.ANSWER], with_refund=True)
    omium.run(agent_workflow(triage, name="refunds"), "refund Jane", run_id="refund-2")
    assert flows.executed == {"lookup_account": 1}  # never refunded
    (call,) = model.calls
    outputs = [i for i in call.input if isinstance(i, dict) and i.get("type") == "function_call_output"]
    assert "refunds above 40 need a manager" in str(outputs[-1]["output"])


def test_under_supervision_the_run_is_paused_for_review_and_resumed(rt: Runtime) -> None:
    triage, _ = flows.support(SCRIPT, with_refund=True)
    flow = agent_workflow(triage, name="refunds")
    policy = Policy(rollback_triggers={"high_value_operation": True})
    outcome = supervise(flow, "refund Jane", run_id="refund-3", policy=policy)
    assert outcome.status == "paused" and outcome.failure is not None
    assert outcome.failure.check == "tool_approval" and outcome.failure.agent == "billing"
    assert rt.store.get_run("refund-3").status == "paused"
    review("refund-3", "approve", reviewer="ann")  # the console's / CLI's review
    triage, _ = flows.support([flows.ANSWER], with_refund=True)
    agent_workflow(triage, name="refunds")  # what a worker imports
    assert resume("refund-3").status == "completed"
    assert flows.executed == {"lookup_account": 1, "refund": 1}


def test_under_supervision_a_rejection_is_reported_to_the_model_too(rt: Runtime) -> None:
    triage, _ = flows.support(SCRIPT, with_refund=True)
    policy = Policy(rollback_triggers={"high_value_operation": True})
    assert (
        supervise(
            agent_workflow(triage, name="refunds"), "refund Jane", run_id="refund-4", policy=policy
        ).status
        == "paused"
    )
    # The console's / CLI's review: the gate takes a rejection as an answer, so the run goes on.
    assert review("refund-4", "reject", reason="no refunds on Sundays").status == "queued"
    triage, model = flows.support([flows.ANSWER], with_refund=True)
    agent_workflow(triage, name="refunds")
    assert resume("refund-4").status == "completed"
    assert flows.executed == {"lookup_account": 1}
    outputs = [
        i for i in model.calls[0].input if isinstance(i, dict) and i.get("type") == "function_call_output"
    ]
    assert "no refunds on Sundays" in str(outputs[-1]["output"])
    gate = next(s for s in rt.store.steps("refund-4") if s.kind == "gate")
    assert (gate.agent, gate.status) == ("billing", "completed")
