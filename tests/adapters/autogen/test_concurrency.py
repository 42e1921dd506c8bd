"""Two AG2 teams talking at once in one Omium run: each turn keeps its call id whatever the interleaving,
and a resumed run answers each team's finished turns from the record, in whatever order they come."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

import omium
from omium.adapters.autogen import instrument, transcript
from omium.errors import NonDeterminismError
from omium.testing import Runtime
from tests.adapters.autogen.team_example import PLAN_CHECK, Crew, crew, drive


def _two_teams(a: Crew, b: Crew, *, a_waits: float, b_waits: float) -> Any:
    """A workflow running team A on "Write fib" and team B on "Write fact" at once; each starts
    after waiting the given seconds (so a test decides which team gets ahead)."""
    instrument(a.agents, name="team_a", handoffs=[PLAN_CHECK])
    instrument(b.agents, name="team_b", handoffs=[PLAN_CHECK])

    async def after(seconds: float, team_crew: Crew, task: str) -> str:
        await asyncio.sleep(seconds)
        return await team_crew.sequential(task)

    @omium.workflow(name="two_teams")
    async def two_teams() -> list[str]:
        done = await asyncio.gather(
            after(a_waits, a, "Write fib"), after(b_waits, b, "Write fact"), return_exceptions=True
        )
        for outcome in done:
            if isinstance(outcome, BaseException):
                raise outcome
        return [str(outcome) for outcome in done]

    return two_teams


def test_two_teams_in_one_run_keep_their_call_ids_and_resume_in_another_order(rt: Runtime) -> None:
    # First execution: team A gets ahead; team B's reviewer fails.
    first_a, first_b = crew(), crew(reviewer=[ConnectionError("model endpoint down")])
    flow = _two_teams(first_a, first_b, a_waits=0, b_waits=0.05)
    with pytest.raises(ConnectionError):
        drive(omium.arun(flow, run_id="pair"))
    first = {s.call_id: (s.name, s.status) for s in rt.store.steps("pair")}
    slots = {s.call_id: s.position for s in rt.store.steps("pair")}
    # Each team's conversation is a task of the run (0 and 1); each ask a task inside it.
    assert first == {
        "0.0.0": ("planner", "completed"),
        "0.1.0": ("coder", "completed"),
        "0.2.0": ("reviewer", "completed"),
        "1.0.0": ("planner", "completed"),
        "1.1.0": ("coder", "completed"),
        "1.2.0": ("reviewer", "failed"),
    }

    # Resumed with team B ahead this time: the record still answers each team's own turns.
    again_a, again_b = crew(), crew()
    result = drive(omium.arun(_two_teams(again_a, again_b, a_waits=0.05, b_waits=0), run_id="pair"))
    assert [r.startswith("LGTM") for r in result] == [True, True]
    assert again_a.calls() == {"planner": 0, "coder": 0, "reviewer": 0}
    assert again_b.calls() == {"planner": 0, "coder": 0, "reviewer": 1}
    assert again_a.tool_runs == again_b.tool_runs == []
    steps = rt.store.steps("pair")
    assert {s.call_id: (s.name, s.status) for s in steps} == {
        **first,
        "1.2.0": ("reviewer", "completed"),
    }
    # Slots are kept: a call stays under the position it was first stored at.
    assert {s.call_id: s.position for s in steps} == slots
    # Each team's transcript is its own conversation.
    assert transcript(rt.store, "pair", team="team_a")[0]["content"] == "Write fib"
    assert transcript(rt.store, "pair", team="team_b")[0]["content"] == "Write fact"
    assert len(transcript(rt.store, "pair", team="team_b")) == 6
    # Both teams' hand-offs on the shared channel were logged, each under its own sequence number.
    logged = rt.store.handoffs("pair", "planner->coder")
    assert sorted(m.send_key for m in logged) == ["pair:0.0.0", "pair:1.0.0"]
    assert sorted(m.seq for m in logged) == [0, 1]


def test_a_resumed_team_whose_conversation_diverges_names_the_call(rt: Runtime) -> None:
    first_a, first_b = crew(), crew(reviewer=[ConnectionError("down")])
    with pytest.raises(ConnectionError):
        drive(omium.arun(_two_teams(first_a, first_b, a_waits=0, b_waits=0), run_id="diverged"))
    again_a, again_b = crew(), crew()
    instrument(again_a.agents, name="team_a")
    instrument(again_b.agents, name="team_b")

    @omium.workflow(name="two_teams_changed")  # the workflow's code changed since the run started
    async def swapped() -> list[str]:
        # Team B now starts with its coder where the recording has its planner.
        return list(await asyncio.gather(again_a.sequential("Write fib"), again_b.coder.ask("Write fact")))

    expected = (
        r"call 1\.0\.0 \(position \d\): the recording has agent_turn 'planner'.* called agent_turn 'coder'"
    )
    with pytest.raises(NonDeterminismError, match=expected):
        drive(omium.arun(swapped, run_id="diverged"))
    assert again_b.calls()["coder"] == 0  # refused before the model was called
