"""Human review: the one place a decision on a run is recorded, and where fixes are tested first.

A run waits for a reviewer in one of two ways (:func:`awaiting`):

* **paused awaiting review** — the recovery supervisor paused it under its policy (a failure the
  policy sends to review, a high-value operation), or an adapter paused it at a review gate
  (:func:`pause_for_review`, what AG2 and CrewAI gates use);
* **stopped at a gate** — an approval gate (a recorded call of kind ``gate``, keyed by its
  idempotency key) raised :class:`~omium.errors.ApprovalRequired` in an unsupervised run, which
  then failed there.

:func:`review` records the decision on either — for the SDK, ``omium review``, the server's
control API and every adapter (the Agents SDK adapter's ``approve``/``reject`` call it):

* ``approve`` (with optional ``edits``): the gate's key joins the run's approvals and the run is
  ready to resume (status ``queued``); a gate passed again lets the run through;
* ``edit``: edits recorded, the run keeps waiting;
* ``reject`` (with a reason): the gate's key and the reason join the run's rejections. A gate that
  can take a rejection as an answer — it says ``on_reject: carry_on`` in what it asks (its
  recorded inputs, its ``ApprovalRequired`` evidence), as the Agents SDK's tool approvals do: the
  model is told and carries on — leaves the run ready to resume; otherwise the run ends (status
  ``rejected``).

Each decision is a ``reviewed`` audit event. Gates read the decision with :func:`gate_decision`.

Edits are agent configuration overrides (``terms_generator.prompt=...``) checked against the
policy the run was paused under: a forbidden field, or one the policy does not allow, is refused
with the reason. :func:`test_fix` executes the failed step alone, with the edit, in a scratch
copy of the run (nothing is committed); approving then lets :func:`omium.recovery.resume` retry
from the checkpoint with the edit.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from omium.errors import ConflictError, ControlSignal, EditRefused, NotFoundError, SerializationError
from omium.recovery import audit
from omium.recovery.policy import Policy
from omium.recovery.supervisor import (
    AWAITING_ATTRIBUTE,
    FAILURE_ATTRIBUTE,
    INCIDENT_ATTRIBUTE,
    POLICY_ATTRIBUTE,
    Failure,
    classify,
    pause_run,
)
from omium.sdk import runs, serde
from omium.sdk.context import StopReached, Supervision, supervision
from omium.sdk.guards import APPROVALS_ATTRIBUTE, REJECTIONS_ATTRIBUTE, Decision, gate_decision
from omium.sdk.store import (
    CheckpointStore,
    RunRecord,
    StepRecord,
)

DECISIONS = ("approve", "reject", "edit")
# Agent configuration fields and the policy's names for them.
POLICY_FIELD = {"prompt": "prompt", "constraints": "constraints", "tools": "tool_selection"}
ON_REJECT = "on_reject"  # what a gate asks: CARRY_ON when a rejection is an answer it goes on with
CARRY_ON = "carry_on"


@dataclass(frozen=True)
class Awaiting:
    """What a run waits for a reviewer on.

    Attributes:
        run: the run as it is now.
        gate: the key of the gate a decision lets through ('' for a pause without one).
        carries_on: a rejection is an answer the run goes on with (else it ends the run).
        paused: paused awaiting review (else stopped at the gate in an unsupervised run).
    """

    run: RunRecord
    gate: str = ""
    carries_on: bool = False
    paused: bool = True


def _carries_on(asked: Any) -> bool:
    return isinstance(asked, Mapping) and asked.get(ON_REJECT) == CARRY_ON


def _failed_gate(store: CheckpointStore, run: RunRecord) -> StepRecord | None:
    """The run's latest failed call, if it is an approval gate."""
    failed = [s for s in store.steps(run.run_id) if s.status == "failed"]
    latest = max(failed, key=lambda s: s.ended_at) if failed else None
    return latest if latest is not None and latest.kind == "gate" else None


def _asked(store: CheckpointStore, gate: StepRecord | None) -> Any:
    """What a gate asked (its recorded inputs), or None."""
    if gate is None or not gate.input_hash:
        return None
    try:
        return serde.loads(store.get_blob(gate.input_hash))
    except (NotFoundError, SerializationError):
        return None


def awaiting(store: CheckpointStore, run_id: str) -> Awaiting | None:
    """What run ``run_id`` waits for a reviewer on, or None if it waits for none.

    The gate is the one the pause names (its evidence ``gate``), else the approval gate the run
    failed at; a rejection carries on if the evidence or what the gate asked says so.

    Raises:
        NotFoundError: unknown run.
    """
    run = store.get_run(run_id)
    step = _failed_gate(store, run)
    if run.status == "paused" and run.attributes.get(AWAITING_ATTRIBUTE):
        evidence = json.loads(run.attributes.get(FAILURE_ATTRIBUTE, "{}")).get("evidence", {})
        gate = str(evidence.get("gate") or (step.idempotency_key if step is not None else ""))
        asked = _asked(store, step) if step is not None and step.idempotency_key == gate else None
        return Awaiting(run, gate, _carries_on(evidence) or _carries_on(asked))
    # Unsupervised: the run failed at a gate nobody has decided on yet.
    if run.status != "failed" or not run.error.startswith("ApprovalRequired") or step is None:
        return None
    if gate_decision(run, step.idempotency_key) is not None:
        return None
    return Awaiting(run, step.idempotency_key, _carries_on(_asked(store, step)), paused=False)


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


def _policy(run: RunRecord) -> Policy:
    return Policy.from_json(run.attributes.get(POLICY_ATTRIBUTE, Policy().to_json()))


def _paused_run(store: CheckpointStore, run_id: str) -> tuple[RunRecord, Policy]:
    run = store.get_run(run_id)
    if run.status != "paused" or not run.attributes.get(AWAITING_ATTRIBUTE):
        raise ConflictError(f"run {run_id!r} is {run.status}, not paused awaiting review")
    return run, _policy(run)


def review(
    run_id: str,
    decision: str,
    *,
    edits: dict[str, Any] | None = None,
    reviewer: str = "reviewer",
    reason: str = "",
    gate: str = "",
    store: CheckpointStore | None = None,
) -> RunRecord:
    """Record a reviewer's decision on run ``run_id``, which waits for one (see :func:`awaiting`).

    ``approve`` (with optional ``edits``) makes it ready to resume (status ``queued``); ``edit``
    records edits and leaves it waiting; ``reject`` records the rejection with ``reason`` and ends
    the run (status ``rejected``), or, at a gate that carries on after a rejection, makes it ready
    to resume. ``gate``: decide only if the run waits at this gate (an adapter deciding what it
    showed the reviewer). Returns the run as updated: callers queue a ``queued`` run to resume.

    Raises:
        NotFoundError: unknown run.
        ConflictError: the run waits for no review (or at another gate than ``gate``).
        EditRefused: an edit the policy does not allow (nothing is changed).
    """
    if decision not in DECISIONS:
        raise ValueError(f"a review decision is one of {', '.join(DECISIONS)}, not {decision!r}")
    store = store or runs.default_store()
    waiting = awaiting(store, run_id)
    if waiting is None:
        status = store.get_run(run_id).status
        raise ConflictError(f"run {run_id!r} is {status}, not paused awaiting review nor stopped at a gate")
    if gate and waiting.gate != gate:
        raise ConflictError(f"run {run_id!r} waits at gate {waiting.gate!r}, not {gate!r}")
    run = waiting.run
    incident = run.attributes.get(INCIDENT_ATTRIBUTE, "")
    edits = dict(edits or {})
    try:
        check_edits(_policy(run), edits)
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
    status = run.status
    if decision == "approve":
        status = "queued"
        if waiting.gate:  # the gate passes when the run reaches it again
            approvals = json.loads(run.attributes.get(APPROVALS_ATTRIBUTE, "[]"))
            attributes[APPROVALS_ATTRIBUTE] = json.dumps([*approvals, waiting.gate])
    elif decision == "reject":
        status = "queued" if waiting.carries_on else "rejected"
        if waiting.gate:
            rejections = json.loads(run.attributes.get(REJECTIONS_ATTRIBUTE, "{}"))
            attributes[REJECTIONS_ATTRIBUTE] = json.dumps({**rejections, waiting.gate: reason})
    if decision != "edit" and waiting.paused:
        attributes[AWAITING_ATTRIBUTE] = ""
    updated = store.update_run(run_id, run.version, status=status, error=run.error, attributes=attributes)
    outcome = {"decision": decision, "gate": waiting.gate, "status": status}
    audit.record(
        store,
        run_id,
        "reviewed",
        actor=reviewer,
        reason=reason or decision,
        after=outcome,
        incident=incident,
        decision=decision,
        edits=json.dumps(edits, sort_keys=True),
    )
    return updated


def pause_for_review(store: CheckpointStore, run_id: str, failure: Failure) -> str:
    """Store run ``run_id`` as paused awaiting review of ``failure`` (a gate's key in its evidence
    ``gate``); returns the new incident's id. :func:`review` decides it."""
    incident = uuid.uuid4().hex[:12]
    pause_run(store, run_id, failure, awaiting="review", incident=incident)
    return incident


@dataclass(frozen=True)
class TestFixResult:
    """What a test fix showed: whether the failed step now passes, and if not, why."""

    passed: bool
    position: int
    message: str = ""
    trigger: str = ""


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
    from omium.sdk.sql.memory import ScratchStore

    scratch = ScratchStore(store)
    overrides = json.loads(run.attributes.get("overrides", "{}")) | edits
    scratch.create_run(  # the scratch run: running, with the edit, no review pending
        RunRecord(
            **{
                **run.__dict__,
                "status": "running",
                "attributes": {**run.attributes, "overrides": json.dumps(overrides)},
            }
        )
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
        scratch.close()
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


__all__ = [
    "CARRY_ON",
    "DECISIONS",
    "ON_REJECT",
    "REJECTIONS_ATTRIBUTE",
    "Awaiting",
    "Decision",
    "TestFixResult",
    "awaiting",
    "check_edits",
    "gate_decision",
    "pause_for_review",
    "review",
    "test_fix",
]

# Not tests, whatever pytest thinks of their names.
test_fix.__test__ = False  # type: ignore[attr-defined]
TestFixResult.__test__ = False  # type: ignore[attr-defined]
