"""Company X's onboarding as a CrewAI crew with scripted models: KYC -> credit -> terms -> email.

Each agent has its own :class:`ScriptedLLM`, so a test counts each agent's model calls; the two
tools record every real execution in ``tool_runs`` (and, given a file, append it there, so a test
sees executions of a process that was killed).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from crewai import Agent, Crew, Task
from crewai.tools import BaseTool
from pydantic import BaseModel, PrivateAttr

from omium.adapters.crewai import HandoffCheck
from omium.adapters.crewai.testing import ScriptedLLM, action, final

ROLES = ("kyc", "credit", "terms", "email")


class KycResult(BaseModel):
    customer: str
    verified: bool


KYC_CHECK = HandoffCheck("kyc", "credit", schema=KycResult, constraints={"verified": {"allowed": [True]}})


class Recorded(BaseTool):
    """A tool that says what it did and records each real execution."""

    name: str
    description: str
    result: str
    _runs: list[str] = PrivateAttr(default_factory=list)
    _log: Path | None = PrivateAttr(default=None)

    def _run(self, customer: str) -> str:
        self._runs.append(customer)
        if self._log is not None:
            with self._log.open("a") as out:
                out.write(f"{self.name} {customer}\n")
        return self.result.format(customer=customer)


@dataclass
class Onboarding:
    crew: Crew
    models: dict[str, ScriptedLLM]
    tools: dict[str, Recorded] = field(default_factory=dict)

    def calls(self) -> dict[str, int]:
        return {role: model.calls for role, model in self.models.items()}

    def tool_runs(self) -> dict[str, list[str]]:
        return {name: list(tool._runs) for name, tool in self.tools.items()}


def scripts(apr: str = "6.9") -> dict[str, list[Any]]:
    """The models' answers for one healthy onboarding of Ada."""
    return {
        "kyc": [
            action("lookup_customer", {"customer": "Ada"}),
            final(json.dumps({"customer": "Ada", "verified": True})),
        ],
        "credit": [final("Credit score 720: approve up to $20,000")],
        "terms": [final(f"Offer: $20,000 at APR {apr}%")],
        "email": [action("send_email", {"customer": "Ada"}), final("Email sent to Ada")],
    }


def onboarding(
    overrides: dict[str, list[Any]] | None = None,
    *,
    tool_log: Path | None = None,
    guardrail: Callable[..., Any] | None = None,
    guardrail_retries: int = 1,
) -> Onboarding:
    """A fresh crew (new agents, tasks, models and tools) for one test."""
    answers = {**scripts(), **(overrides or {})}
    models = {role: ScriptedLLM(model=f"{role}-model", script=answers[role]) for role in ROLES}
    lookup = Recorded(
        name="lookup_customer",
        description="Look a customer up in the KYC registry.",
        result="{customer}: identity verified",
    )
    send = Recorded(
        name="send_email", description="Send the offer email to a customer.", result="sent to {customer}"
    )
    for tool in (lookup, send):
        tool._log = tool_log
    agents = {
        role: Agent(
            role=role,
            goal=f"do the {role} step of onboarding",
            backstory=f"Company X's {role} agent",
            llm=models[role],
            tools={"kyc": [lookup], "email": [send]}.get(role, []),
            max_iter=3,
            allow_delegation=False,
        )
        for role in ROLES
    }
    tasks = [
        Task(
            name="verify identity",
            description="Verify {customer}'s identity.",
            expected_output="JSON: customer, verified",
            agent=agents["kyc"],
        ),
        Task(
            name="score credit",
            description="Score {customer}'s credit.",
            expected_output="a score and a limit",
            agent=agents["credit"],
        ),
        Task(
            name="generate terms",
            description="Write the loan terms for {customer}.",
            expected_output="an offer with an APR",
            agent=agents["terms"],
            **({"guardrail": guardrail, "guardrail_max_retries": guardrail_retries} if guardrail else {}),
        ),
        Task(
            name="send offer",
            description="Email the offer to {customer}.",
            expected_output="confirmation",
            agent=agents["email"],
        ),
    ]
    crew = Crew(name="onboarding", agents=list(agents.values()), tasks=tasks)
    return Onboarding(crew, models, {"lookup_customer": lookup, "send_email": send})
