"""Omium beneath AG2 (``pip install 'omium[autogen]'``, AG2 1.x, imported as ``ag2``).

An AG2 team keeps its code. :func:`instrument` adds one middleware to each agent and returns a
:class:`Team`; :meth:`Team.run` runs the conversation — sequential ``Agent.ask`` chats, or an AG2
network with a workflow channel — as a durable Omium run:

* **traced** — ``invoke_agent {agent}`` per turn, ``chat {model}`` per model call and
  ``execute_tool {tool}`` per tool execution, with ``omium.run_id`` and ``omium.step_index``, under
  the run's ``invoke_workflow`` span, through Omium's tracer (into ``otel_traces``);
* **checkpointed** — each finished turn is a recorded call of the run, with a ``turn-N``
  checkpoint holding the transcript by content address; running the same run id again after a
  crash answers finished turns from the record (no model call) and runs the rest;
* **validated** — :class:`HandoffCheck` checks what an agent hands on (pydantic schema, Omium
  constraints); a rejected hand-off is logged with its reason and stops the conversation through
  a termination condition, never by raising inside AG2 (which drops the message and leaves the
  team waiting);
* **reviewable** — :class:`ReviewGate` pauses the conversation before a turn until a person
  approves it (``omium review RUN --approve``); the next run of that id resumes from the record.

Example::

    from omium.adapters.autogen import HandoffCheck, ReviewGate, instrument

    team = instrument(
        [planner, coder, reviewer],                      # ag2.Agent objects, unchanged
        handoffs=[HandoffCheck("planner", "coder", schema=Plan)],
        reviews=[ReviewGate("reviewer")],
    )

    async def conversation(task: str) -> str:
        plan = await planner.ask(task)
        code = await coder.ask(plan.body)
        return (await reviewer.ask(code.body)).body

    outcome = await team.run(conversation, "write fib", run_id="fib-1")
    # outcome.status: "completed" | "rejected" | "paused"; run it again to resume

In an AG2 network, add Omium's stop transition to the workflow graph —
``with_stop(TransitionGraph.sequence([...]))`` — so a stop closes the channel.
"""

from omium.adapters.autogen.middleware import OmiumMiddleware
from omium.adapters.autogen.recording import transcript
from omium.adapters.autogen.team import Outcome, Team, instrument
from omium.adapters.autogen.termination import (
    OmiumStopped,
    OmiumStopTarget,
    is_stop,
    stop_reason,
    stop_transition,
    with_stop,
)
from omium.adapters.handoffs import HandoffCheck, Verdict
from omium.adapters.review import ReviewGate

__all__ = [
    "HandoffCheck",
    "OmiumMiddleware",
    "OmiumStopTarget",
    "OmiumStopped",
    "Outcome",
    "ReviewGate",
    "Team",
    "Verdict",
    "instrument",
    "is_stop",
    "stop_reason",
    "stop_transition",
    "transcript",
    "with_stop",
]
