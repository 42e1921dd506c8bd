"""``omium runs list`` and ``omium runs show RUN``: durable runs as the store records them; and an
operator's actions on one: ``omium runs pause | resume | cancel RUN``."""

from __future__ import annotations

import datetime as dt
import json

import typer
from rich.console import Console
from rich.table import Table

from omium.config import Settings
from omium.sdk.store import RUN_STATUSES

app = typer.Typer(
    help="Durable runs: list them, show one, pause, resume or cancel one.", no_args_is_help=True
)


def _store():  # type: ignore[no-untyped-def]
    from omium.sdk.sql.connect import connect_control

    return connect_control(Settings.from_env(), warehouse=False)


def _when(us: int) -> str:
    return dt.datetime.fromtimestamp(us / 1e6, tz=dt.UTC).strftime("%Y-%m-%d %H:%M:%S")


@app.command("list")
def list_runs(
    status: str = typer.Option(None, help=f"Only runs with this status ({', '.join(RUN_STATUSES)})."),
    limit: int = typer.Option(50, help="At most this many, newest first."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """List runs, newest first."""
    if status is not None and status not in RUN_STATUSES:
        raise typer.BadParameter(f"status must be one of {', '.join(RUN_STATUSES)}", param_hint="--status")
    store = _store()
    try:
        runs = store.list_runs(status=status, limit=limit)
    finally:
        store.close()
    if as_json:
        typer.echo(json.dumps([r.__dict__ for r in runs], indent=2))
        return
    table = Table("run", "workflow", "status", "started", "updated", "error")
    for run in runs:
        table.add_row(
            run.run_id, run.workflow, run.status, _when(run.started_at), _when(run.updated_at), run.error[:60]
        )
    Console().print(table)


@app.command("show")
def show(run_id: str = typer.Argument(..., help="The run id.")) -> None:
    """Show a run: status, recorded calls and checkpoints. Unknown ids exit with code 2."""
    store = _store()
    try:
        _show(store, run_id)
    finally:
        store.close()


def _show(store, run_id: str) -> None:  # type: ignore[no-untyped-def]
    run = store.get_run(run_id)  # NotFoundError -> exit 2 in main()
    console = Console()
    console.print(
        f"[bold]{run.run_id}[/bold]  workflow {run.workflow}  status [bold]{run.status}[/bold]  "
        f"version {run.version}  started {_when(run.started_at)}"
    )
    if run.error:
        console.print(f"[red]error:[/red] {run.error}")
    steps = Table("#", "kind", "name", "agent", "status", "attempt", "error", title="Recorded calls")
    for step in store.steps(run_id):
        steps.add_row(
            str(step.position),
            step.kind,
            step.name,
            step.agent,
            step.status,
            str(step.attempt),
            step.error[:60],
        )
    console.print(steps)
    checkpoints = Table("seq", "name", "agent", "at call", "state", title="Checkpoints")
    for checkpoint in store.checkpoints(run_id):
        checkpoints.add_row(
            str(checkpoint.seq),
            checkpoint.name,
            checkpoint.agent,
            str(checkpoint.step_index),
            checkpoint.state_hash[:12],
        )
    console.print(checkpoints)


def _act(action: str, run_id: str, actor: str, reason: str) -> None:
    """Do an operator's action (omium.recovery.actions, as the control API and the console do);
    a run in a state it does not apply to exits with code 2 and the reason."""
    from omium.recovery.actions import act

    store = _store()
    try:
        result = act(run_id, action, store=store, actor=actor, reason=reason)
    finally:
        store.close()
    typer.echo(result.message)


ACTOR = typer.Option("cli", "--actor", help="Who acts (recorded in the audit trail).")
REASON = typer.Option("", "--reason", help="Why (recorded in the audit trail).")


@app.command("pause")
def pause(
    run_id: str = typer.Argument(..., help="The run."), actor: str = ACTOR, reason: str = REASON
) -> None:
    """Pause a run: a running one stops at its next recorded call and holds no process; a queued
    one is held. Resume it with `omium runs resume RUN`."""
    _act("pause", run_id, actor, reason)


@app.command("resume")
def resume(
    run_id: str = typer.Argument(..., help="The paused run."), actor: str = ACTOR, reason: str = REASON
) -> None:
    """Queue a paused run to continue from its recording (a worker resumes it; completed calls do
    not run again)."""
    _act("resume", run_id, actor, reason)


@app.command("cancel")
def cancel(
    run_id: str = typer.Argument(..., help="The run."), actor: str = ACTOR, reason: str = REASON
) -> None:
    """Cancel a running, queued or paused run: it ends 'cancelled' (a running one at its next
    recorded call) and is never resumed."""
    _act("cancel", run_id, actor, reason)
