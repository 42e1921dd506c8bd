"""``omium review RUN --approve | --reject | --edit AGENT.prompt=...`` and ``omium incidents``."""

from __future__ import annotations

import json
import time

import typer
from rich.console import Console
from rich.table import Table

from omium.errors import ConfigError


def review(
    run_id: str = typer.Argument(..., help="The paused run."),
    approve: bool = typer.Option(
        False, "--approve", help="Approve (with any --edit) and retry from the checkpoint."
    ),
    reject: bool = typer.Option(
        False,
        "--reject",
        help="Reject (say why with --reason): the run ends, or, at a gate that takes a rejection "
        "as an answer (an Agents SDK tool approval), carries on without the rejected call.",
    ),
    edit: list[str] = typer.Option([], "--edit", help="AGENT.FIELD=VALUE (fields the policy allows)."),
    test: bool = typer.Option(
        False, "--test", help="Test the edit on the failed step first, committing nothing."
    ),
    app: str = typer.Option(None, "--app", help="MODULE[:WORKFLOW] to test here (default: ask a worker)."),
    reviewer: str = typer.Option("cli", help="Who decides (recorded in the audit trail)."),
    reason: str = typer.Option("", help="Why (recorded in the audit trail)."),
    wait: float = typer.Option(60.0, help="Seconds to wait for a worker's test result."),
) -> None:
    """Review a run waiting for a reviewer (paused for review, or stopped at an approval gate):
    test a fix, approve it (the run is queued to resume), edit, or reject.

    The decision is recorded by omium.recovery.review, as for the SDK, the control API and the
    adapters; a run it leaves ready to resume (status queued) is queued for a worker."""
    from omium.recovery import review as do_review
    from omium.recovery.review import test_fix
    from omium.recovery.worker import enqueue
    from omium.sdk.branching import parse_overrides
    from omium.sdk.runs import init

    if approve and reject:
        raise ConfigError("choose one of --approve and --reject")
    if not (approve or reject or edit or test):
        raise ConfigError("say what to do: --approve, --reject, --edit AGENT.FIELD=VALUE, or --test")
    edits = parse_overrides(edit)
    store = init()
    try:
        if test:
            if app:
                from omium.cli.worker import load_workflows

                result = test_fix(
                    run_id, edits, store=store, workflows=load_workflows(app), reviewer=reviewer
                )
                passed, message = result.passed, result.message
            else:
                command = enqueue(store, run_id, "test_fix", edits=edits, reviewer=reviewer)
                passed, message = _wait_for(store, command.command_id, run_id, wait)
            typer.echo(f"test fix {'passed' if passed else 'FAILED'}: {message}")
            if not passed:
                raise typer.Exit(1)
        if approve or reject or edit:
            decision = "approve" if approve else "reject" if reject else "edit"
            updated = do_review(run_id, decision, edits=edits, reviewer=reviewer, reason=reason, store=store)
            if updated.status == "queued":  # approved, or rejected at a gate the run carries on from
                enqueue(store, run_id, "resume")
                done = "approved" if approve else "rejected"
                typer.echo(f"run {run_id} {done} and queued to resume from its checkpoint")
            else:
                typer.echo(f"run {run_id}: {decision} recorded")
    finally:
        store.close()


def _wait_for(store: object, command_id: str, run_id: str, wait: float) -> tuple[bool, str]:
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        for command in store.commands(run_id):  # type: ignore[attr-defined]
            if command.command_id == command_id and command.status in ("done", "failed"):
                result = json.loads(command.result or "{}")
                if command.status == "failed":
                    return False, result.get("error", "the worker failed")
                return bool(result["passed"]), str(result["message"])
        time.sleep(0.2)
    raise ConfigError(
        f"no worker answered within {wait:g}s: start one with `omium worker MODULE`, or pass --app"
    )


def incidents(
    run_id: str = typer.Argument("", help="One run (default: all)."),
    as_json: bool = typer.Option(False, "--json", help="JSON lines instead of a table."),
) -> None:
    """Incidents and their timelines (detected, rolled back, paused, reviewed, resumed, completed)."""
    from omium.recovery.audit import incidents as find
    from omium.sdk.runs import init

    store = init()
    try:
        if run_id:
            store.get_run(run_id)
        found = find(store, run_id)
    finally:
        store.close()
    if as_json:
        for incident in found:
            events = [
                {"kind": e.kind, "ts": e.ts, "actor": e.actor, "reason": e.reason} for e in incident.events
            ]
            typer.echo(
                json.dumps(
                    {
                        "incident": incident.incident_id,
                        "run_id": incident.run_id,
                        "trigger": incident.trigger,
                        "events": events,
                    }
                )
            )
        return
    table = Table("incident", "run", "trigger", "timeline", "seconds to settle")
    for incident in found:
        last = incident.stages[-1]
        settle = incident.seconds_between("detected", last)
        table.add_row(
            incident.incident_id,
            incident.run_id,
            incident.trigger,
            " → ".join(incident.stages),
            f"{settle:.2f}" if settle is not None else "",
        )
    Console(soft_wrap=True).print(table)
