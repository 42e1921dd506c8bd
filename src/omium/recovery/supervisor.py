"""Running a workflow under its recovery policy.

:func:`supervise` runs (or resumes) a run. When it fails, the failure is classified into a policy
trigger at the step where it happened and recorded; then, as the policy says:

1. roll the run back to its last checkpoint before the failure (the minimal window: everything
   before that checkpoint, in every agent, stays recorded and is not executed again, and nothing an
   aborted transaction did was ever committed);
2. retry with exponential backoff and jitter while the retry condition holds (every attempt is
   an audit event);
3. otherwise pause the run (it holds no process), notify the webhooks, and wait for a review.

A high-value operation pauses for approval before it runs. Failures the policy does not name
fail the run as usual.
"""

from __future__ import annotations

import json
import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from omium.config import Settings
from omium.errors import (
    DETECTIONS,
    ConflictError,
    ControlSignal,
    FencedOut,
    HandoffRejected,
    HandoffStale,
    NotFoundError,
    RunBusy,
    ServerUnavailable,
)
from omium.recovery import audit, notify
from omium.recovery.policy import Policy
from omium.sdk import runs
from omium.sdk.context import Supervision, step_generation, supervision
from omium.sdk.stop import PAUSED_BY, RunStopped
from omium.sdk.store import CheckpointStore, RunRecord

POLICY_ATTRIBUTE = "policy"
AWAITING_ATTRIBUTE = "awaiting"
INCIDENT_ATTRIBUTE = "incident"
FAILURE_ATTRIBUTE = "failure"


@dataclass(frozen=True)
class Failure:
    """A classified failure: the policy trigger, where it happened and the evidence."""

    trigger: str
    error_type: str
    message: str
    position: int = -1
    step: str = ""
    agent: str = ""
    check: str = ""
    evidence: dict[str, Any] = field(default_factory=dict)

    @property
    def signature(self) -> str:
        """What makes two detections "the same failure": trigger, agent and check or step."""
        return f"{self.trigger}|{self.agent}|{self.check or self.step}"

    def to_json(self) -> str:
        """JSON, kept on a paused run."""
        return json.dumps(self.__dict__, sort_keys=True, default=str)


@dataclass
class Outcome:
    """How a supervised execution ended."""

    run_id: str
    status: str  # completed | paused | failed | cancelled
    result: Any = None
    failure: Failure | None = None
    incident: str = ""
    retries: int = 0
    rollbacks: int = 0
    checkpoint: str = ""
    detected_at: float = 0.0  # monotonic seconds, for recovery-time figures
    settled_at: float = 0.0


def classify(error: BaseException, store: CheckpointStore, run_id: str) -> Failure:
    """The policy trigger a failure falls under, and where it happened."""
    if isinstance(error, DETECTIONS):
        trigger, check, evidence = error.trigger, error.check, dict(error.evidence)
    elif isinstance(error, HandoffStale):
        trigger, check, evidence = "stale_handoff", "", {"reason": error.reason}
    elif isinstance(error, HandoffRejected):
        trigger, check, evidence = "handoff_rejected", "", {"reason": error.reason}
    elif isinstance(error, AssertionError):
        trigger, check, evidence = "policy_violation", "assertion", {}
    else:
        trigger, check, evidence = "exception", "", {}
    position, step, agent = (
        int(getattr(error, "omium_position", -1)),
        "",
        str(getattr(error, "omium_agent", "")),
    )
    failed = [s for s in store.steps(run_id) if s.status == "failed"]
    if failed:
        # The latest failure by generation and position, never by clocks of different processes.
        latest = max(failed, key=lambda s: (step_generation(s), s.position, s.attempt))
        position, step, agent = latest.position, latest.name, latest.agent or agent
    if isinstance(error, HandoffStale) and error.send_position >= 0:
        # The stale part is the message: the rollback must reach back before it was sent.
        evidence["received_at"] = position
        position = error.send_position
    return Failure(
        trigger=trigger,
        error_type=type(error).__name__,
        message=str(error) or type(error).__name__,
        position=position,
        step=step,
        agent=agent,
        check=check,
        evidence=evidence,
    )


def _policy_of(fn: Callable[..., Any], policy: Policy | str | None) -> Policy:
    chosen = policy
    if chosen is None:
        definition = getattr(fn, "__omium_run__", None)
        chosen = definition.policy if definition is not None else None
    if chosen is None:
        return Policy()
    return chosen if isinstance(chosen, Policy) else Policy.load(chosen)


def last_checkpoint_before(store: CheckpointStore, run: RunRecord, position: int) -> str:
    """The name of the run's latest live checkpoint at or before ``position`` ('' if none)."""
    live = runs.live_checkpoints(store, run)
    if position >= 0:
        live = [c for c in live if c.step_index <= position]
    return live[-1].name if live else ""


def supervise(
    fn: Callable[..., Any],
    *args: Any,
    run_id: str | None = None,
    policy: Policy | str | None = None,
    store: CheckpointStore | None = None,
    detectors: tuple[Any, ...] = (),
    actor: str = "omium",
    sleep: Callable[[float], None] = time.sleep,
    rng: random.Random | None = None,
    console_url: str | None = None,
    lease_seconds: float | None = None,
    wait: bool | float = False,
    **kwargs: Any,
) -> Outcome:
    """Run ``fn`` (or resume run ``run_id``) under ``policy`` (default: the workflow's own).

    ``lease_seconds`` and ``wait`` are the run lease's (see :func:`omium.sdk.runs.run`).

    Raises:
        ConflictError: the run is paused awaiting a review; review it first.
    """
    store = store or runs.default_store()
    chosen = _policy_of(fn, policy)
    run_id = run_id or uuid.uuid4().hex
    rng = rng or random.Random()
    check_not_awaiting(store, run_id)
    seen: list[str] = []
    outcome = Outcome(run_id, "running")
    while True:
        token = supervision.set(Supervision(chosen, tuple(detectors), lease_seconds=lease_seconds, wait=wait))
        try:
            outcome.result = runs.run(fn, *args, run_id=run_id, store=store, **kwargs)
        except (RunBusy, FencedOut, ServerUnavailable):
            # The run is another execution's, or the store is out of reach (not the run's failure):
            # nothing here to recover, and no status to write.
            raise
        except RunStopped as stopped:
            # An operator paused or cancelled it: the execution stored that and ended; not a failure.
            outcome.status, outcome.settled_at = stopped.status, time.monotonic()
            return outcome
        except (Exception, ControlSignal) as error:
            failure = classify(error, store, run_id)
        else:
            if outcome.incident:
                audit.record(store, run_id, "completed", actor=actor, incident=outcome.incident)
            outcome.status, outcome.settled_at = "completed", time.monotonic()
            return outcome
        finally:
            supervision.reset(token)
        outcome.failure = failure
        if not outcome.incident:
            outcome.incident, outcome.detected_at = uuid.uuid4().hex[:12], time.monotonic()
        incident = outcome.incident
        audit.record(
            store,
            run_id,
            "detected",
            actor=actor,
            reason=failure.message,
            after=failure.evidence,
            incident=incident,
            trigger=failure.trigger,
            error_type=failure.error_type,
            position=failure.position,
            step=failure.step,
            agent=failure.agent,
        )
        if not chosen.triggered_by(failure.trigger, failure.error_type):
            audit.record(
                store,
                run_id,
                "failed",
                actor=actor,
                reason="the policy names no action for this failure",
                incident=incident,
            )
            outcome.status, outcome.settled_at = "failed", time.monotonic()
            return outcome
        if failure.trigger == "high_value_operation":  # nothing ran yet: wait for approval
            return _pause(store, outcome, chosen, failure, actor, "approval", console_url)
        if chosen.rollback_to_last_checkpoint:
            _roll_back(store, outcome, failure, actor)
        retry = chosen.retry
        allowed = {
            "always": True,
            "never": False,
            "same_failure_not_detected_twice": failure.signature not in seen,
        }[retry.condition]
        seen.append(failure.signature)
        if allowed and outcome.retries < retry.max_retries:
            outcome.retries += 1
            delay = retry.delay(outcome.retries, rng.random())
            audit.record(
                store,
                run_id,
                "retried",
                actor=actor,
                reason=f"attempt {outcome.retries + 1} after {delay:.2f}s",
                incident=incident,
                attempt=outcome.retries + 1,
                delay=round(delay, 3),
            )
            sleep(delay)
            continue
        if chosen.pause_and_notify or chosen.await_human_review:
            awaiting = "review" if chosen.await_human_review else ""
            return _pause(store, outcome, chosen, failure, actor, awaiting, console_url)
        audit.record(store, run_id, "failed", actor=actor, reason="retries exhausted", incident=incident)
        outcome.status, outcome.settled_at = "failed", time.monotonic()
        return outcome


def check_not_awaiting(store: CheckpointStore, run_id: str) -> None:
    """:class:`ConflictError` if ``run_id`` is paused awaiting a review or an operator's resume, or
    was cancelled (an unknown run passes)."""
    try:
        run = store.get_run(run_id)
    except NotFoundError:
        return
    if run.status == "cancelled":
        raise ConflictError(f"run {run_id!r} was cancelled: a cancelled run is never resumed")
    if run.status == "paused" and run.attributes.get(PAUSED_BY):
        raise ConflictError(
            f"run {run_id!r} was paused by {run.attributes[PAUSED_BY]}: resume it first "
            f"(omium runs resume {run_id}, or Resume in the console)"
        )
    if run.status == "paused" and run.attributes.get(AWAITING_ATTRIBUTE):
        raise ConflictError(
            f"run {run_id!r} is paused awaiting {run.attributes[AWAITING_ATTRIBUTE]}: "
            f"review it first (omium review {run_id} --approve | --reject | --edit AGENT.prompt=...)"
        )


def _roll_back(store: CheckpointStore, outcome: Outcome, failure: Failure, actor: str) -> None:
    run = store.get_run(outcome.run_id)
    checkpoint = last_checkpoint_before(store, run, failure.position)
    if not checkpoint:
        return
    target = [c for c in runs.live_checkpoints(store, run) if c.name == checkpoint][-1]
    undone = [s for s in store.steps(outcome.run_id) if s.position >= target.step_index]
    runs.rollback(outcome.run_id, checkpoint, store=store)
    outcome.rollbacks += 1
    outcome.checkpoint = checkpoint
    audit.record(
        store,
        outcome.run_id,
        "rolled_back",
        actor=actor,
        reason=f"{failure.trigger} at position {failure.position}",
        before={"position": failure.position, "step": failure.step},
        after={"checkpoint": checkpoint, "position": target.step_index},
        incident=outcome.incident,
        checkpoint=checkpoint,
        steps_undone=len(undone),
        agents=",".join(sorted({s.agent for s in undone if s.agent})),
    )


def pause_run(
    store: CheckpointStore,
    run_id: str,
    failure: Failure,
    *,
    awaiting: str,
    incident: str,
    actor: str = "omium",
    policy: Policy | None = None,
) -> RunRecord:
    """Store run ``run_id`` as paused, awaiting ``awaiting`` (``review``, ``approval``, ...) on
    ``failure``, and audit it: the one way a run is paused, by the supervisor or an adapter's gate.
    A paused run holds no process; :func:`omium.recovery.review.review` decides it."""
    run = store.get_run(run_id)
    attributes = {
        AWAITING_ATTRIBUTE: awaiting,
        INCIDENT_ATTRIBUTE: incident,
        FAILURE_ATTRIBUTE: failure.to_json(),
        PAUSED_BY: "",  # paused by the supervisor, not by an operator (whatever an earlier pause was)
    }
    if policy is not None:
        attributes[POLICY_ATTRIBUTE] = policy.to_json()
    paused = store.update_run(run_id, run.version, status="paused", error=run.error, attributes=attributes)
    audit.record(
        store,
        run_id,
        "paused",
        actor=actor,
        reason=failure.message or f"awaiting {awaiting or 'a person'}",
        after=failure.evidence,
        incident=incident,
        awaiting=awaiting,
        trigger=failure.trigger,
        agent=failure.agent,
        position=failure.position,
    )
    return paused


def _pause(
    store: CheckpointStore,
    outcome: Outcome,
    policy: Policy,
    failure: Failure,
    actor: str,
    awaiting: str,
    console_url: str | None,
) -> Outcome:
    run = pause_run(
        store,
        outcome.run_id,
        failure,
        awaiting=awaiting,
        incident=outcome.incident,
        actor=actor,
        policy=policy,
    )
    outcome.status, outcome.settled_at = "paused", time.monotonic()
    urls = notify.webhook_urls(policy.webhooks)
    if policy.pause_and_notify and urls:
        settings = Settings.from_env()
        note = notify.Notification(
            run_id=outcome.run_id,
            workflow=run.workflow,
            trigger=failure.trigger,
            failure=failure.message,
            evidence=failure.evidence,
            checkpoint=outcome.checkpoint,
            console_url=console_url or f"http://{settings.host}:{settings.console_port}",
        )
        delivered = [url for url in urls if notify.send(url, note)]
        audit.record(
            store,
            outcome.run_id,
            "notified",
            actor=actor,
            reason=f"{len(delivered)}/{len(urls)} webhooks",
            after={"delivered": delivered},
            incident=outcome.incident,
        )
    return outcome


def _resumed_already(store: CheckpointStore, run_id: str) -> bool:
    """Whether the run's latest audit event is its resume (an operator's, queued to this worker)."""
    events = store.events(run_id)
    return bool(events) and events[-1].kind == "resumed"


def resume(
    run_id: str,
    *,
    store: CheckpointStore | None = None,
    workflows: dict[str, Callable[..., Any]] | None = None,
    actor: str = "omium",
    sleep: Callable[[float], None] = time.sleep,
    detectors: tuple[Any, ...] = (),
    lease_seconds: float | None = None,
    wait: bool | float = False,
) -> Outcome:
    """Resume a run under the policy it was paused with (or its workflow's), with its recorded
    inputs; the workflow must be defined in this process (imported) or given in ``workflows``.

    Raises:
        NotFoundError: unknown run, or its workflow is not known here.
        ConflictError: the run awaits a review.
    """
    store = store or runs.default_store()
    run = store.get_run(run_id)
    fn = (workflows if workflows is not None else runs.registered_workflows()).get(run.workflow)
    if fn is None:
        raise NotFoundError(
            f"workflow {run.workflow!r} of run {run_id!r} is not defined here: import its module "
            "(omium worker MODULE) first"
        )
    inputs = runs.recorded_inputs(store, run) or ([], {})
    policy: Policy | None = (
        Policy.from_json(run.attributes[POLICY_ATTRIBUTE]) if POLICY_ATTRIBUTE in run.attributes else None
    )
    incident = run.attributes.get(INCIDENT_ATTRIBUTE, "")
    if incident and run.status in ("paused", "queued") and not _resumed_already(store, run_id):
        audit.record(store, run_id, "resumed", actor=actor, incident=incident)
    outcome = supervise(
        fn,
        *inputs[0],
        run_id=run_id,
        policy=policy,
        store=store,
        actor=actor,
        sleep=sleep,
        detectors=detectors,
        lease_seconds=lease_seconds,
        wait=wait,
        **inputs[1],
    )
    if incident and outcome.status == "completed" and not outcome.incident:
        audit.record(store, run_id, "completed", actor=actor, incident=incident)
    return outcome


__all__ = [
    "Failure",
    "Outcome",
    "check_not_awaiting",
    "classify",
    "last_checkpoint_before",
    "pause_run",
    "resume",
    "supervise",
]
