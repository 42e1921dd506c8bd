"""Where a runtime incident's bad data came from: the step that failed, and the call behind it.

A guard or detector judges data an agent produced: the culprit is that agent's last model or tool
call before the failing step (and, if the agent's input arrived by hand-off, that receive is the
next link back). A stale hand-off is its own culprit: it was sent from state that moved on. The
console's run detail and the pipelines' root causes both read a failure this way; each words the
chain for its own readers.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

# The kinds of recorded call that produce data.
CALL_KINDS = ("llm", "tool", "step")


class StepLike(Protocol):
    """A recorded call (``omium.sdk.store.StepRecord`` is one)."""

    position: int
    kind: str
    name: str
    agent: str


@dataclass(frozen=True)
class Trace:
    """The failing step of an incident and the calls it leads back to."""

    position: int
    trigger: str
    agent: str
    failed: Any | None  # the step at ``position`` (None if the workflow itself failed)
    producer: Any | None  # the agent's last model or tool call before it (None for a stale hand-off)
    receive: Any | None  # the agent's last hand-off receive before it

    @property
    def culprit(self) -> int:
        """The position responsible: the producer's, else the failing step's."""
        return self.producer.position if self.producer is not None else self.position


def trace(failure: Mapping[str, Any], steps: Sequence[Any], *, default_position: int = -1) -> Trace:
    """Read ``failure`` (the supervisor's record: position, trigger, agent) against the run's steps."""
    position = int(failure.get("position", default_position))
    trigger = str(failure.get("trigger", "exception"))
    failed = next((s for s in steps if s.position == position), None)
    agent = str(failure.get("agent") or (failed.agent if failed is not None else ""))
    producer = receive = None
    if trigger != "stale_handoff":
        earlier = [s for s in steps if s.position < position and s.agent == agent]
        producer = next((s for s in reversed(earlier) if s.kind in CALL_KINDS), None)
        receive = next((s for s in reversed(earlier) if s.kind == "handoff_receive"), None)
    return Trace(position, trigger, agent, failed, producer, receive)


__all__ = ["CALL_KINDS", "Trace", "trace"]
