"""Omium beneath CrewAI (``pip install 'omium[crewai]'``, CrewAI 1.x).

A crew keeps its code. :func:`instrument` returns an :class:`OmiumCrew`;
:meth:`OmiumCrew.kickoff` runs the crew as a durable Omium run:

* **traced** — ``invoke_agent {role}`` per task, ``chat {model}`` per model call (with tokens) and
  ``execute_tool {tool}`` per tool call, with ``omium.run_id`` and ``omium.step_index``, under the
  run's ``invoke_workflow`` span, through Omium's tracer (into ``otel_traces``);
* **checkpointed** — each finished task is a recorded call of the run with its ``TaskOutput``
  stored by content address and a ``task-N`` checkpoint; kicking the same run id off again after a
  crash puts the finished tasks' outputs back and CrewAI's own resume path starts at the first
  unfinished task (no model or tool call for finished ones);
* **validated** — :class:`HandoffCheck` checks what an agent's task hands on (pydantic schema,
  Omium constraints) in CrewAI's ``post_step`` hook; a rejected hand-off is logged with its reason
  and aborts the crew before the next task;
* **guarded** — :func:`guardrail` makes an Omium check a CrewAI task guardrail: CrewAI retries as
  usual, Omium records each verdict, and a guardrail that gives up fails the run with a
  ``GuardViolation`` its recovery policy acts on;
* **reviewable** — :class:`ReviewGate` pauses the crew before an agent's task until a person
  approves it (``omium review RUN --approve``); the next kickoff of that run id resumes.

Example::

    from omium.adapters.crewai import HandoffCheck, ReviewGate, guardrail, instrument

    app = instrument(
        crew,                                            # a crewai.Crew, unchanged
        handoffs=[HandoffCheck("kyc", "credit", schema=KycResult)],
        reviews=[ReviewGate("email")],
    )
    outcome = app.kickoff({"customer": "Ada"}, run_id="onboard-ada")
    # outcome.status: "completed" | "rejected" | "paused"; kick it off again to resume

``omium import crewai MODULE:CREW`` reports a crew's agents, tasks, suggested checkpoints and
hand-offs, and writes a starter policy.
"""

from omium.adapters.crewai.crew import OmiumCrew, Outcome, instrument
from omium.adapters.crewai.guardrails import Guardrail, guardrail
from omium.adapters.crewai.session import TASK_KIND
from omium.adapters.handoffs import HandoffCheck, Verdict
from omium.adapters.review import ReviewGate

__all__ = [
    "TASK_KIND",
    "Guardrail",
    "HandoffCheck",
    "OmiumCrew",
    "Outcome",
    "ReviewGate",
    "Verdict",
    "guardrail",
    "instrument",
]
