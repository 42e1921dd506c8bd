"""Workers: processes that host workflows and execute queued runs and commands.

A command (start, resume, retry, replay, fork, test-fix a run) is queued in the store; a worker
claims it under a lease and renews the lease while it works. Two workers never execute the same
run at once: a run with a live lease is skipped. If a worker dies its lease runs out and another
worker takes the command over; the run resumes from its recording, so nothing that completed is
executed twice. A paused run holds no process: its command is finished and nothing waits.

Example:
    >>> submit(store, "onboard_customer", "c-17", "ok")            # doctest: +SKIP
    >>> Worker(store).run_until_idle()                            # doctest: +SKIP
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import uuid
from collections.abc import Callable
from typing import Any

from omium.errors import ConflictError, NotFoundError, OmiumError, ServerUnavailable
from omium.recovery import audit, supervisor
from omium.recovery.review import review, test_fix
from omium.sdk import lease, runs
from omium.sdk.branching import fork
from omium.sdk.replay import replay
from omium.sdk.stop import PAUSED_BY
from omium.sdk.store import CheckpointStore, CommandRecord, RunRecord

logger = logging.getLogger(__name__)
COMMAND_KINDS = ("start", "resume", "retry", "replay", "fork", "test_fix")


def enqueue(store: CheckpointStore, run_id: str, kind: str, **payload: Any) -> CommandRecord:
    """Queue a command for a worker (:class:`ValueError` for an unknown kind)."""
    if kind not in COMMAND_KINDS:
        raise ValueError(f"a command is one of {', '.join(COMMAND_KINDS)}, not {kind!r}")
    store.get_run(run_id)  # NotFoundError for an unknown run, now rather than in a worker
    return store.enqueue_command(
        CommandRecord(command_id=uuid.uuid4().hex, run_id=run_id, kind=kind, payload=json.dumps(payload))
    )


def submit(
    store: CheckpointStore, workflow: str, *args: Any, run_id: str | None = None, **kwargs: Any
) -> str:
    """Queue a new run of ``workflow`` (by name) with these arguments; returns its run id."""
    run_id = run_id or uuid.uuid4().hex
    attributes = runs.input_attributes(store, (args, kwargs))
    store.create_run(RunRecord(run_id, workflow, status="queued", attributes=attributes))
    enqueue(store, run_id, "start")
    return run_id


class Worker:
    """Executes commands from ``store`` for the workflows it hosts."""

    def __init__(
        self,
        store: CheckpointStore,
        workflows: dict[str, Callable[..., Any]] | None = None,
        *,
        name: str | None = None,
        lease_seconds: float = 10.0,
        poll_interval: float = 0.2,
        detectors: tuple[Any, ...] = (),
        sleep: Callable[[float], None] | None = None,
    ) -> None:
        self.store = store
        self.workflows = workflows if workflows is not None else runs.registered_workflows()
        self.name = name or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.lease_seconds = lease_seconds
        self.poll_interval = poll_interval
        self.detectors = detectors
        self.sleep = sleep
        self.executed = 0

    def run_once(self) -> CommandRecord | None:
        """Claim and execute one command; None if there was nothing to do."""
        command = self.store.claim_command(self.name, self.lease_seconds)
        if command is None:
            return None
        stop = threading.Event()
        heartbeat = threading.Thread(target=self._renew, args=(command, stop), daemon=True)
        heartbeat.start()
        try:
            result = self.execute(command)
        except ServerUnavailable as error:
            # The store is out of reach (a server died), which is not the run's failure: the
            # command stays claimed, its lease runs out, and a worker takes it over from the
            # run's recording.
            logger.warning(
                "command %s (%s %s) interrupted: %s", command.command_id, command.kind, command.run_id, error
            )
            return command
        except (OmiumError, ValueError, KeyError) as error:
            logger.warning(
                "command %s (%s %s) failed: %s", command.command_id, command.kind, command.run_id, error
            )
            return self._finish(command, "failed", {"error": f"{type(error).__name__}: {error}"})
        finally:
            stop.set()
            heartbeat.join()
        self.executed += 1
        return self._finish(command, "done", result)

    def _finish(self, command: CommandRecord, status: str, result: dict[str, Any]) -> CommandRecord:
        try:
            return self.store.finish_command(
                command.command_id, self.name, status, json.dumps(result, default=str)
            )
        except ConflictError:  # our lease ran out and another worker took over
            logger.warning("lost the lease of command %s before finishing it", command.command_id)
            return command

    def _renew(self, command: CommandRecord, stop: threading.Event) -> None:
        while not stop.wait(self.lease_seconds / 3):
            try:
                self.store.renew_command(command.command_id, self.name, self.lease_seconds)
            except ConflictError:
                # Another worker may take the command over: the run stops at its next call.
                logger.warning("lost the lease of command %s; stopping its run", command.command_id)
                lease.keeper.abandon(command.run_id, f"worker {self.name} lost command {command.command_id}")
                return
            except Exception:  # a transient store error: the next renewal may succeed
                logger.exception("renewing the lease of command %s failed", command.command_id)

    def run_until_idle(self) -> int:
        """Execute commands until none is left; returns how many ran."""
        count = 0
        while self.run_once() is not None:
            count += 1
        return count

    def run_forever(self, stop: threading.Event | None = None) -> None:
        """Poll for commands until ``stop`` is set."""
        stop = stop or threading.Event()
        while not stop.is_set():
            try:
                done = self.run_once()
            except ServerUnavailable as error:  # a server restarting: try again (or another one)
                logger.warning("the control store did not answer: %s", error)
                done = None
            if done is None:
                stop.wait(self.poll_interval)

    def execute(self, command: CommandRecord) -> dict[str, Any]:
        """Do what a command says; returns its result."""
        payload = json.loads(command.payload or "{}")
        run_id = command.run_id
        options: dict[str, Any] = {
            "store": self.store,
            "workflows": self.workflows,
            "actor": self.name,
            "detectors": self.detectors,
            # The run's lease lasts as long as the command's; a run whose last worker died is
            # taken over once that worker's lease has run out.
            "lease_seconds": self.lease_seconds,
            "wait": self.lease_seconds * 2,
        }
        if self.sleep is not None:
            options["sleep"] = self.sleep
        if command.kind in ("start", "resume"):
            return _outcome(supervisor.resume(run_id, **options))
        if command.kind == "retry":
            run = self.store.get_run(run_id)
            checkpoint = payload.get("checkpoint") or ""
            reviewer = payload.get("reviewer", self.name)
            awaiting = run.status == "paused" and run.attributes.get(supervisor.AWAITING_ATTRIBUTE)
            if awaiting and not checkpoint:  # a retry of a paused run is its approval
                review(
                    run_id,
                    "approve",
                    edits=payload.get("edits"),
                    reviewer=reviewer,
                    reason="retry from checkpoint",
                    store=self.store,
                )
            elif checkpoint and run.status == "paused":
                # A rollback is not an approval (audited as the rollback below): the edits are
                # recorded as edits, and the pause (a review's or an operator's) is lifted for it.
                if awaiting and payload.get("edits"):
                    review(run_id, "edit", edits=payload["edits"], reviewer=reviewer, store=self.store)
                run = self.store.get_run(run_id)
                self.store.update_run(
                    run_id,
                    run.version,
                    status=run.status,
                    error=run.error,
                    attributes={supervisor.AWAITING_ATTRIBUTE: "", PAUSED_BY: ""},
                )
            if checkpoint:
                # The checkpoint asked for, also for a paused run (approving alone would resume it
                # from where it stopped), audited as the rollback it is.
                before = self.store.get_run(run_id)
                runs.rollback(run_id, checkpoint, store=self.store)
                audit.record(
                    self.store,
                    run_id,
                    "rolled_back",
                    actor=reviewer,
                    reason=f"rollback to {checkpoint} requested",
                    before={"status": before.status},
                    after={"status": "rolled_back", "checkpoint": checkpoint},
                    incident=before.attributes.get(supervisor.INCIDENT_ATTRIBUTE, ""),
                    checkpoint=checkpoint,
                )
            return _outcome(supervisor.resume(run_id, **options))
        if command.kind == "test_fix":
            found = test_fix(
                run_id,
                payload.get("edits"),
                store=self.store,
                workflows=self.workflows,
                reviewer=payload.get("reviewer", self.name),
            )
            return dict(found.__dict__)
        if command.kind == "replay":
            fn = self._workflow(run_id)
            report = replay(fn, run_id=run_id, store=self.store)
            return {"identical": report.identical, "summary": str(report)}
        if command.kind == "fork":
            branch = fork(
                run_id,
                payload["checkpoint"],
                overrides=payload.get("overrides"),
                new_run_id=payload.get("new_run_id"),
                store=self.store,
            )
            return {"fork": branch.run_id, **_outcome(supervisor.resume(branch.run_id, **options))}
        raise ValueError(f"unknown command kind {command.kind!r}")

    def _workflow(self, run_id: str) -> Callable[..., Any]:
        workflow = self.store.get_run(run_id).workflow
        if workflow not in self.workflows:
            raise NotFoundError(f"this worker does not host workflow {workflow!r}")
        return self.workflows[workflow]


def _outcome(outcome: supervisor.Outcome) -> dict[str, Any]:
    return {
        "status": outcome.status,
        "retries": outcome.retries,
        "rollbacks": outcome.rollbacks,
        "incident": outcome.incident,
        "failure": outcome.failure.message if outcome.failure else "",
    }


__all__ = ["COMMAND_KINDS", "Worker", "enqueue", "submit"]
