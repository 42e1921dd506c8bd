"""One runner per framework for :mod:`omium.models.fault_injection`: a scenario's turns played by
that framework's agents with its own scripted fake model, traced through Omium's path for it.

Each runner returns the run id the framework recorded (LangGraph's is ``langgraph:{thread}``).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from omium.models.fault_injection import Scenario, lookup_result


class ToolTimeout(RuntimeError):
    """The scenario tool's transient failure."""


def _tool(one: Scenario, args: dict[str, str], fails: bool) -> str:
    if fails:
        raise ToolTimeout(f"lookup timed out for {args.get('entity', '')}")
    return lookup_result(one.facts, args.get("entity", ""))


def run_sdk(one: Scenario) -> str:
    """Omium's plain SDK: one ``@agent`` scope per turn, ``llm_call`` on a FakeLLM, an ``@tool``."""
    import omium
    from omium.testing import FakeLLM

    @omium.tool(name="lookup")
    def lookup(entity: str, fails: bool) -> str:
        return _tool(one, {"entity": entity}, fails)

    def turn_of(index: int) -> Any:
        turn = one.turns[index]

        def act(message: str) -> str:
            if turn.tool_args is not None:
                try:
                    message = lookup(turn.tool_args["entity"], turn.tool_fails)
                except (ToolTimeout, KeyError) as error:
                    message = str(error)
            model = FakeLLM([turn.text], model=f"{turn.agent}-model")
            return omium.llm_call(model, [{"role": "user", "content": message}]).text

        return omium.agent(act, name=turn.agent)

    def flow(task: str) -> str:
        message = task
        for index in range(len(one.turns)):
            message = turn_of(index)(message)
        return message

    omium.run(omium.workflow(flow, name="fault_team_sdk"), "task", run_id=one.run_id)
    return one.run_id


def run_langgraph(one: Scenario) -> str:
    """LangGraph: a node per agent routed by the scenario, GenericFakeChatModel, a LangChain tool,
    traced by :class:`~omium.adapters.langgraph.OmiumTracer`."""
    from typing import Annotated, TypedDict

    from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
    from langchain_core.messages import AIMessage, AnyMessage, HumanMessage
    from langchain_core.tools import tool
    from langgraph.graph import END, START, StateGraph
    from langgraph.graph.message import add_messages

    from omium.adapters.langgraph import OmiumSaver, OmiumTracer
    from omium.sdk.store import MemoryStore

    # The functional form: annotations evaluated here, not looked up in this module's globals.
    State = TypedDict("State", {"messages": Annotated[list[AnyMessage], add_messages], "turn": int})  # noqa: UP013

    @tool
    def lookup(entity: str, fails: bool) -> str:
        """Look a figure up."""
        return _tool(one, {"entity": entity}, fails)

    def node(state: dict[str, Any]) -> dict[str, Any]:
        turn = one.turns[state["turn"]]
        if turn.tool_args is not None:
            try:
                lookup.invoke({"entity": turn.tool_args["entity"], "fails": turn.tool_fails})
            except (ToolTimeout, KeyError):
                # The injected tool failure: the span records it, and the node answers anyway, as
                # an agent that ignores a failed tool does.
                pass
        model = GenericFakeChatModel(messages=iter([AIMessage(turn.text)]))
        return {"messages": [model.invoke(state["messages"])], "turn": state["turn"] + 1}

    def route(state: dict[str, Any]) -> str:
        return one.turns[state["turn"]].agent if state["turn"] < len(one.turns) else END

    builder = StateGraph(State)
    agents = list(dict.fromkeys(t.agent for t in one.turns))
    for agent in agents:
        builder.add_node(agent, node)  # type: ignore[type-var]
        builder.add_conditional_edges(agent, route, [*agents, END])
    builder.add_edge(START, one.turns[0].agent)
    saver = OmiumSaver(MemoryStore())
    graph = builder.compile(checkpointer=saver, name="fault_team_langgraph")
    config = {"configurable": {"thread_id": one.run_id}, "callbacks": [OmiumTracer(saver)]}
    graph.invoke({"messages": [HumanMessage("task")], "turn": 0}, config)  # type: ignore[call-overload]
    return f"langgraph:{one.run_id}"


def run_ag2(one: Scenario) -> str:
    """AG2: sequential ``Agent.ask`` chats under :func:`omium.adapters.autogen.instrument`, each
    agent's whole part scripted on its :class:`~omium.adapters.autogen.testing.ScriptedModel`."""
    from ag2 import Agent, tool
    from ag2.events import ToolCallEvent

    from omium.adapters.autogen import instrument
    from omium.adapters.autogen.testing import ScriptedModel

    @tool
    def lookup(entity: str, fails: bool) -> str:
        """Look a figure up."""
        try:
            return _tool(one, {"entity": entity}, fails)
        except (ToolTimeout, KeyError) as error:
            return f"error: {error}"

    scripts: dict[str, list[Any]] = {}
    for turn in one.turns:
        script = scripts.setdefault(turn.agent, [])
        if turn.tool_args is not None:
            arguments = json.dumps({"entity": turn.tool_args["entity"], "fails": turn.tool_fails})
            script.append(ToolCallEvent(name="lookup", arguments=arguments))
        script.append(turn.text)
    agents = {
        name: Agent(
            name, prompt="Do your part.", config=ScriptedModel(script, model=f"{name}-model"), tools=[lookup]
        )
        for name, script in scripts.items()
    }

    async def conversation(task: str) -> str:
        message = task
        for turn in one.turns:
            reply = await agents[turn.agent].ask(message)
            message = reply.body or ""
        return message

    team = instrument(list(agents.values()), name="fault_team_ag2")
    asyncio.run(asyncio.wait_for(team.run(conversation, "task", run_id=one.run_id), 30))
    return one.run_id


def run_openai_agents(one: Scenario) -> str:
    """The OpenAI Agents SDK: agents that hand off to each other, one ``ScriptedModel`` playing
    them all, traced by Omium's processor under :func:`~omium.adapters.openai_agents.agent_workflow`."""
    from agents import Agent, function_tool
    from agents.testing import ScriptedModel, assistant_message, function_call

    import omium
    from omium.adapters.openai_agents import agent_workflow, instrument, uninstrument

    @function_tool
    def lookup(entity: str, fails: bool) -> str:
        """Look a figure up."""
        try:
            return _tool(one, {"entity": entity}, fails)
        except (ToolTimeout, KeyError) as error:
            return f"error: {error}"

    @function_tool
    def note(text: str) -> str:
        """Keep a note for later."""
        return "noted"

    # Every model response but the last ends with a call: the next turn's hand-off, its lookup
    # (the same agent goes on) or a note (the same agent speaks again).
    steps: list[list[Any]] = []
    pending_tool = False
    calls = 0

    def call_id() -> str:
        nonlocal calls
        calls += 1
        return f"c{calls}"

    def lookup_call(turn: Any) -> Any:
        args = {"entity": turn.tool_args["entity"], "fails": turn.tool_fails}
        return function_call("lookup", args, call_id=call_id())

    for index, turn in enumerate(one.turns):
        if turn.tool_args is not None and not pending_tool:
            steps.append([lookup_call(turn)])
        pending_tool = False
        response: list[Any] = [assistant_message(turn.text)]
        if index + 1 < len(one.turns):
            after = one.turns[index + 1]
            if after.agent != turn.agent:
                response.append(function_call(f"transfer_to_{after.agent}", {}, call_id=call_id()))
            elif after.tool_args is not None:
                response.append(lookup_call(after))
                pending_tool = True
            else:
                response.append(function_call("note", {"text": "continuing"}, call_id=call_id()))
        steps.append(response)
    model = ScriptedModel(steps, emit_traces=True)
    agents = {
        name: Agent(name=name, instructions="Do your part.", model=model, tools=[lookup, note])
        for name in dict.fromkeys(t.agent for t in one.turns)
    }
    for agent in agents.values():
        agent.handoffs = [other for name, other in agents.items() if other is not agent]
    installed = instrument()
    try:
        flow = agent_workflow(
            agents[one.turns[0].agent], name="fault_team_openai_agents", max_turns=len(steps) + 5
        )
        omium.run(flow, "task", run_id=one.run_id)
    finally:
        uninstrument()
        del installed
    return one.run_id


def run_crewai(one: Scenario) -> str:
    """CrewAI: a sequential crew with one task per turn, each agent's part scripted on its
    :class:`~omium.adapters.crewai.testing.ScriptedLLM`, run by :func:`omium.adapters.crewai.instrument`.
    CrewAI lives in its own environment (``.venv-crewai``): see :mod:`omium.models.crewai_faults`."""
    from crewai import Agent, Crew, Task
    from crewai.tools import BaseTool

    from omium.adapters.crewai import instrument
    from omium.adapters.crewai.testing import ScriptedLLM, action, final

    class Lookup(BaseTool):
        name: str = "lookup"
        description: str = "Look a figure up."

        def _run(self, entity: str, fails: bool = False) -> str:
            try:
                return _tool(one, {"entity": entity}, fails)
            except (ToolTimeout, KeyError) as error:
                return f"error: {error}"

    scripts: dict[str, list[Any]] = {}
    for turn in one.turns:
        script = scripts.setdefault(turn.agent, [])
        if turn.tool_args is not None:
            script.append(action("lookup", {"entity": turn.tool_args["entity"], "fails": turn.tool_fails}))
        script.append(final(turn.text))
    tool = Lookup()
    agents = {
        name: Agent(
            role=name,
            goal="do your part",
            backstory="a member of the team",
            llm=ScriptedLLM(model=f"{name}-model", script=script),
            tools=[tool],
            max_iter=3,
            allow_delegation=False,
        )
        for name, script in scripts.items()
    }
    tasks = [
        Task(
            name=f"turn {i}",
            description=f"Turn {i} of the task.",
            expected_output="text",
            agent=agents[t.agent],
        )
        for i, t in enumerate(one.turns)
    ]
    crew = Crew(name="fault_team_crewai", agents=list(agents.values()), tasks=tasks)
    instrument(crew).kickoff({}, run_id=one.run_id)
    return one.run_id
