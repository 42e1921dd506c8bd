"""An Agents SDK agent graph as an Omium workflow: durable, checkpointed, validated, reviewable.

Example:
    >>> from omium.adapters.openai_agents import agent_workflow, instrument
    >>> instrument()                                          # doctest: +SKIP
    >>> support = agent_workflow(triage, name="support")      # doctest: +SKIP
    >>> omium.run(support, "my invoice is wrong", run_id="ticket-42")   # doctest: +SKIP

Run it again with the same ``run_id`` after a crash and the model calls and tool calls that had
completed return their recorded results; a run waiting for a tool approval continues from its
stored ``RunState`` once :func:`.review.approve` (or ``omium review``) has decided. Define the
workflow at module level: a worker (``omium worker MODULE``) or ``omium.recovery.resume`` finds
it by name once the module is imported.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from agents import Agent, RunConfig, RunHooks, Runner
from agents.items import TResponseInputItem

from omium.adapters.openai_agents import review
from omium.adapters.openai_agents.durable import durable, durable_run_config
from omium.adapters.openai_agents.hooks import OmiumRunHooks
from omium.sdk.context import current
from omium.sdk.runs import workflow


def agent_workflow(
    agent: Agent[Any],
    *,
    name: str | None = None,
    run_config: RunConfig | None = None,
    hooks: RunHooks[Any] | None = None,
    max_turns: int | None = None,
    policy: Any = None,
) -> Callable[..., Any]:
    """An Omium ``@workflow`` (async, one argument: the SDK input) that runs ``agent``.

    The agent graph is made durable in place (:func:`.durable.durable`); each execution runs the
    SDK with :class:`.hooks.OmiumRunHooks` (chained to ``hooks``) and a durable ``run_config``.
    It returns the run's final output, or stops at the review gate (:func:`.review.pause`) when a
    tool call needs approval. ``name`` (default: the agent's) is the workflow's name, under which
    workers and ``omium.recovery.resume`` find it; ``policy`` is its recovery policy.
    """
    durable(agent)
    config = durable_run_config(run_config)
    if isinstance(policy, str):  # relative to where the caller runs, not to this module
        policy = os.path.abspath(policy)

    async def run_agents(input: str | list[TResponseInputItem]) -> Any:
        context = current()
        omium_hooks = OmiumRunHooks(chain=hooks)
        options: dict[str, Any] = {"hooks": omium_hooks, "run_config": config}
        if max_turns is not None:
            options["max_turns"] = max_turns
        paused = review.paused_at(context.store, context.store.get_run(context.run_id))
        if paused is not None:
            result = await review.resume_paused(agent, paused, **options)
        else:
            result = await Runner.run(agent, input, **options)
        while result.interruptions:  # stops at the gate until a reviewer has decided
            result = await review.resume_paused(agent, await review.pause(result), **options)
        return result.final_output

    run_agents.__qualname__ = run_agents.__name__ = name or agent.name
    return workflow(run_agents, name=name or agent.name, policy=policy)


__all__ = ["agent_workflow"]
