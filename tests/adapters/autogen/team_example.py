"""The multi-agent example the AG2 adapter tests run: a planner, a coder with a tool, a reviewer.

Each agent answers from a :class:`ScriptedModel` (offline); ``Crew.models`` counts model calls
and ``Crew.tool_runs`` records every real execution of the coder's tool. The conversation is
driven two ways, as AG2 teams drive it: sequential ``Agent.ask`` chats, and an AG2 network whose
workflow channel passes the turn planner -> coder -> reviewer.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from ag2 import Agent, tool
from ag2.events import ToolCallEvent
from ag2.knowledge import MemoryKnowledgeStore
from ag2.network import Hub, TransitionGraph
from pydantic import BaseModel

from omium.adapters.autogen import HandoffCheck, ReviewGate, Team, instrument, with_stop
from omium.adapters.autogen.testing import Answer, ScriptedModel

PLAN = '{"steps": ["write fib", "test fib"]}'
CODE = "def fib(n):\n    return n if n < 2 else fib(n - 1) + fib(n - 2)"


class Plan(BaseModel):
    """What the planner hands to the coder."""

    steps: list[str]


T = TypeVar("T")


def drive(coroutine: Coroutine[Any, Any, T], timeout: float = 10.0) -> T:
    """Run a conversation to its end, failing (not hanging) if it takes longer than ``timeout``."""
    return asyncio.run(asyncio.wait_for(coroutine, timeout))


PLAN_CHECK = HandoffCheck("planner", "coder", schema=Plan, constraints={"steps": {"not_empty": True}})


@dataclass
class Crew:
    """The three agents, their scripted models and the tool's real executions."""

    planner: Agent[Any]
    coder: Agent[Any]
    reviewer: Agent[Any]
    models: dict[str, ScriptedModel]
    tool_runs: list[str] = field(default_factory=list)
    closed: list[str] = field(default_factory=list)  # close reasons of network channels

    @property
    def agents(self) -> list[Agent[Any]]:
        return [self.planner, self.coder, self.reviewer]

    def calls(self) -> dict[str, int]:
        """Model calls per agent."""
        return {name: model.calls for name, model in self.models.items()}

    def team(
        self, *, handoffs: Sequence[HandoffCheck] = (), reviews: Sequence[ReviewGate] = (), **kw: Any
    ) -> Team:
        return instrument(self.agents, name="fib_team", handoffs=handoffs, reviews=reviews, **kw)

    async def sequential(self, task: str) -> str:
        """Sequential chats: each agent is asked with the previous agent's reply."""
        plan = await self.planner.ask(task)
        code = await self.coder.ask(f"Implement this plan: {plan.body}")
        review = await self.reviewer.ask(f"Review this code: {code.body}")
        return review.body or ""

    async def network(self, task: str) -> list[str]:
        """An AG2 network: a workflow channel user -> planner -> coder -> reviewer; returns the packets."""
        hub = await Hub.open(MemoryKnowledgeStore(), ttl_sweep_interval=0, expectation_sweep_interval=0)
        try:
            user = await hub.register(Agent("user"))
            ids = [(await hub.register(agent)).agent_id for agent in self.agents]
            graph = with_stop(TransitionGraph.sequence([user.agent_id, *ids]))
            channel = await user.open(
                type="workflow", target=[a.name for a in self.agents], knobs={"graph": graph.to_dict()}
            )
            await channel.send(task)
            while not (metadata := await hub.get_channel(channel.channel_id)).is_terminal():
                await asyncio.sleep(0.01)
            self.closed.append(metadata.close_reason or "")
            wal = await hub.read_wal(channel.channel_id)
            return [str(e.event_data.get("body", "")) for e in wal if e.event_type == "ag2.packet"]
        finally:
            await hub.close()


def crew(
    *,
    planner: Sequence[Answer] = (PLAN,),
    coder: Sequence[Answer] | None = None,
    reviewer: Sequence[Answer] = ("LGTM: fib is correct and tested.",),
) -> Crew:
    """Fresh agents with scripted models (what a new process would build)."""
    models = {
        "planner": ScriptedModel(list(planner), model="planner-model"),
        "coder": ScriptedModel(
            list(coder)
            if coder is not None
            else [ToolCallEvent(name="run_tests", arguments='{"code": "fib"}'), f"```python\n{CODE}\n```"],
            model="coder-model",
        ),
        "reviewer": ScriptedModel(list(reviewer), model="reviewer-model"),
    }
    runs: list[str] = []

    @tool
    def run_tests(code: str) -> str:
        """Run the test suite against ``code``."""
        runs.append(code)
        return "3 passed"

    result = Crew(
        planner=Agent("planner", prompt="Plan the work as JSON steps.", config=models["planner"]),
        coder=Agent("coder", prompt="Write and test the code.", config=models["coder"], tools=[run_tests]),
        reviewer=Agent("reviewer", prompt="Review the code.", config=models["reviewer"]),
        models=models,
        tool_runs=runs,
    )
    return result


