"""Lifecycle hooks that checkpoint an Agents SDK run into the Omium run it executes in.

:class:`OmiumRunHooks` records a checkpoint after every model call (``{agent}.turn``), every tool
call (``{agent}.{tool}``) and the final output (``{agent}.output``): a consistent point of the
Omium run that ``omium rollback RUN --to NAME`` can return to, holding the position reached and
the recorded results since the previous checkpoint. It also tells Omium which agent is running,
so recorded calls, spans and failures are attributed to the SDK agent rather than the workflow.
Outside an Omium run it only forwards to the hooks it chains.

Example:
    >>> result = await Runner.run(triage, "help", hooks=OmiumRunHooks())   # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any

from agents import Agent, RunContextWrapper, RunHooks
from agents.items import ModelResponse, TResponseInputItem
from agents.run_context import AgentHookContext
from agents.tool import Tool

from omium import semconv
from omium.adapters.openai_agents import tracing
from omium.adapters.openai_agents.durable import tool_calls_of
from omium.sdk.checkpoint import record_checkpoint
from omium.sdk.context import RunContext, maybe_current
from omium.sdk.store import CheckpointRecord


class OmiumRunHooks(RunHooks[Any]):
    """Per-step checkpoints of an Agents SDK run (one instance per ``Runner.run``).

    Call :meth:`release` when the SDK run returns or raises (:func:`.agent_workflow` does), so
    Omium calls made after it are attributed to the workflow again.

    Args:
        chain: the application's own hooks, called after Omium's.
    """

    def __init__(self, chain: RunHooks[Any] | None = None) -> None:
        self.chain = chain
        self.checkpoints: list[CheckpointRecord] = []
        self._agent_slot: tuple[RunContext, int] | None = None
        self._since = 0

    # --- checkpoints
    def checkpoint(self, name: str, values: dict[str, Any]) -> CheckpointRecord | None:
        """Record checkpoint ``name`` of the Omium run in progress (None outside one)."""
        run = maybe_current()
        if run is None:
            return None
        start = min(self._since, run.next_position)
        record = record_checkpoint(run, name, start, values)
        self._since = run.next_position
        if record is not None:
            self.checkpoints.append(record)
            tracing.mark_current(
                {
                    semconv.OMIUM_CHECKPOINT: name,
                    "omium.checkpoint.seq": record.seq,
                    semconv.OMIUM_STEP_INDEX: record.step_index,
                },
                event="omium.checkpoint",
            )
        return record

    def _running(self, agent: str) -> None:
        """Make ``agent`` the Omium run's current agent (one slot, replaced at each hand-off)."""
        run = maybe_current()
        if run is None:
            return
        if self._agent_slot is not None and self._agent_slot[0] is run:
            index = self._agent_slot[1]
            if index < len(run.agents):
                run.agents[index] = agent
                return
        run.agents.append(agent)
        self._agent_slot = (run, len(run.agents) - 1)
        self._since = run.next_position

    def release(self) -> None:
        """Hand the Omium run's agent stack back as it was before the SDK run (call when it ends)."""
        if self._agent_slot is not None:
            run, index = self._agent_slot
            del run.agents[index:]
            self._agent_slot = None

    # --- RunHooks (parameter names are the SDK's: it calls them by keyword)
    async def on_agent_start(self, context: AgentHookContext[Any], agent: Agent[Any]) -> None:
        """The agent running from now on is ``agent``."""
        self._running(agent.name)
        if self.chain is not None:
            await self.chain.on_agent_start(context, agent)

    async def on_llm_start(
        self,
        context: RunContextWrapper[Any],
        agent: Agent[Any],
        system_prompt: str | None,
        input_items: list[TResponseInputItem],
    ) -> None:
        """Forwarded."""
        if self.chain is not None:
            await self.chain.on_llm_start(context, agent, system_prompt, input_items)

    async def on_llm_end(
        self, context: RunContextWrapper[Any], agent: Agent[Any], response: ModelResponse
    ) -> None:
        """Checkpoint ``{agent}.turn``: the model answered."""
        calls = tool_calls_of(response)
        self.checkpoint(f"{agent.name}.turn", {"agent": agent.name, "kind": "turn", "calls": calls})
        if self.chain is not None:
            await self.chain.on_llm_end(context, agent, response)

    async def on_tool_start(self, context: RunContextWrapper[Any], agent: Agent[Any], tool: Tool) -> None:
        """Forwarded."""
        if self.chain is not None:
            await self.chain.on_tool_start(context, agent, tool)

    async def on_tool_end(
        self, context: RunContextWrapper[Any], agent: Agent[Any], tool: Tool, result: object
    ) -> None:
        """Checkpoint ``{agent}.{tool}``: a tool call finished."""
        call_id = str(getattr(context, "tool_call_id", "") or "")
        self.checkpoint(
            f"{agent.name}.{tool.name}",
            {"agent": agent.name, "kind": "tool", "tool": tool.name, "call_id": call_id},
        )
        if self.chain is not None:
            await self.chain.on_tool_end(context, agent, tool, result)

    async def on_handoff(
        self, context: RunContextWrapper[Any], from_agent: Agent[Any], to_agent: Agent[Any]
    ) -> None:
        """Forwarded (the hand-off is validated, and the receiver checkpointed, after this)."""
        if self.chain is not None:
            await self.chain.on_handoff(context, from_agent, to_agent)

    async def on_agent_end(self, context: AgentHookContext[Any], agent: Agent[Any], output: Any) -> None:
        """Checkpoint ``{agent}.output``: the run produced its final output."""
        self.checkpoint(f"{agent.name}.output", {"agent": agent.name, "kind": "output"})
        if self.chain is not None:
            await self.chain.on_agent_end(context, agent, output)


__all__ = ["OmiumRunHooks"]
