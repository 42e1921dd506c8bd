"""A review gate on the SDK's tool approvals: pause a run, keep its state in Omium, resume it later.

A function tool declared with ``needs_approval`` interrupts an SDK run. Inside an Omium run,
:func:`pause` stores the SDK's serialised ``RunState`` in Omium's store (a content-addressed
blob, referenced by the checkpoint ``awaiting_approval``) and stops the run at a recorded
approval gate with :class:`~omium.errors.ApprovalRequired` (trigger ``high_value_operation``):
under :func:`omium.recovery.supervise` the run is paused for review; under ``omium.run`` the error
reaches the caller. The run holds no process while it waits.

A reviewer decides with :func:`approve` or :func:`reject` (or ``omium review RUN --approve`` for a
supervised run). Re-running the run — ``omium.run`` with the same run id, a worker, or
``omium.recovery.resume`` — possibly in another process, :func:`resume_paused` rebuilds the
``RunState`` from the store against the agents given, applies the decision (a rejected call is
reported to the model, which carries on) and continues the SDK run from where it stopped.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from agents import Agent, RunConfig, RunHooks, Runner, RunResult, RunState
from agents.items import ToolApprovalItem

from omium.errors import ApprovalRequired, ConflictError
from omium.sdk import serde
from omium.sdk.calls import CallDefinition, ainvoke
from omium.sdk.checkpoint import record_checkpoint
from omium.sdk.context import RunContext, current
from omium.sdk.guards import APPROVALS_ATTRIBUTE
from omium.sdk.runs import default_store, live_checkpoints
from omium.sdk.store import CheckpointRecord, CheckpointStore, RunRecord

CHECKPOINT = "awaiting_approval"
GATE = "tool_approval"
REJECTIONS_ATTRIBUTE = "openai_agents.rejections"
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

    checkpoint: CheckpointRecord
    state: str  # RunState.to_string()
    gate: str  # the approval gate's idempotency key (what an approval names)
    pending: tuple[PendingCall, ...]


def paused_at(store: CheckpointStore, run: RunRecord) -> Paused | None:
    """The run's latest pause for approval (None if it never paused, or a rollback undid it)."""
    found = [c for c in live_checkpoints(store, run) if c.name == CHECKPOINT]
    if not found:
        return None
    checkpoint = found[-1]
    values = serde.loads(store.get_blob(checkpoint.state_hash))["values"]
    pending = tuple(PendingCall(**p) for p in values["pending"])
    return Paused(checkpoint, values["run_state"], values["gate"], pending)


def pending_approval(run_id: str, *, store: CheckpointStore | None = None) -> Paused | None:
    """What run ``run_id`` waits for, if it waits: the tool calls and the gate to approve."""
    store = store or default_store()
    run = store.get_run(run_id)
    paused = paused_at(store, run)
    if paused is None or _decision(run, paused.gate) is not None:
        return None
    return paused


def _decision(run: RunRecord, gate: str) -> dict[str, str] | None:
    if gate in json.loads(run.attributes.get(APPROVALS_ATTRIBUTE, "[]")):
        return {"decision": "approved"}
    rejections = json.loads(run.attributes.get(REJECTIONS_ATTRIBUTE, "{}"))
    if gate in rejections:
        return {"decision": "rejected", "reason": rejections[gate]}
    return None


async def _gate(context: RunContext, pending: tuple[PendingCall, ...]) -> dict[str, str]:
    """The recorded approval gate: the decision, or ApprovalRequired while there is none."""

    async def gate() -> dict[str, str]:
        key = current().call_key
        decision = _decision(context.store.get_run(context.run_id), key)
        if decision is not None:
            return decision
        tools = ", ".join(f"{p.tool}({p.arguments})" for p in pending)
        raise ApprovalRequired(
            f"tool call needs approval: {tools}",
            trigger=TRIGGER,
            check=GATE,
            evidence={
                "gate": key,
                "operation": "tool_approval",
                "calls": [p.__dict__ for p in pending],
            },
        )

    decided: dict[str, str] = await ainvoke(CallDefinition(GATE, "gate", gate, is_async=True), (), {})
    return decided


async def pause(result: RunResult) -> Paused:
    """Keep an interrupted SDK run's state in the Omium run and stop at the approval gate.

    Returns the pause when the gate at this position is decided already (a run passing it
    again); continue with :func:`resume_paused`.

    Raises:
        ApprovalRequired: no decision yet (the usual case: the run stops here).
    """
    context = current()
    pending = tuple(PendingCall.of(item) for item in result.interruptions)
    position, seq = context.next_position, context.next_checkpoint_seq
    gate = context.call_key_for(position)
    state = result.to_state().to_string()
    values = {"run_state": state, "gate": gate, "pending": [p.__dict__ for p in pending]}
    checkpoint = record_checkpoint(context, CHECKPOINT, position, values) or CheckpointRecord(
        context.run_id,
        seq,
        CHECKPOINT,
        position,
        "",  # a verification replay stores nothing
    )
    await _gate(context, pending)
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
    The Omium run continues at the positions after the gate, so what ran before is not repeated.

    Raises:
        ApprovalRequired: there is no decision yet (the run stays where it is).
    """
    context = current()
    context.next_position = paused.checkpoint.step_index
    context.next_checkpoint_seq = paused.checkpoint.seq + 1
    decision = await _gate(context, paused.pending)
    state: RunState[Any, Agent[Any]] = await RunState.from_string(agent, paused.state)
    for item in state.get_interruptions():
        if decision["decision"] == "approved":
            state.approve(item)
        else:
            state.reject(item, rejection_message=f"rejected by a reviewer: {decision.get('reason', '')}")
    options: dict[str, Any] = {"hooks": hooks, "run_config": run_config}
    if max_turns is not None:
        options["max_turns"] = max_turns
    return await Runner.run(agent, state, **options)


def _decide(
    run_id: str, approved: bool, reason: str, reviewer: str, store: CheckpointStore | None
) -> RunRecord:
    from omium.recovery import audit
    from omium.recovery.supervisor import AWAITING_ATTRIBUTE, INCIDENT_ATTRIBUTE

    store = store or default_store()
    run = store.get_run(run_id)
    paused = paused_at(store, run)
    if paused is None or _decision(run, paused.gate) is not None:
        raise ConflictError(f"run {run_id!r} is not waiting for a tool approval")
    attributes: dict[str, str] = {}
    if approved:
        approvals = json.loads(run.attributes.get(APPROVALS_ATTRIBUTE, "[]"))
        attributes[APPROVALS_ATTRIBUTE] = json.dumps([*approvals, paused.gate])
    else:
        rejections = json.loads(run.attributes.get(REJECTIONS_ATTRIBUTE, "{}"))
        attributes[REJECTIONS_ATTRIBUTE] = json.dumps({**rejections, paused.gate: reason})
    status = run.status
    if status == "paused":  # paused by the supervisor: ready to resume
        status = "queued"
        attributes[AWAITING_ATTRIBUTE] = ""
    updated = store.update_run(run_id, run.version, status=status, error=run.error, attributes=attributes)
    decision = "approve" if approved else "reject_tool_calls"
    audit.record(
        store,
        run_id,
        "reviewed",
        actor=reviewer,
        reason=reason or decision,
        after={"decision": decision, "gate": paused.gate, "calls": [p.__dict__ for p in paused.pending]},
        incident=run.attributes.get(INCIDENT_ATTRIBUTE, ""),
        decision=decision,
    )
    return updated


def approve(
    run_id: str, *, reviewer: str = "reviewer", reason: str = "", store: CheckpointStore | None = None
) -> RunRecord:
    """Approve the tool calls run ``run_id`` waits for; re-running it then executes them.

    Raises:
        ConflictError: the run is not waiting for a tool approval.
    """
    return _decide(run_id, True, reason, reviewer, store)


def reject(
    run_id: str, *, reason: str, reviewer: str = "reviewer", store: CheckpointStore | None = None
) -> RunRecord:
    """Reject the tool calls run ``run_id`` waits for: re-running it tells the model they were
    rejected (with ``reason``) and the agents carry on without them.

    Raises:
        ConflictError: the run is not waiting for a tool approval.
    """
    return _decide(run_id, False, reason, reviewer, store)


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
