"""A turn whose tool calls the Agents SDK runs concurrently, against a ledger that honours keys.

The model of :func:`booking` asks, in one turn, for four calls of durable function tools; the SDK
runs them at once and each sleeps a random while first, so they finish in a different order each
time. Their side effects go to a :class:`Ledger`: a file standing in for an external system that
applies each idempotency key once (as payment APIs do) and logs every raw call, so a test can
tell an effect applied twice from a call made twice.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from agents import Agent, function_tool
from agents.testing import ScriptedModel, assistant_message, function_call

import omium
from omium.sdk.context import current

AGENT = "booker"
# One turn, four tool calls at once (two of the same tool).
TURN = [
    function_call("reserve_seat", {"seat": "1A"}, call_id="c1"),
    function_call("reserve_seat", {"seat": "1B"}, call_id="c2"),
    function_call("charge_card", {"amount": 240.0}, call_id="c3"),
    function_call("send_itinerary", {"email": "ada@example.com"}, call_id="c4"),
]
ANSWER = [assistant_message("Seats 1A and 1B booked, 240.00 charged, itinerary sent.")]
EFFECTS = {"reserve:1A", "reserve:1B", "charge:240.00", "itinerary:ada@example.com"}
LAST = "send_itinerary"  # the tool a test stops the process in

Hang = Callable[[], Awaitable[None]]


class Ledger:
    """The external system: each idempotency key applied once, durably; every call logged."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.calls_path = path.with_suffix(".calls")

    def apply(self, effect: str) -> str:
        """Apply ``effect`` under the calling tool call's idempotency key (once per key)."""
        key = omium.idempotency_key()
        with open(self.calls_path, "a") as calls:
            calls.write(key + "\n")
        for entry in self.effects():
            if entry["key"] == key:
                return str(entry["effect"])
        with open(self.path, "a") as ledger:
            ledger.write(json.dumps({"key": key, "effect": effect}) + "\n")
            ledger.flush()
            os.fsync(ledger.fileno())
        return effect

    def effects(self) -> list[dict[str, str]]:
        """What was applied, in order."""
        if not self.path.exists():
            return []
        return [json.loads(line) for line in self.path.read_text().splitlines()]

    def calls(self) -> list[str]:
        """The idempotency key of every call made, in order."""
        return self.calls_path.read_text().split() if self.calls_path.exists() else []


async def others_recorded(count: int = len(TURN) - 1) -> None:
    """Wait until ``count`` tool calls of the run in progress are recorded as completed."""
    context = current()
    while True:
        steps = context.store.steps(context.run_id)
        if sum(s.kind == "tool" and s.status == "completed" for s in steps) >= count:
            return
        await asyncio.sleep(0.005)


def booking(
    script: list[Any], ledger: Ledger, *, hang: Hang | None = None
) -> tuple[Agent[Any], ScriptedModel]:
    """The booking agent around a scripted model; ``hang`` runs in :data:`LAST` after its effect."""

    async def pause() -> None:
        await asyncio.sleep(random.uniform(0.0, 0.05))

    @function_tool
    async def reserve_seat(seat: str) -> str:
        """Reserve a seat."""
        await pause()
        return ledger.apply(f"reserve:{seat}")

    @function_tool
    async def charge_card(amount: float) -> str:
        """Charge the card on file."""
        await pause()
        return ledger.apply(f"charge:{amount:.2f}")

    @function_tool
    async def send_itinerary(email: str) -> str:
        """Email the itinerary."""
        await pause()
        sent = ledger.apply(f"itinerary:{email}")
        if hang is not None:
            await hang()
        return sent

    model = ScriptedModel(script, emit_traces=True)
    agent: Agent[Any] = Agent(
        name=AGENT,
        instructions="Book the trip.",
        model=model,
        tools=[reserve_seat, charge_card, send_itinerary],
    )
    return agent, model
