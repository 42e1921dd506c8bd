"""The multi-agent example the tests share: a triage agent hands a ticket to billing, which uses tools.

Each call of :func:`support` builds the agents afresh (as a new process would) around a scripted
model; the tools count their executions in :data:`executed`, which outlives the agents.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

from agents import Agent, function_tool
from agents.testing import ScriptedModel, assistant_message, function_call
from pydantic import BaseModel

from omium.adapters.openai_agents import validated_handoff

executed: Counter[str] = Counter()


class Ticket(BaseModel):
    """What triage hands to billing."""

    customer: str
    amount: float


@function_tool
def lookup_account(customer: str) -> str:
    """Look up a customer's account."""
    executed["lookup_account"] += 1
    return f"{customer}: premium, balance 120.00"


@function_tool(needs_approval=True)
def refund(customer: str, amount: float) -> str:
    """Refund a customer (needs a person's approval)."""
    executed["refund"] += 1
    return f"refunded {amount:.2f} to {customer}"


def support(script: Sequence[Any], *, with_refund: bool = False) -> tuple[Agent[Any], ScriptedModel]:
    """Triage and billing around one scripted model; returns (triage, model)."""
    model = ScriptedModel(script, emit_traces=True)
    tools = [lookup_account, refund] if with_refund else [lookup_account]
    billing = Agent(name="billing", instructions="Resolve billing tickets.", model=model, tools=tools)
    escalate = validated_handoff(billing, schema=Ticket, constraints={"amount": {"min": 0, "max": 1000}})
    triage = Agent(name="triage", instructions="Route the ticket.", model=model, handoffs=[escalate])
    return triage, model


# Model steps, in the order the agents ask for them.
HANDOFF = [function_call("transfer_to_billing", {"customer": "jane", "amount": 42.0}, call_id="h1")]
LOOKUP = [function_call("lookup_account", {"customer": "jane"}, call_id="t1")]
REFUND = [function_call("refund", {"customer": "jane", "amount": 42.0}, call_id="t2")]
ANSWER = [assistant_message("Jane is premium; refund of 42.00 sorted.")]
