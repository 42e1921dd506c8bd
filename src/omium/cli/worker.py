"""``omium worker MODULE[:ATTR]`` and ``omium submit WORKFLOW ARGS...``."""

from __future__ import annotations

import importlib
import json
import signal
import sys
import threading
from typing import Any

import typer

from omium.errors import ConfigError


def load_workflows(target: str) -> dict[str, Any]:
    """Import ``MODULE`` (all its workflows) or ``MODULE:ATTR`` (that one)."""
    from omium.sdk.runs import registered_workflows

    module_name, _, attr = target.partition(":")
    sys.path.insert(0, ".")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"cannot import {module_name!r}: {exc}") from None
    if not attr:
        found = registered_workflows()
        if not found:
            raise ConfigError(f"{module_name!r} defines no @workflow")
        return found
    fn = getattr(module, attr, None)
    definition = getattr(fn, "__omium_run__", None)
    if definition is None:
        raise ConfigError(f"{target!r} is not a @workflow")
    return {definition.name: fn}


def worker(
    target: str = typer.Argument(..., help="MODULE (all its workflows) or MODULE:WORKFLOW."),
    lease: float = typer.Option(
        10.0, help="Seconds a claim lasts without renewal (a dead worker's runs move on)."
    ),
    once: bool = typer.Option(False, "--once", help="Execute what is queued, then exit."),
    name: str = typer.Option(None, help="This worker's name (default: host:pid:random)."),
) -> None:
    """Host workflows: run queued runs and commands (resume, retry, replay, fork, test-fix)."""
    from omium.recovery.worker import Worker
    from omium.sdk.runs import init

    workflows = load_workflows(target)
    store = init()
    runner = Worker(store, workflows, name=name, lease_seconds=lease)
    typer.echo(f"worker {runner.name}: hosting {', '.join(sorted(workflows))}", err=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        if once:
            runner.run_until_idle()
        else:
            runner.run_forever(stop)
    except KeyboardInterrupt:
        pass
    finally:
        store.close()
    typer.echo(f"worker {runner.name}: executed {runner.executed} commands", err=True)


def submit(
    workflow: str = typer.Argument(..., help="The workflow's name."),
    args: list[str] = typer.Argument(None, help="Arguments (JSON values, or strings)."),
    run_id: str = typer.Option(None, "--run-id", help="The run's id (default: generated)."),
) -> None:
    """Queue a run for a worker."""
    from omium.recovery.worker import submit as do_submit
    from omium.sdk.runs import init

    values = []
    for raw in args or []:
        try:
            values.append(json.loads(raw))
        except ValueError:
            values.append(raw)
    store = init()
    try:
        queued = do_submit(store, workflow, *values, run_id=run_id)
    finally:
        store.close()
    typer.echo(queued)
