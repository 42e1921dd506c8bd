"""Counterfactual verification: is this step really the root cause of the run's failure?

For a failed run (or one paused after a failure), each candidate step in turn is put to the test
the way :func:`omium.recovery.review.test_fix` tests a fix, in a scratch copy of the store that is
dropped afterwards (:class:`~omium.sdk.sql.memory.ScratchStore`: what re-executed tools write,
recorded calls, shared state, hand-offs, stays there):

1. a checkpoint is marked right before the candidate (its call id) and the run is forked there
   (:func:`omium.sdk.branching.fork`): the fork keeps every recorded call before it;
2. the fix under test is applied: by default the candidate's recorded result is dropped and the
   call draws a fresh sample (:func:`omium.sdk.sampling.resampling`; every other call draws as
   it did), or an operator's ``edits`` (``AGENT.prompt=...``) are the fork's overrides;
3. the fork is re-executed from there under the run's policy; the candidate is **verified** when
   the run now completes, **not verified** when it fails again (the evidence says whether with the
   same failure), **inconclusive** when the budget ran out or the re-execution could not run.

Candidates are given as step positions, or taken from the run's runtime chain
(:func:`chain_candidates`: the culprit :func:`omium.models.culprit.trace` names, then earlier
calls walking back). They are tried in order, stopping at the first verified one or when the
budget (:class:`Budget`: forks, re-executed calls) is spent. The original run is never written.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from omium.errors import ConfigError, ConflictError, ControlSignal, NonDeterminismError, NotFoundError
from omium.models import culprit
from omium.recovery import audit
from omium.recovery.policy import Policy
from omium.recovery.supervisor import FAILURE_ATTRIBUTE, POLICY_ATTRIBUTE, classify
from omium.sdk import runs
from omium.sdk.branching import fork
from omium.sdk.context import StopReached, Supervision, step_call_id, step_generation, supervision
from omium.sdk.sampling import resampling
from omium.sdk.store import CheckpointRecord, CheckpointStore, RunRecord, StepRecord

OUTCOMES = ("verified", "not_verified", "inconclusive")
# Runs that ended in (or wait after) a failure; a paused or rejected one says which in its record.
FAILED_STATUSES = ("failed", "paused", "rejected")
# Calls that produce data a fix can change: a model call, a tool call, a step.
CANDIDATE_KINDS = culprit.CALL_KINDS


@dataclass(frozen=True)
class Budget:
    """What one verification may spend: forks, and calls re-executed across all of them."""

    max_forks: int = 3
    max_calls: int = 500

    def __post_init__(self) -> None:
        if self.max_forks < 0 or self.max_calls < 0:
            raise ValueError("a verification budget is never negative")


@dataclass(frozen=True)
class Verification:
    """The verdict on one candidate step.

    Attributes:
        step: the candidate's position in the run.
        agent: the agent that made the call.
        outcome: ``verified`` (the fixed re-run completed), ``not_verified`` (it failed again) or
            ``inconclusive`` (budget spent, or the re-run could not be made).
        forks: forks made for this candidate.
        calls: calls re-executed for it.
        evidence: which checkpoint, what was changed, how the re-run ended.
        seconds: wall time spent on it.
    """

    step: int
    agent: str
    outcome: str
    forks: int = 0
    calls: int = 0
    evidence: tuple[str, ...] = ()
    seconds: float = 0.0

    @property
    def verified(self) -> bool:
        """Whether the failure no longer occurred with the fix."""
        return self.outcome == "verified"


def failure_of(store: CheckpointStore, run: RunRecord) -> dict[str, Any]:
    """The failure of a failed (or paused-after-failure) run, as the supervisor records one.

    Raises:
        ConflictError: the run did not fail.
    """
    recorded = run.attributes.get(FAILURE_ATTRIBUTE, "")
    # A run that completed (or runs again) after its failure has a recording that moved on.
    if run.status not in FAILED_STATUSES or (run.status != "failed" and not recorded):
        raise ConflictError(
            f"run {run.run_id!r} is {run.status}: only a failed run (or one paused after a failure) "
            "has a root cause to verify"
        )
    if run.status != "failed":  # paused or rejected: the failure it waits on, as recorded
        return dict(json.loads(recorded))
    # Failed: its latest failed call (a record left by an earlier pause may be out of date).
    failed = [s for s in store.steps(run.run_id) if s.status == "failed"]
    error_type, _, message = run.error.partition(": ")
    if not failed:
        return {
            "position": -1,
            "trigger": "exception",
            "agent": "",
            "error_type": error_type,
            "message": message,
        }
    latest = max(failed, key=lambda s: (step_generation(s), s.position, s.attempt))
    return {
        "position": latest.position,
        "trigger": "stale_handoff" if error_type == "HandoffStale" else "exception",
        "agent": latest.agent,
        "step": latest.name,
        "error_type": error_type,
        "message": message,
    }


def _signature(failure: dict[str, Any]) -> tuple[str, str, str]:
    """What makes a re-run's failure "the same": its type, agent and step."""
    return (str(failure.get("error_type", "")), str(failure.get("agent", "")), str(failure.get("step", "")))


def _completed(store: CheckpointStore, run_id: str) -> dict[int, StepRecord]:
    view = runs.RollbackView.of(store.get_run(run_id))
    return {s.position: s for s in store.steps(run_id) if s.status == "completed" and view.live_step(s)}


def chain_candidates(store: CheckpointStore, run_id: str) -> list[int]:
    """Candidate positions from the runtime chain: the culprit the chain names, the hand-off its
    input came by, then every earlier model, tool or step call, latest first."""
    run = store.get_run(run_id)
    failure = failure_of(store, run)
    steps = store.steps(run_id)
    found = culprit.trace(failure, steps)
    done = _completed(store, run_id)
    limit = found.position if found.position >= 0 else max(done, default=-1) + 1
    ordered = [found.culprit]
    if found.receive is not None:
        ordered.append(found.receive.position)
    ordered += sorted((p for p, s in done.items() if p < limit and s.kind in CANDIDATE_KINDS), reverse=True)
    return [p for p in dict.fromkeys(ordered) if p in done]


def _workflow(run: RunRecord, workflows: dict[str, Callable[..., Any]] | None) -> Callable[..., Any]:
    fn = (workflows if workflows is not None else runs.registered_workflows()).get(run.workflow)
    if fn is None:
        raise NotFoundError(f"workflow {run.workflow!r} is not defined here: import its module first")
    return fn


@dataclass
class _Spent:
    forks: int = 0
    calls: int = 0


@dataclass
class _Trial:
    """One fork's re-execution, as :func:`verify` runs it."""

    store: CheckpointStore
    run: RunRecord
    fn: Callable[..., Any]
    inputs: tuple[list[Any], dict[str, Any]]
    failure: dict[str, Any]
    policy: Policy
    detectors: tuple[Any, ...]
    edits: dict[str, Any] = field(default_factory=dict)

    def attempt(self, step: StepRecord, sample: int, calls_left: int) -> tuple[str, int, list[str]]:
        """Fork before ``step``, apply the fix, re-execute: (outcome, calls re-executed, evidence)."""
        from omium.sdk.sql.memory import ScratchStore

        run_id, call_id = self.run.run_id, step_call_id(step)
        scratch = ScratchStore(self.store)
        fork_id = f"{run_id}~cf-{uuid.uuid4().hex[:8]}"
        mark = f"counterfactual@{call_id}"
        try:
            seq = max((c.seq for c in self.store.checkpoints(run_id)), default=-1) + 1
            generation = runs.RollbackView.of(self.run).generation
            scratch.add_checkpoint(
                CheckpointRecord(run_id, seq, mark, step.position, "", call_id=call_id, generation=generation)
            )
            fork(run_id, mark, overrides=self.edits, new_run_id=fork_id, store=scratch)
            kept = {step_call_id(s) for s in scratch.steps(fork_id)}
            start = max((s.position for s in scratch.steps(fork_id)), default=-1) + 1
            before = f"before {step.kind} {step.name}"
            evidence = [f"forked at #{step.position} as run {fork_id} (checkpoint {mark}, {before})"]
            evidence.append(
                f"changed: {', '.join(f'{k}={v!r}' for k, v in self.edits.items())}"
                if self.edits
                else f"changed: #{step.position} re-sampled (sample {sample}; its recorded result dropped)"
            )
            outcome, how = self._execute(scratch, fork_id, call_id, sample, start + calls_left - 1)
            calls = len({step_call_id(s) for s in scratch.steps(fork_id)} - kept)
            return outcome, calls, [*evidence, f"re-run ({calls} calls): {how}"]
        finally:
            scratch.close()

    def _execute(
        self, scratch: CheckpointStore, fork_id: str, call_id: str, sample: int, stop_after: int
    ) -> tuple[str, str]:
        token = supervision.set(Supervision(self.policy, self.detectors, stop_after=stop_after))
        try:
            if self.edits:
                runs.run(self.fn, *self.inputs[0], run_id=fork_id, store=scratch, **self.inputs[1])
            else:
                with resampling(fork_id, call_id, sample):
                    runs.run(self.fn, *self.inputs[0], run_id=fork_id, store=scratch, **self.inputs[1])
        except StopReached as stop:
            return "inconclusive", f"stopped at #{stop.position}: the call budget is spent"
        except NonDeterminismError as error:
            return "inconclusive", f"could not re-execute: {error}"
        except (Exception, ControlSignal) as error:
            again = classify(error, scratch, fork_id)
            same = _signature(again.__dict__) == _signature(self.failure)
            where = f"#{again.position} {again.step or 'the workflow'} ({again.agent or 'no agent'})"
            if same:
                return "not_verified", f"failed again the same way at {where}: {again.message}"
            return "not_verified", f"failed differently at {where}: {again.error_type}: {again.message}"
        finally:
            supervision.reset(token)
        return "verified", "completed: the failure no longer occurs"


def root_cause(results: Sequence[Verification]) -> Verification | None:
    """The verified step that comes first in the run; None if none was verified, or if a
    candidate before it came out inconclusive (the budget left open whether it was the cause)."""
    cause = min((v for v in results if v.verified), key=lambda v: v.step, default=None)
    if cause is None or any(v.outcome == "inconclusive" and v.step < cause.step for v in results):
        return None
    return cause


def verify(
    run_id: str,
    candidates: Sequence[int] | None = None,
    *,
    store: CheckpointStore | None = None,
    workflows: dict[str, Callable[..., Any]] | None = None,
    edits: dict[str, Any] | None = None,
    budget: Budget | None = None,
    samples: int = 1,
    detectors: tuple[Any, ...] = (),
    earliest: bool = False,
    reviewer: str = "omium",
) -> list[Verification]:
    """Verify candidate root causes of failed run ``run_id`` by re-executing forks of it.

    Args:
        candidates: step positions to test, in order (default: :func:`chain_candidates`).
        workflows: where to find the run's workflow by name (default: those defined here).
        edits: the fix to test instead of a re-sample (``{"AGENT.prompt": ...}``).
        budget: forks and re-executed calls allowed (default :class:`Budget`).
        samples: fresh samples drawn per candidate before it counts as not verified (a fork each).
        detectors: extra detectors the re-runs are screened by (as the supervisor's).
        earliest: after a verified candidate, go on with the candidates that come before it in
            the run: a later call that can repair the damage (a reviewer that, re-sampled, checks
            the record) is verified too, but the cause is the earliest call whose re-sample
            removes the failure (:func:`root_cause`).

    Returns:
        one :class:`Verification` per candidate tried, in order; candidates the budget left
        untried are ``inconclusive``. Without ``earliest`` the last is the verified one, if any.

    Raises:
        NotFoundError: unknown run, or a candidate that is not a completed call of it, or its
            workflow not defined here.
        ConflictError: the run did not fail.
        ConfigError: the run's arguments were not recorded (it cannot be re-executed).
    """
    store = store or runs.default_store()
    budget = budget or Budget()
    if samples < 1:
        raise ValueError("samples must be at least 1")
    run = store.get_run(run_id)
    failure = failure_of(store, run)
    done = _completed(store, run_id)
    order = list(candidates) if candidates is not None else chain_candidates(store, run_id)
    missing = [p for p in order if p not in done]
    if missing:
        raise NotFoundError(
            f"run {run_id!r} has no completed call at step {', '.join(map(str, missing))} "
            f"(its steps: 0-{max(done, default=0)})"
        )
    fn = _workflow(run, workflows)
    inputs = runs.recorded_inputs(store, run)
    if inputs is None:
        raise ConfigError(f"run {run_id!r} has no recorded arguments: it cannot be re-executed")
    policy = Policy.from_json(run.attributes.get(POLICY_ATTRIBUTE, Policy().to_json()))
    trial = _Trial(store, run, fn, inputs, failure, policy, tuple(detectors), dict(edits or {}))
    spent = _Spent()
    results: list[Verification] = []
    bound: int | None = None  # with ``earliest``: only candidates before the earliest verified
    for position in dict.fromkeys(order):
        if bound is not None and position >= bound:
            continue
        step = done[position]
        started = time.monotonic()
        outcome, evidence, forks, calls = "inconclusive", [], 0, 0
        for sample in range(1, 2 if trial.edits else samples + 1):
            if spent.forks >= budget.max_forks or spent.calls >= budget.max_calls:
                evidence.append(
                    f"{'not tried' if forks == 0 else 'no more samples'}: the budget is spent "
                    f"({spent.forks}/{budget.max_forks} forks, {spent.calls}/{budget.max_calls} calls)"
                )
                break
            outcome, used, lines = trial.attempt(step, sample, budget.max_calls - spent.calls)
            spent.forks, spent.calls = spent.forks + 1, spent.calls + used
            forks, calls, evidence = forks + 1, calls + used, evidence + lines
            if outcome != "not_verified":
                break
        elapsed = time.monotonic() - started
        results.append(Verification(position, step.agent, outcome, forks, calls, tuple(evidence), elapsed))
        if outcome == "verified":
            if not earliest:
                break
            bound = position
    audit.record(
        store,
        run_id,
        "counterfactual",
        actor=reviewer,
        reason="; ".join(f"#{v.step} {v.outcome}" for v in results) or "no candidates",
        after=[{"step": v.step, "agent": v.agent, "outcome": v.outcome} for v in results],
        incident=run.attributes.get("incident", ""),
        forks=spent.forks,
        calls=spent.calls,
    )
    return results


__all__ = [
    "CANDIDATE_KINDS",
    "FAILED_STATUSES",
    "OUTCOMES",
    "Budget",
    "Verification",
    "chain_candidates",
    "failure_of",
    "root_cause",
    "verify",
]
