"""Lifecycle hooks that checkpoint an Agents SDK run into the Omium run it executes in.

:class:`OmiumRunHooks` records a checkpoint after every model call (``{agent}.turn``), every tool
call (``{agent}.{tool}``) and the final output (``{agent}.output``): a consistent point of the
Omium run that ``omium rollback RUN --to NAME`` can return to, holding the position reached and
the recorded results since the previous turn. Each checkpoint is attributed to the SDK agent that
reached it. Outside an Omium run it only forwards to the hooks it chains.

The SDK calls hooks in tasks of their own (one turn's tool calls run concurrently), so a
checkpoint stands where its hook's task stands in the run (:meth:`Scope.boundary
<omium.sdk.context.Scope.boundary>`): a place that is the same on every execution.

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
from omium.sdk.context import maybe_current
from omium.sdk.store import CheckpointRecord


class OmiumRunHooks(RunHooks[Any]):
    """Per-step checkpoints of an Agents SDK run (one instance per ``Runner.run``).

    Args:
        chain: the application's own hooks, called after Omium's.
    """

    def __init__(self, chain: RunHooks[Any] | None = None) -> None:
        self.chain = chain
        self.checkpoints: list[CheckpointRecord] = []
        self._since = ("", "")  # where the next checkpoint's stretch begins: (run id, call id)
        self._begin()

    def _begin(self) -> None:
        """Stretches of the Omium run in progress begin here, unless they began already."""
        run = maybe_current()
        if run is not None and self._since[0] != run.run_id:
            self._since = (run.run_id, run.scope.boundary())

    # --- checkpoints
    def checkpoint(
        self, name: str, agent: str, values: dict[str, Any], *, advance: bool = True
    ) -> CheckpointRecord | None:
        """Record checkpoint ``name``, reached by ``agent``, of the Omium run in progress (None
        outside one). ``advance``: the next checkpoint's stretch begins here (False for a tool's,
        which may finish in any order with the turn's other tool calls)."""
        run = maybe_current()
        if run is None:
            return None
        self._begin()
        here = run.scope.boundary()
        record = record_checkpoint(run, name, self._since[1], values, agent=agent)
        if advance:
            self._since = (run.run_id, here)
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

    # --- RunHooks (parameter names are the SDK's: it calls them by keyword)
    async def on_agent_start(self, context: AgentHookContext[Any], agent: Agent[Any]) -> None:
        """Forwarded (the first agent's start begins the first checkpoint's stretch)."""
        self._begin()
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
        self.checkpoint(
            f"{agent.name}.turn", agent.name, {"agent": agent.name, "kind": "turn", "calls": calls}
        )
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
            agent.name,
            {"agent": agent.name, "kind": "tool", "tool": tool.name, "call_id": call_id},
            advance=False,
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
        self.checkpoint(f"{agent.name}.output", agent.name, {"agent": agent.name, "kind": "output"})
        if self.chain is not None:
            await self.chain.on_agent_end(context, agent, output)


__all__ = ["OmiumRunHooks"]
