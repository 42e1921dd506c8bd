"""An AG2 network (hub + workflow channel) under Omium: turns in the hub's own tasks are still traced,
recorded and resumed, and a failing turn stops the channel instead of leaving it waiting."""

from __future__ import annotations

import asyncio

import pytest
from ag2 import Agent
from ag2.annotations import Context
from ag2.events import BaseEvent, ModelResponse
from ag2.knowledge import MemoryKnowledgeStore
from ag2.middleware import AgentTurn, BaseMiddleware
from ag2.network import Hub, TransitionGraph

from omium.adapters.autogen.testing import ScriptedModel
from omium.testing import Runtime
from tests.adapters.autogen.team_example import CODE, PLAN, PLAN_CHECK, crew, drive


def test_a_workflow_channel_is_traced_and_recorded(rt: Runtime) -> None:
    team_crew = crew()
    outcome = drive(team_crew.team(handoffs=[PLAN_CHECK]).run(team_crew.network, "Write fib", run_id="net"))
    assert outcome.status == "completed"
    assert outcome.result[0] == PLAN and outcome.result[-1].startswith("LGTM")
    assert team_crew.closed == ["sequence_complete"]
    spans = list(rt.spans.get_finished_spans())
    by_id = {s.context.span_id: s for s in spans}
    (root,) = [s for s in spans if s.parent is None]
    turns = sorted((s for s in spans if s.name.startswith("invoke_agent ")), key=lambda s: s.start_time)
    assert [s.name for s in turns] == ["invoke_agent planner", "invoke_agent coder", "invoke_agent reviewer"]
    # The hub runs turns in tasks of its own; they are still children of the run's span.
    assert {s.parent.span_id for s in turns} == {root.context.span_id}
    assert {s.context.trace_id for s in spans} == {root.context.trace_id}
    channel_ids = {s.attributes["gen_ai.conversation.id"] for s in turns}
    assert len(channel_ids) == 1 and "net" not in channel_ids  # the channel is the conversation
    assert all(s.attributes.get("gen_ai.agent.id") for s in turns)
    (tool,) = [s for s in spans if s.name == "execute_tool run_tests"]
    assert by_id[tool.parent.span_id].name == "invoke_agent coder"
    assert [(s.name, s.status) for s in rt.store.steps("net")] == [
        ("planner", "completed"),
        ("coder", "completed"),
        ("reviewer", "completed"),
    ]


def test_a_failing_turn_stops_the_channel_and_the_run_resumes_from_the_record(rt: Runtime) -> None:
    broken = crew(reviewer=[ConnectionError("model endpoint down")])
    with pytest.raises(ConnectionError, match="model endpoint down"):
        drive(broken.team().run(broken.network, "Write fib", run_id="net-crash"))
    assert broken.closed == ["omium: turn failed: reviewer: ConnectionError: model endpoint down"]
    assert rt.store.get_run("net-crash").status == "failed"

    fresh = crew()
    outcome = drive(fresh.team().run(fresh.network, "Write fib", run_id="net-crash"))
    assert outcome.status == "completed"
    assert fresh.calls() == {"planner": 0, "coder": 0, "reviewer": 1}
    assert fresh.tool_runs == []
    assert fresh.closed == ["sequence_complete"]
    # The replayed packets are the recorded ones: the reviewer reviewed the recorded code.
    assert outcome.result[0] == PLAN and CODE in outcome.result[1]


class _RaisingInAHook(BaseMiddleware):
    """What Omium does not do: veto by raising inside AG2 (an intervention-handler style veto)."""

    async def on_turn(self, call_next: AgentTurn, event: BaseEvent, context: Context) -> ModelResponse:
        raise PermissionError("hand-off vetoed")


def test_raising_inside_a_hook_leaves_a_workflow_channel_waiting(monkeypatch: pytest.MonkeyPatch) -> None:
    """Why Omium stops conversations through a termination condition: AG2's turn handler swallows
    an exception raised in a hook, posts no reply, and the channel waits for a speaker forever."""

    async def conversation() -> bool:
        hub = await Hub.open(MemoryKnowledgeStore(), ttl_sweep_interval=0, expectation_sweep_interval=0)
        try:
            user = await hub.register(Agent("user"))
            a = await hub.register(Agent("a", config=ScriptedModel(["from a"])))
            b = await hub.register(Agent("b", config=ScriptedModel(["from b"]), middleware=[_RaisingInAHook]))
            graph = TransitionGraph.sequence([user.agent_id, a.agent_id, b.agent_id])
            channel = await user.open(type="workflow", target=["a", "b"], knobs={"graph": graph.to_dict()})
            await channel.send("go")
            await asyncio.sleep(0.5)
            return (await hub.get_channel(channel.channel_id)).is_terminal()
        finally:
            await hub.close()

    monkeypatch.setattr("ag2.network.client.handlers.logger.disabled", True)  # it logs the swallowed error
    assert drive(conversation()) is False
