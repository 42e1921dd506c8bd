"""Hand-off validation: a rejected hand-off stops the conversation cleanly, with the reason recorded."""

from __future__ import annotations

import pytest
from pydantic import BaseModel

from omium.adapters.autogen import HandoffCheck, is_stop, stop_reason
from omium.testing import Runtime
from tests.adapters.autogen.team_example import PLAN, PLAN_CHECK, Plan, crew, drive

EMPTY_PLAN = '{"steps": []}'


class Terms(BaseModel):
    apr: float


def test_checks_read_json_replies_against_schema_and_constraints() -> None:
    assert PLAN_CHECK.validate(f"```json\n{PLAN}\n```").accepted
    assert PLAN_CHECK.validate(PLAN).value == Plan(steps=["write fib", "test fib"])
    empty = PLAN_CHECK.validate(EMPTY_PLAN)
    assert (empty.accepted, empty.reason) == (False, "steps: value is empty")
    wrong = PLAN_CHECK.validate('{"stages": ["x"]}')
    assert not wrong.accepted and wrong.reason.startswith("does not match Plan: steps: Field required")
    prose = PLAN_CHECK.validate("Sure! First I will write fib.")
    assert not prose.accepted and prose.reason.startswith("reply is not parseable")
    apr = HandoffCheck("terms", schema=Terms, constraints={"apr": {"min": 2.5, "max": 8.5}})
    assert apr.validate('{"apr": 4.9}').accepted
    assert apr.validate('{"apr": 0}').reason == "apr: value 0.0 is below the minimum 2.5"
    # Without a schema or per-field rules, the text itself is checked.
    polite = HandoffCheck("a", constraints={"check": lambda text: "please" in text or "say please"})
    assert polite.validate("please review").accepted
    assert polite.validate("review").reason == "say please"
    broken = HandoffCheck("a", constraints={"check": lambda text: 1 / 0})
    assert broken.validate("x").reason.startswith("constraint check failed: ZeroDivisionError")


def test_a_rejected_handoff_stops_sequential_chats_with_the_reason_recorded(rt: Runtime) -> None:
    team_crew = crew(planner=[EMPTY_PLAN])
    outcome = drive(
        team_crew.team(handoffs=[PLAN_CHECK]).run(team_crew.sequential, "Write fib", run_id="veto"), timeout=5
    )
    assert outcome.status == "rejected"
    assert outcome.reason == "planner->coder #0: steps: value is empty"
    # The plan never reached the coder, and nobody after the veto called a model.
    assert team_crew.calls() == {"planner": 1, "coder": 0, "reviewer": 0}
    assert outcome.result is None  # the run did not complete
    run = rt.store.get_run("veto")
    assert run.status == "failed"
    assert run.error == "HandoffRejected: hand-off planner->coder #0: steps: value is empty"
    (message,) = rt.store.handoffs("veto", "planner->coder")
    assert (message.status, message.reason, message.schema_name) == (
        "rejected",
        "steps: value is empty",
        "Plan",
    )
    events = rt.store.events("veto")
    assert [e.kind for e in events] == ["detected", "failed"]
    assert events[0].attributes["trigger"] == "handoff_rejected"
    assert events[0].attributes["agent"] == "planner"
    assert events[0].attributes["incident"] == events[1].attributes["incident"]
    assert [(s.name, s.status, s.error) for s in rt.store.steps("veto")] == [
        ("planner", "failed", "HandoffRejected: planner->coder #0: steps: value is empty")
    ]
    spans = {s.name: s for s in rt.spans.get_finished_spans()}
    turn = spans["invoke_agent planner"]
    assert turn.status.status_code.name == "ERROR"
    assert turn.attributes["omium.handoff.verdict"] == "rejected"
    assert turn.attributes["error.type"] == "HandoffRejected"
    assert spans["handoff_send planner->coder"].attributes["omium.handoff.reason"] == "steps: value is empty"
    assert "invoke_agent coder" not in spans  # later turns ran nothing


def test_the_stop_message_lets_code_break_out_like_is_termination_msg(rt: Runtime) -> None:
    team_crew = crew(planner=[EMPTY_PLAN])
    seen: list[str] = []

    async def conversation(task: str) -> str:
        plan = await team_crew.planner.ask(task)
        if is_stop(plan):
            seen.append(stop_reason(plan) or "")
            return "stopped"
        return (await team_crew.coder.ask(plan.body or "")).body or ""

    outcome = drive(team_crew.team(handoffs=[PLAN_CHECK]).run(conversation, "Write fib", run_id="veto-break"))
    assert outcome.status == "rejected"
    assert seen == ["handoff rejected: planner->coder #0: steps: value is empty"]


def test_a_conversation_that_breaks_on_the_stop_message_is_still_a_rejection(rt: Runtime) -> None:
    team_crew = crew(planner=[EMPTY_PLAN])

    async def conversation(task: str) -> int:
        plan = await team_crew.planner.ask(task)
        return len(Plan.model_validate_json(plan.body or "").steps)  # raises on the stop message

    outcome = drive(team_crew.team(handoffs=[PLAN_CHECK]).run(conversation, "Write fib", run_id="veto-raise"))
    assert outcome.status == "rejected"
    assert rt.store.get_run("veto-raise").error.startswith("HandoffRejected")


def test_a_rejected_handoff_closes_a_workflow_channel_through_its_termination_condition(rt: Runtime) -> None:
    team_crew = crew(planner=[EMPTY_PLAN])
    outcome = drive(
        team_crew.team(handoffs=[PLAN_CHECK]).run(team_crew.network, "Write fib", run_id="net-veto"),
        timeout=5,
    )
    assert outcome.status == "rejected"
    assert team_crew.closed == ["omium: handoff rejected: planner->coder #0: steps: value is empty"]
    assert team_crew.calls() == {"planner": 1, "coder": 0, "reviewer": 0}
    assert rt.store.get_run("net-veto").error.startswith("HandoffRejected: hand-off planner->coder #0")
    assert [m.status for m in rt.store.handoffs("net-veto", "planner->coder")] == ["rejected"]


def test_running_a_rejected_run_again_retries_the_rejected_turn(rt: Runtime) -> None:
    first = crew(planner=[EMPTY_PLAN])
    drive(first.team(handoffs=[PLAN_CHECK]).run(first.sequential, "Write fib", run_id="retry"))
    second = crew()  # the planner now answers well
    outcome = drive(second.team(handoffs=[PLAN_CHECK]).run(second.sequential, "Write fib", run_id="retry"))
    assert outcome.status == "completed"
    assert second.calls() == {"planner": 1, "coder": 2, "reviewer": 1}
    assert [(m.seq, m.status) for m in rt.store.handoffs("retry", "planner->coder")] == [
        (0, "rejected"),
        (1, "acked"),
    ]


def test_checks_must_name_a_team_agent(rt: Runtime) -> None:
    with pytest.raises(ValueError, match="hand-off check on 'nobody', which is not one of the team's agents"):
        crew().team(handoffs=[HandoffCheck("nobody")])
