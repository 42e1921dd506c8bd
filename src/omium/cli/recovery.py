"""``omium rollback RUN --to CHECKPOINT`` and ``omium resume RUN --app MODULE:WORKFLOW``."""

from __future__ import annotations

import typer

from omium.errors import ConfigError


def rollback(
    run_id: str = typer.Argument(..., help="The run."),
    to: str = typer.Option(..., "--to", help="The checkpoint to return to."),
) -> None:
    """Roll a run back to a checkpoint; `omium resume` then runs what came after it again."""
    from omium.sdk.runs import init
    from omium.sdk.runs import rollback as do_rollback

    store = init()
    try:
        run = do_rollback(run_id, to, store=store)
    finally:
        store.close()
    typer.echo(
        f"run {run_id} rolled back to {to!r} (generation {run.attributes['generation']}); "
        f"resume it with: omium resume {run_id} --app MODULE:WORKFLOW"
    )


def resume(
    run_id: str = typer.Argument(..., help="The run."),
    app: str = typer.Option(..., "--app", help="The workflow function, MODULE:ATTR."),
) -> None:
    """Resume a run with its recorded arguments under its policy: completed calls are answered from
    the record. A run paused awaiting review must be reviewed first (omium review)."""
    from omium.cli.replay import _load
    from omium.recovery.supervisor import resume as supervised
    from omium.sdk.runs import init, recorded_inputs

    workflow = _load(app)
    definition = getattr(workflow, "__omium_run__", None)
    store = init()
    try:
        run = store.get_run(run_id)
        if recorded_inputs(store, run) is None:
            raise ConfigError(f"run {run_id!r} has no recorded arguments; resume it from code with omium.run")
        name = definition.name if definition is not None else run.workflow
        outcome = supervised(run_id, store=store, workflows={name: workflow, run.workflow: workflow})
    finally:
        store.close()
    if outcome.status == "completed":
        typer.echo(f"run {run_id} completed: {outcome.result!r}")
    else:
        failure = outcome.failure.message if outcome.failure else ""
        typer.echo(f"run {run_id} {outcome.status}: {failure}")
        raise typer.Exit(1)


def fork(
    run_id: str = typer.Argument(..., help="The run to branch."),
    from_checkpoint: str = typer.Option(..., "--from", help="The checkpoint to branch at."),
    overrides: list[str] = typer.Option([], "--set", help="AGENT.FIELD=VALUE (prompt, constraints, tools)."),
    new_run_id: str = typer.Option(None, "--run-id", help="Id of the new run (default: generated)."),
) -> None:
    """Branch a run at a checkpoint with edited agent configuration; resume the branch to run it."""
    from omium.sdk.branching import fork as do_fork
    from omium.sdk.branching import parse_overrides
    from omium.sdk.runs import init

    changes = parse_overrides(overrides)
    store = init()
    try:
        branch = do_fork(run_id, from_checkpoint, overrides=changes, new_run_id=new_run_id, store=store)
    finally:
        store.close()
    typer.echo(
        f"forked {run_id} at {from_checkpoint!r} into {branch.run_id}; "
        f"run it with: omium resume {branch.run_id} --app MODULE:WORKFLOW"
    )
