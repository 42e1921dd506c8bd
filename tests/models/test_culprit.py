"""A runtime incident traced back to the call that produced the judged data."""

from __future__ import annotations

from omium.models.culprit import trace
from omium.sdk.store import StepRecord


def steps() -> list[StepRecord]:
    return [
        StepRecord("r", 0, "tool", "fetch", "completed", agent="kyc"),
        StepRecord("r", 1, "handoff_receive", "kyc->terms", "completed", agent="terms"),
        StepRecord("r", 2, "llm", "model", "completed", agent="terms"),
        StepRecord("r", 3, "tool", "other_agent_tool", "completed", agent="email"),
        StepRecord("r", 4, "guard", "apr_in_range", "failed", agent="terms"),
    ]


def test_a_guard_points_at_the_agents_last_call_and_its_hand_off() -> None:
    found = trace({"position": 4, "trigger": "policy_violation", "agent": "terms"}, steps())
    assert found.failed.name == "apr_in_range"
    assert found.producer.name == "model" and found.culprit == 2  # not another agent's later call
    assert found.receive.name == "kyc->terms"


def test_a_stale_hand_off_is_its_own_culprit() -> None:
    found = trace({"position": 1, "trigger": "stale_handoff", "agent": "terms"}, steps())
    assert found.producer is None and found.culprit == 1


def test_the_agent_comes_from_the_failing_step_when_unrecorded() -> None:
    found = trace({}, steps(), default_position=4)
    assert (found.position, found.trigger, found.agent, found.culprit) == (4, "exception", "terms", 2)
