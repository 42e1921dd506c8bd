"""``omium runs list`` and ``omium runs show RUN``: durable runs as the store records them."""

from __future__ import annotations

import datetime as dt
import json

import typer
from rich.console import Console
from rich.table import Table

from omium.config import Settings
from omium.sdk.store import RUN_STATUSES

app = typer.Typer(help="Durable runs: list them, show one.", no_args_is_help=True)


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
