"""A review gate on the SDK's tool approvals: pause a run, keep its state in Omium, resume it later.

A function tool declared with ``needs_approval`` interrupts an SDK run. Inside an Omium run,
:func:`pause` stores the SDK's serialised ``RunState`` in Omium's store (a content-addressed
blob, referenced by the checkpoint ``awaiting_approval``) and stops the run at a recorded
approval gate with :class:`~omium.errors.ApprovalRequired` (trigger ``high_value_operation``):
under :func:`omium.recovery.supervise` the run is paused for review; under ``omium.run`` the error
reaches the caller. The run holds no process while it waits.

A reviewer decides with :func:`approve` or :func:`reject`, or ``omium review RUN --approve`` /
``--reject --reason ...`` (supervised or not): every decision is recorded by
:func:`omium.recovery.review`, the one home of review decisions. Re-running the run —
``omium.run`` with the same run id, a worker, or ``omium.recovery.resume`` — possibly in another
process, :func:`resume_paused` rebuilds the ``RunState`` from the store against the agents given,
applies the decision (a rejected call is reported to the model, which carries on) and continues
the SDK run from the gate's place in the Omium run.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from agents import Agent, RunConfig, RunHooks, Runner, RunResult, RunState
from agents.items import ToolApprovalItem

from omium import semconv
from omium.errors import ApprovalRequired, ConflictError
from omium.recovery.review import CARRY_ON, ON_REJECT, Decision, gate_decision, review
from omium.sdk import serde, tracing
from omium.sdk.checkpoint import record_checkpoint
from omium.sdk.context import current, step_call_id, step_generation
from omium.sdk.recording import begin_call, continue_at
from omium.sdk.runs import default_store, live_checkpoints
from omium.sdk.store import CheckpointRecord, CheckpointStore, RunRecord

CHECKPOINT = "awaiting_approval"
GATE = "tool_approval"
TRIGGER = "high_value_operation"


@dataclass(frozen=True)
class PendingCall:
    """A tool call waiting for approval."""

    agent: str
    tool: str
    call_id: str
    arguments: str

    @classmethod
    def of(cls, item: ToolApprovalItem) -> PendingCall:
        """From the SDK's interruption."""
        raw = item.raw_item
        get = raw.get if isinstance(raw, dict) else lambda key, default=None: getattr(raw, key, default)
        return cls(
            agent=item.agent.name,
            tool=item.tool_name or str(get("name", "") or ""),
            call_id=str(get("call_id", "") or get("id", "") or ""),
            arguments=str(get("arguments", "") or ""),
        )


@dataclass(frozen=True)
class Paused:
    """Where a run stopped for approval: its checkpoint, the stored SDK state and the gate."""

    checkpoint: CheckpointRecord  # its call_id is the gate's place in the run
    state: str  # RunState.to_string()
    gate: str  # the approval gate's idempotency key (what a decision names; '' if not reached)
    pending: tuple[PendingCall, ...]


def paused_at(store: CheckpointStore, run: RunRecord) -> Paused | None:
    """The run's latest pause for approval (None if it never paused, or a rollback undid it)."""
    found = [c for c in live_checkpoints(store, run) if c.name == CHECKPOINT]
    if not found:
        return None
    checkpoint = found[-1]
    values = serde.loads(store.get_blob(checkpoint.state_hash))["values"]
    pending = tuple(PendingCall(**p) for p in values["pending"])
    gates = [
        s.idempotency_key
        for s in store.steps(run.run_id)
        if s.kind == "gate"
        and step_call_id(s) == checkpoint.call_id
        and step_generation(s) == checkpoint.generation
    ]
    return Paused(checkpoint, values["run_state"], gates[-1] if gates else "", pending)


def pending_approval(run_id: str, *, store: CheckpointStore | None = None) -> Paused | None:
    """What run ``run_id`` waits for, if it waits: the tool calls and the gate to approve."""
    store = store or default_store()
    run = store.get_run(run_id)
    paused = paused_at(store, run)
    if paused is None or not paused.gate or gate_decision(run, paused.gate) is not None:
        return None
    return paused


async def _gate(pending: tuple[PendingCall, ...]) -> tuple[str, Decision]:
    """The recorded approval gate: its key and the decision, or ApprovalRequired while there is
    none. It asks for the calls and says that a rejection is an answer the run carries on with."""
    context = current()
    asked = {"calls": [p.__dict__ for p in pending], ON_REJECT: CARRY_ON}
    call = begin_call("gate", GATE, asked, agent=pending[0].agent if pending else None)
    attributes = {
        semconv.OMIUM_RUN_ID: context.run_id,
        semconv.OMIUM_STEP_INDEX: call.position,
        semconv.OMIUM_STEP_KIND: "gate",
        semconv.GEN_AI_AGENT_NAME: call.agent,
        "omium.call_id": call.call_id,
        "omium.idempotency_key": call.key,
    }
    with tracing.span(f"gate {GATE}", attributes) as span:
        if call.replayed:
            span.set_attribute("omium.replayed", True)
            return call.key, Decision(**call.result)
        with call.running():
            decided = gate_decision(context.store.get_run(context.run_id), call.key)
        if decided is None:
            tools = ", ".join(f"{p.tool}({p.arguments})" for p in pending)
            waiting = ApprovalRequired(
                f"tool call needs approval: {tools}",
                trigger=TRIGGER,
                check=GATE,
                evidence={"gate": call.key, "operation": "tool_approval", **asked},
            )
            call.fail(waiting)
            raise waiting
        call.complete(decided.__dict__)
        span.set_attribute("omium.review.decision", decided.decision)
        return call.key, decided


async def pause(result: RunResult) -> Paused:
    """Keep an interrupted SDK run's state in the Omium run and stop at the approval gate.

    Returns the pause when the gate here is decided already (a run passing it again); continue
    with :func:`resume_paused`.

    Raises:
        ApprovalRequired: no decision yet (the usual case: the run stops here).
    """
    context = current()
    pending = tuple(PendingCall.of(item) for item in result.interruptions)
    here = context.scope.boundary()  # the gate's place: resuming continues there
    state = result.to_state().to_string()
    values = {"run_state": state, "pending": [p.__dict__ for p in pending]}
    agent = pending[0].agent if pending else None
    checkpoint = record_checkpoint(context, CHECKPOINT, here, values, agent=agent)
    if checkpoint is None:  # a verification replay stores nothing: where it stands is enough
        checkpoint = CheckpointRecord(context.run_id, -1, CHECKPOINT, -1, "", call_id=here)
    gate, _ = await _gate(pending)
    return Paused(checkpoint, state, gate, pending)


async def resume_paused(
    agent: Agent[Any],
    paused: Paused,
    *,
    hooks: RunHooks[Any] | None = None,
    run_config: RunConfig | None = None,
    max_turns: int | None = None,
) -> RunResult:
    """Continue the SDK run that stopped at ``paused``, with the reviewer's decision applied.

    ``agent`` is the starting agent of the run (built afresh in another process, if need be).
    The calling task continues at the gate's place in the Omium run (the SDK's state replaces the
    calls before it), so what ran before is not repeated and what follows keeps its call ids.

    Raises:
        ApprovalRequired: there is no decision yet (the run stays where it is).
        ValueError: the pause was recorded by another task of the run.
    """
    continue_at(paused.checkpoint.call_id)
    _, decision = await _gate(paused.pending)
    state: RunState[Any, Agent[Any]] = await RunState.from_string(agent, paused.state)
    for item in state.get_interruptions():
        if decision.approved:
            state.approve(item)
        else:
            state.reject(item, rejection_message=f"rejected by a reviewer: {decision.reason}")
    options: dict[str, Any] = {"hooks": hooks, "run_config": run_config}
    if max_turns is not None:
        options["max_turns"] = max_turns
    return await Runner.run(agent, state, **options)


def _decide(
    run_id: str, decision: str, reason: str, reviewer: str, store: CheckpointStore | None
) -> RunRecord:
    store = store or default_store()
    paused = pending_approval(run_id, store=store)
    if paused is None:
        raise ConflictError(f"run {run_id!r} is not waiting for a tool approval")
    return review(run_id, decision, gate=paused.gate, reviewer=reviewer, reason=reason, store=store)


def approve(
    run_id: str, *, reviewer: str = "reviewer", reason: str = "", store: CheckpointStore | None = None
) -> RunRecord:
    """Approve the tool calls run ``run_id`` waits for; re-running it then executes them.

    The decision is :func:`omium.recovery.review`'s (``omium review RUN --approve`` does the same).

    Raises:
        ConflictError: the run is not waiting for a tool approval.
    """
    return _decide(run_id, "approve", reason, reviewer, store)


def reject(
    run_id: str, *, reason: str, reviewer: str = "reviewer", store: CheckpointStore | None = None
) -> RunRecord:
    """Reject the tool calls run ``run_id`` waits for: re-running it tells the model they were
    rejected (with ``reason``) and the agents carry on without them.

    The decision is :func:`omium.recovery.review`'s (``omium review RUN --reject --reason ...``
    does the same).

    Raises:
        ConflictError: the run is not waiting for a tool approval.
    """
    return _decide(run_id, "reject", reason, reviewer, store)


__all__ = [
    "CHECKPOINT",
    "GATE",
    "Paused",
    "PendingCall",
    "approve",
    "pause",
    "paused_at",
    "pending_approval",
    "reject",
    "resume_paused",
]
