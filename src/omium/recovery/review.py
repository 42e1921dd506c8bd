"""Human review of a paused run: approve, edit allowed fields, reject, and test a fix first.

Edits are agent configuration overrides (``terms_generator.prompt=...``) checked against the
policy the run was paused under: a forbidden field, or one the policy does not allow, is refused
with the reason. :func:`test_fix` executes the failed step alone, with the edit, in a scratch
copy of the run (nothing is committed); approving then lets :func:`omium.recovery.resume` retry
from the checkpoint with the edit.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from omium.errors import ConflictError, ControlSignal, EditRefused, NotFoundError
from omium.recovery import audit
from omium.recovery.policy import Policy
from omium.recovery.supervisor import (
    AWAITING_ATTRIBUTE,
    FAILURE_ATTRIBUTE,
    INCIDENT_ATTRIBUTE,
    POLICY_ATTRIBUTE,
    classify,
)
from omium.sdk import runs
from omium.sdk.context import StopReached, Supervision, supervision
from omium.sdk.guards import APPROVALS_ATTRIBUTE
from omium.sdk.store import (
    CheckpointRecord,
    CheckpointStore,
    CommandRecord,
    EventRecord,
    HandoffRecord,
    MemoryStore,
    RunRecord,
    StateVersion,
    StepRecord,
    layered,
)

DECISIONS = ("approve", "reject", "edit")
# Agent configuration fields and the policy's names for them.
POLICY_FIELD = {"prompt": "prompt", "constraints": "constraints", "tools": "tool_selection"}


def check_edits(policy: Policy, edits: dict[str, Any]) -> None:
    """Refuse an edit the policy does not allow (:class:`EditRefused`, naming the field and why)."""
    for key in edits:
        agent, dot, name = key.partition(".")
        if not dot or not agent or not name:
            raise EditRefused(f"edit {key!r} refused: an edit is AGENT.FIELD, e.g. terms_generator.prompt")
        policy_name = POLICY_FIELD.get(name, name)
        if name in policy.forbidden_edits or policy_name in policy.forbidden_edits:
            raise EditRefused(
                f"edit {key!r} refused: {name!r} is a forbidden edit under {policy.source} "
                f"(forbidden_edits: {', '.join(policy.forbidden_edits)})"
            )
        if policy_name not in policy.allowed_edits or name not in POLICY_FIELD:
            allowed = [f for f, p in POLICY_FIELD.items() if p in policy.allowed_edits]
            raise EditRefused(
                f"edit {key!r} refused: {name!r} is not an allowed edit under {policy.source} "
                f"(allowed: {', '.join(allowed) or 'none'})"
            )


def _paused_run(store: CheckpointStore, run_id: str) -> tuple[RunRecord, Policy]:
    run = store.get_run(run_id)
    if run.status != "paused" or not run.attributes.get(AWAITING_ATTRIBUTE):
        raise ConflictError(f"run {run_id!r} is {run.status}, not paused awaiting review")
    policy = Policy.from_json(run.attributes.get(POLICY_ATTRIBUTE, Policy().to_json()))
    return run, policy


def review(
    run_id: str,
    decision: str,
    *,
    edits: dict[str, Any] | None = None,
    reviewer: str = "reviewer",
    reason: str = "",
    store: CheckpointStore | None = None,
) -> RunRecord:
    """Decide on a paused run.

    ``approve`` (with optional ``edits``) makes it ready to resume (status ``queued``); ``edit``
    records edits and leaves it paused; ``reject`` ends it (status ``rejected``).

    Raises:
        NotFoundError: unknown run.
        ConflictError: the run is not paused awaiting review.
        EditRefused: an edit the policy does not allow (nothing is changed).
    """
    if decision not in DECISIONS:
        raise ValueError(f"a review decision is one of {', '.join(DECISIONS)}, not {decision!r}")
    store = store or runs.default_store()
    run, policy = _paused_run(store, run_id)
    incident = run.attributes.get(INCIDENT_ATTRIBUTE, "")
    edits = dict(edits or {})
    try:
        check_edits(policy, edits)
    except EditRefused as refused:
        audit.record(
            store, run_id, "edit_refused", actor=reviewer, reason=str(refused), after=edits, incident=incident
        )
        raise
    attributes: dict[str, str] = {}
    if edits:
        before = json.loads(run.attributes.get("overrides", "{}"))
        after = before | edits
        attributes["overrides"] = json.dumps(after)
        audit.record(
            store,
            run_id,
            "edited",
            actor=reviewer,
            reason=reason,
            before=before,
            after=after,
            incident=incident,
        )
    status = {"approve": "queued", "reject": "rejected", "edit": "paused"}[decision]
    if decision == "approve":
        attributes[AWAITING_ATTRIBUTE] = ""
        gate = json.loads(run.attributes.get(FAILURE_ATTRIBUTE, "{}")).get("evidence", {}).get("gate")
        if gate:  # approving a high-value operation lets that gate pass
            approvals = json.loads(run.attributes.get(APPROVALS_ATTRIBUTE, "[]"))
            attributes[APPROVALS_ATTRIBUTE] = json.dumps([*approvals, gate])
    if decision == "reject":
        attributes[AWAITING_ATTRIBUTE] = ""
    updated = store.update_run(run_id, run.version, status=status, error=run.error, attributes=attributes)
    audit.record(
        store,
        run_id,
        "reviewed",
        actor=reviewer,
        reason=reason or decision,
        after={"decision": decision},
        incident=incident,
        decision=decision,
    )
    return updated


@dataclass(frozen=True)
class TestFixResult:
    """What a test fix showed: whether the failed step now passes, and if not, why."""

    passed: bool
    position: int
    message: str = ""
    trigger: str = ""


class ScratchStore(MemoryStore):
    """A copy-on-write view of a store: reads fall through, writes stay here and are dropped."""

    def __init__(self, base: CheckpointStore) -> None:
        super().__init__()
        self._base = base

    def get_blob(self, digest: str) -> bytes:
        return self._blobs[digest] if digest in self._blobs else self._base.get_blob(digest)

    def get_run(self, run_id: str) -> RunRecord:
        return self._runs[run_id] if run_id in self._runs else self._base.get_run(run_id)

    def steps(self, run_id: str) -> list[StepRecord]:
        return layered(self._base.steps(run_id), super().steps(run_id), lambda s: s.position)

    def checkpoints(self, run_id: str) -> list[CheckpointRecord]:
        return layered(self._base.checkpoints(run_id), super().checkpoints(run_id), lambda c: c.seq)

    def handoffs(self, run_id: str, channel: str) -> list[HandoffRecord]:
        return layered(
            self._base.handoffs(run_id, channel), super().handoffs(run_id, channel), lambda m: m.seq
        )

    def read_state(self, namespace: str, key: str) -> StateVersion | None:
        return super().read_state(namespace, key) or self._base.read_state(namespace, key)

    def events(self, run_id: str = "", limit: int = 10_000) -> list[EventRecord]:
        return []

    def commands(self, run_id: str = "", status: str = "") -> list[CommandRecord]:
        return []


def test_fix(
    run_id: str,
    edits: dict[str, Any] | None = None,
    *,
    store: CheckpointStore | None = None,
    workflows: dict[str, Callable[..., Any]] | None = None,
    reviewer: str = "reviewer",
) -> TestFixResult:
    """Execute the failed step of a paused run alone, with ``edits``, committing nothing.

    The run is resumed in a scratch copy from its rollback checkpoint and stopped as soon as the
    call that failed has passed. The outcome is an audit event of the real run.
    """
    store = store or runs.default_store()
    run, policy = _paused_run(store, run_id)
    edits = dict(edits or {})
    check_edits(policy, edits)
    failure = json.loads(run.attributes.get(FAILURE_ATTRIBUTE, "{}"))
    position = int(failure.get("position", -1))
    fn = (workflows if workflows is not None else runs.registered_workflows()).get(run.workflow)
    if fn is None:
        raise NotFoundError(f"workflow {run.workflow!r} is not defined here: import its module first")
    scratch = ScratchStore(store)
    overrides = json.loads(run.attributes.get("overrides", "{}")) | edits
    scratch._runs[run_id] = RunRecord(  # the scratch run: running, with the edit, no review pending
        **{
            **run.__dict__,
            "status": "running",
            "attributes": {**run.attributes, "overrides": json.dumps(overrides)},
        }
    )
    inputs = runs.recorded_inputs(store, run) or ([], {})
    token = supervision.set(Supervision(policy, (), stop_after=position if position >= 0 else None))
    result: TestFixResult
    try:
        runs.run(fn, *inputs[0], run_id=run_id, store=scratch, **inputs[1])
        result = TestFixResult(True, position, "the run completed")
    except StopReached:
        result = TestFixResult(True, position, f"position {position} passed")
    except (Exception, ControlSignal) as error:
        found = classify(error, scratch, run_id)
        result = TestFixResult(False, found.position, found.message, found.trigger)
    finally:
        supervision.reset(token)
    audit.record(
        store,
        run_id,
        "test_fix",
        actor=reviewer,
        reason=result.message,
        after={"passed": result.passed, "edits": edits},
        incident=run.attributes.get(INCIDENT_ATTRIBUTE, ""),
        passed=result.passed,
    )
    return result


__all__ = ["DECISIONS", "ScratchStore", "TestFixResult", "check_edits", "review", "test_fix"]

# Not tests, whatever pytest thinks of their names.
test_fix.__test__ = False  # type: ignore[attr-defined]
TestFixResult.__test__ = False  # type: ignore[attr-defined]
