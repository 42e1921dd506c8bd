"""``omium rollback RUN --to CHECKPOINT`` and ``omium resume RUN --app MODULE:WORKFLOW``.

A LangGraph thread's run (``langgraph:<thread_id>``, or any run id with ``--app`` naming a
compiled graph) is rolled back and forked through LangGraph itself: ``--to``/``--from`` name a
checkpoint by id or as ``step N``; rollback resumes the thread from it, fork writes ``--set
KEY=VALUE`` (VALUE as JSON, else a string) onto it with ``update_state`` and runs on from there.
"""

from __future__ import annotations

import json
from typing import Any

import typer

from omium.errors import ConfigError

LANGGRAPH_PREFIX = "langgraph:"


def _graph(run_id: str, app: str | None) -> Any:
    """The compiled LangGraph graph to roll back or fork with, or None for a native run."""
    if app is None:
        if run_id.startswith(LANGGRAPH_PREFIX):
            raise ConfigError(
                f"{run_id!r} is a LangGraph thread: name its compiled graph with --app MODULE:GRAPH"
            )
        return None
    from omium.cli.replay import _load

    graph = _load(app)
    if not (hasattr(graph, "get_state_history") and hasattr(graph, "update_state")):
        if run_id.startswith(LANGGRAPH_PREFIX):
            raise ConfigError(f"--app {app!r} is not a compiled LangGraph graph")
        return None  # a native run's workflow: --app is not needed here
    return graph


def _with_store(graph: Any, store: Any) -> Any:
    """The graph checkpointed into the CLI's store (its own saver may point elsewhere)."""
    from omium.adapters.langgraph import OmiumSaver

    return graph.copy(update={"checkpointer": OmiumSaver(store)})


def _state_line(values: Any) -> str:
    text = json.dumps(values, default=str, sort_keys=True)
    return text if len(text) <= 400 else text[:397] + "..."


def _langgraph_rollback(run_id: str, to: str, graph: Any) -> None:
    from omium.adapters.langgraph import rollback as thread_rollback
    from omium.adapters.langgraph._recovery import thread_of
    from omium.sdk.runs import init

    store = init()
    try:
        outcome = thread_rollback(_with_store(graph, store), thread_of(run_id), to)
    finally:
        store.close()
    stopped = "stopped at an interrupt" if outcome.interrupted else "ran to its end"
    typer.echo(
        f"thread {outcome.thread_id} rolled back to checkpoint {outcome.started_from} ({to!r}) "
        f"and {stopped}; now at {outcome.checkpoint_id}: {_state_line(outcome.values)}"
    )


def _langgraph_fork(run_id: str, at: str, overrides: list[str], as_node: str | None, graph: Any) -> None:
    from omium.adapters.langgraph import fork as thread_fork
    from omium.adapters.langgraph._recovery import thread_of
    from omium.sdk.runs import init

    values = _values(overrides)
    store = init()
    try:
        outcome = thread_fork(_with_store(graph, store), thread_of(run_id), at, values, as_node=as_node)
    finally:
        store.close()
    stopped = "stopped at an interrupt" if outcome.interrupted else "ran to its end"
    typer.echo(
        f"thread {outcome.thread_id} forked at checkpoint {outcome.started_from} ({at!r}) with "
        f"{sorted(values)} and {stopped}; now at {outcome.checkpoint_id}: {_state_line(outcome.values)}"
    )


def _values(overrides: list[str]) -> dict[str, Any]:
    """``KEY=VALUE`` pairs; a VALUE that parses as JSON is that JSON, else the string."""
    values: dict[str, Any] = {}
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set takes KEY=VALUE for a LangGraph thread, got {item!r}")
        try:
            values[key] = json.loads(raw)
        except json.JSONDecodeError:
            values[key] = raw
    return values


def rollback(
    run_id: str = typer.Argument(..., help="The run (a LangGraph thread: langgraph:THREAD_ID)."),
    to: str = typer.Option(..., "--to", help="The checkpoint to return to (LangGraph: an id or 'step N')."),
    app: str = typer.Option(None, "--app", help="A LangGraph thread's compiled graph, MODULE:GRAPH."),
) -> None:
    """Roll a run back to a checkpoint; `omium resume` then runs what came after it again.
    A LangGraph thread is resumed from that checkpoint at once."""
    graph = _graph(run_id, app)
    if graph is not None:
        _langgraph_rollback(run_id, to, graph)
        return
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
    app: str = typer.Option(None, "--app", help="A LangGraph thread's compiled graph, MODULE:GRAPH."),
    as_node: str = typer.Option(None, "--as-node", help="LangGraph: the node the --set values come from."),
) -> None:
    """Branch a run at a checkpoint with edited agent configuration; resume the branch to run it.
    A LangGraph thread is branched with update_state (--set KEY=JSON state values) and run on."""
    graph = _graph(run_id, app)
    if graph is not None:
        if new_run_id:
            raise ConfigError("a LangGraph fork branches within its thread: --run-id does not apply")
        _langgraph_fork(run_id, from_checkpoint, overrides, as_node, graph)
        return
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
