"""The run context: one ContextVar holding the run in progress.

Everything a recorded call needs — the run id, the store, the next position, what was recorded
before a crash — lives in one :class:`RunContext`. Context managers set it and clean up only what
they set; outside a run, :func:`current` raises a clear error.
"""

from __future__ import annotations

from contextvars import ContextVar, Token
from dataclasses import dataclass, field
from typing import Any

from omium.errors import OutsideRunError
from omium.sdk.store import CheckpointStore, StepRecord


class StopReached(BaseException):
    """A test fix got past the failed call: the run stops here (a BaseException, so that user
    code catching ``Exception`` cannot swallow it)."""

    def __init__(self, position: int) -> None:
        super().__init__(f"stopped before position {position}")
        self.position = position


@dataclass
class RunContext:
    """State of the run executing in this context."""

    run_id: str
    workflow: str
    store: CheckpointStore
    recorded: dict[int, StepRecord] = field(default_factory=dict)
    next_position: int = 0
    next_checkpoint_seq: int = 0
    agents: list[str] = field(default_factory=list)
    # Steps recorded inside open transactions wait here until the outermost one commits.
    pending: list[list[StepRecord]] = field(default_factory=list)
    call_key: str = ""
    # Next hand-off sequence number per channel this run sends on (kept in step with replays).
    channel_seq: dict[str, int] = field(default_factory=dict)
    seq_by_key: dict[str, int] = field(default_factory=dict)  # a retried send keeps its number
    state_reads: dict[str, int] = field(default_factory=dict)  # "namespace/key" -> version last seen
    executed: int = 0  # calls that really ran (not served from the recording)
    replayed: int = 0  # calls served from the recording
    verify_only: bool = False  # a verification replay: execute nothing, write nothing
    # After a rollback, calls from ``rollback_position`` on belong to a new generation: their
    # idempotency keys differ from the rolled-back attempt's, so they really run again.
    generation: int = 0
    rollback_position: int = 0
    rollbacks: list[tuple[int, int]] = field(default_factory=list)  # (generation, position), oldest first
    # Agents' editable configuration: defaults by agent, and "agent.field" overrides of this run.
    agent_configs: dict[str, dict[str, Any]] = field(default_factory=dict)
    overrides: dict[str, Any] = field(default_factory=dict)
    # Set by the recovery supervisor: the run's policy (high-value threshold) and extra detectors.
    policy: Any = None
    detectors: list[Any] = field(default_factory=list)
    # A test fix stops the run once the call at this position has passed.
    stop_after: int | None = None

    def call_key_for(self, position: int) -> str:
        """The idempotency key of the call at ``position``."""
        # The generation that last executed this position: the latest rollback at or before it.
        generation = max((g for g, p in self.rollbacks if position >= p), default=0)
        if not self.rollbacks and self.generation and position >= self.rollback_position:
            generation = self.generation
        return f"{self.run_id}:{position}:g{generation}" if generation else f"{self.run_id}:{position}"

    def rolled_back(self, key: str) -> bool:
        """Whether the call with idempotency key ``key`` lies in a stretch a later rollback undid."""
        parts = key.split(":")
        if len(parts) < 2 or not parts[1].isdigit() or not key.startswith(f"{self.run_id}:"):
            return False
        position = int(parts[1])
        generation = int(parts[2][1:]) if len(parts) > 2 and parts[2].startswith("g") else 0
        return any(g > generation and position >= p for g, p in self.rollbacks)

    @property
    def agent(self) -> str:
        """The innermost agent running, or ''."""
        return self.agents[-1] if self.agents else ""

    def take_position(self) -> int:
        """The position of the next recorded call."""
        position = self.next_position
        if self.stop_after is not None and position > self.stop_after:
            raise StopReached(position)
        self.next_position += 1
        return position


_current: ContextVar[RunContext | None] = ContextVar("omium_run", default=None)


@dataclass(frozen=True)
class Supervision:
    """What the recovery supervisor hands to the run it starts (see :mod:`omium.recovery`)."""

    policy: Any = None
    detectors: tuple[Any, ...] = ()
    stop_after: int | None = None


supervision: ContextVar[Supervision | None] = ContextVar("omium_supervision", default=None)


def current() -> RunContext:
    """The run in progress; :class:`OutsideRunError` outside one."""
    context = _current.get()
    if context is None:
        raise OutsideRunError(
            "no Omium run in progress: call this inside a @workflow or @agent function "
            "(or start one with omium.run(fn, ...))"
        )
    return context


def maybe_current() -> RunContext | None:
    """The run in progress, or None."""
    return _current.get()


def enter(context: RunContext) -> Token[RunContext | None]:
    """Make ``context`` current; pass the token to :func:`leave`."""
    return _current.set(context)


def leave(token: Token[RunContext | None]) -> None:
    """Restore what was current before :func:`enter`."""
    _current.reset(token)


def idempotency_key() -> str:
    """The idempotency key of the call executing now: stable across retries and resumes.

    Side-effecting tools pass it to the systems they call (payment APIs, email senders) so that a
    call repeated after a crash is recognised there and applied once.
    """
    context = current()
    if not context.call_key:
        raise OutsideRunError("idempotency_key() is available inside a @step or @tool call")
    return context.call_key


__all__ = [
    "RunContext",
    "StopReached",
    "Supervision",
    "current",
    "enter",
    "idempotency_key",
    "leave",
    "maybe_current",
    "supervision",
]
