"""Review gates: a conversation pauses before a turn, a person approves, the run resumes from the record."""

from __future__ import annotations

import json

import pytest

from omium.adapters.autogen import ReviewGate
from omium.errors import ConflictError
from omium.recovery import review
from omium.recovery.worker import Worker, enqueue
from omium.testing import Runtime
from tests.adapters.autogen.team_example import PLAN_CHECK, crew, drive

GATE = ReviewGate("reviewer", reason="a person signs off the code before review")


def test_a_gate_pauses_the_conversation_until_a_person_approves(rt: Runtime) -> None:
    first = crew()
    outcome = drive(
        first.team(handoffs=[PLAN_CHECK], reviews=[GATE]).run(first.sequential, "Write fib", run_id="gate")
    )
    assert outcome.status == "paused"
    assert outcome.reason == "review before reviewer: a person signs off the code before review"
    assert first.calls() == {"planner": 1, "coder": 2, "reviewer": 0}
    run = rt.store.get_run("gate")
    assert (run.status, run.attributes["awaiting"]) == ("paused", "review")
    failure = json.loads(run.attributes["failure"])
    assert (failure["trigger"], failure["agent"], failure["position"]) == ("review_gate", "reviewer", 2)
    assert [e.kind for e in rt.store.events("gate")] == ["paused"]
    # The gated turn is not recorded; the turns before it are, with their checkpoints.
    assert [(s.name, s.status) for s in rt.store.steps("gate")] == [
        ("planner", "completed"),
        ("coder", "completed"),
    ]
    assert [c.name for c in rt.store.checkpoints("gate")] == ["turn-0", "turn-1"]

    again = crew()
    with pytest.raises(ConflictError, match="paused awaiting review"):
        drive(again.team(reviews=[GATE]).run(again.sequential, "Write fib", run_id="gate"))
    assert again.calls() == {"planner": 0, "coder": 0, "reviewer": 0}

    review("gate", "approve", reviewer="dana", reason="code looks safe", store=rt.store)
    assert rt.store.get_run("gate").status == "queued"

    resumed = crew()  # as another process would: new agents, the same store
    outcome = drive(
        resumed.team(handoffs=[PLAN_CHECK], reviews=[GATE]).run(
            resumed.sequential, "Write fib", run_id="gate"
        )
    )
    assert outcome.status == "completed"
    assert outcome.result.startswith("LGTM")
    assert resumed.calls() == {"planner": 0, "coder": 0, "reviewer": 1}
    assert resumed.tool_runs == []
    assert rt.store.get_run("gate").status == "completed"
    assert [e.kind for e in rt.store.events("gate")] == ["paused", "reviewed"]
    gated = [s for s in rt.spans.get_finished_spans() if s.name == "invoke_agent reviewer"]
    assert [s.attributes["omium.review.status"] for s in gated] == ["awaiting", "approved"]


def test_a_rejected_review_ends_the_run(rt: Runtime) -> None:
    first = crew()
    drive(first.team(reviews=[GATE]).run(first.sequential, "Write fib", run_id="gate-no"))
    review("gate-no", "reject", reason="not today", store=rt.store)
    with pytest.raises(ConflictError, match="rejected in review"):
        drive(crew().team(reviews=[GATE]).run(first.sequential, "Write fib", run_id="gate-no"))


def test_a_gate_closes_a_workflow_channel_and_the_approved_run_carries_on(rt: Runtime) -> None:
    first = crew()
    outcome = drive(first.team(reviews=[GATE]).run(first.network, "Write fib", run_id="net-gate"))
    assert outcome.status == "paused"
    assert first.closed == [
        "omium: awaiting review: review before reviewer: a person signs off the code before review"
    ]
    review("net-gate", "approve", store=rt.store)
    resumed = crew()
    outcome = drive(resumed.team(reviews=[GATE]).run(resumed.network, "Write fib", run_id="net-gate"))
    assert outcome.status == "completed"
    assert resumed.closed == ["sequence_complete"]
    assert resumed.calls() == {"planner": 0, "coder": 0, "reviewer": 1}


def test_a_gate_on_a_later_turn_waits_for_that_turn(rt: Runtime) -> None:
    team_crew = crew(planner=["plan one", "plan two"])
    gate = ReviewGate("planner", occurrence=2)

    async def two_plans(task: str) -> str:
        await team_crew.planner.ask(task)
        return (await team_crew.planner.ask("again")).body or ""

    outcome = drive(team_crew.team(reviews=[gate]).run(two_plans, "Write fib", run_id="second"))
    assert (outcome.status, team_crew.calls()["planner"]) == ("paused", 1)
    assert gate.name == "review before planner #2"


def test_an_approved_run_is_resumed_by_an_omium_worker(rt: Runtime) -> None:
    first = crew()
    drive(first.team(reviews=[GATE]).run(first.sequential, "Write fib", run_id="by-worker"))
    review("by-worker", "approve", store=rt.store)  # what `omium review RUN --approve` does,
    enqueue(rt.store, "by-worker", "resume")  # and then it queues the resume for a worker

    hosted = crew()
    flow = hosted.team(reviews=[GATE]).workflow(hosted.sequential)
    command = Worker(rt.store, {"fib_team": flow}).run_once()
    assert command is not None and command.status == "done", command
    assert json.loads(command.result)["status"] == "completed"
    assert rt.store.get_run("by-worker").status == "completed"
    assert hosted.calls() == {"planner": 0, "coder": 0, "reviewer": 1}
