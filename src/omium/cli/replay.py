"""``omium replay RUN --app MODULE:WORKFLOW --verify``: replay a recorded run and verify it."""

from __future__ import annotations

import importlib
import sys

import typer

from omium.errors import ConfigError


def _load(app: str):  # type: ignore[no-untyped-def]
    module_name, _, attr = app.partition(":")
    if not module_name or not attr:
        raise ConfigError(f"--app takes MODULE:WORKFLOW, got {app!r}")
    sys.path.insert(0, ".")
    try:
        return getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"cannot load workflow {app!r}: {exc}") from None


def replay(
    run_id: str = typer.Argument(..., help="The recorded run."),
    app: str = typer.Option(..., "--app", help="The workflow function, MODULE:ATTR."),
    verify: bool = typer.Option(
        True, "--verify/--no-verify", help="Report identical or the first divergence."
    ),
) -> None:
    """Replay a run from its recording (nothing executes, nothing is written); exit 1 if it diverges."""
    from omium.sdk.replay import replay as run_replay
    from omium.sdk.runs import init

    workflow = _load(app)
    init()
    report = run_replay(workflow, run_id=run_id)
    typer.echo(str(report))
    if verify and not report.identical:
        raise typer.Exit(1)
