"""``omium``: entry point and subcommand registry."""

from __future__ import annotations

import logging
import sys

import typer

from omium._version import __version__
from omium.errors import OmiumError

app = typer.Typer(
    name="omium",
    help="Omium: checkpointed, consensus-checked, traced and guarded multi-agent runs.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"omium {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Show the version."
    ),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log at INFO level."),
) -> None:
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


def _register() -> None:
    from omium.cli import (
        company_x,
        console,
        data_import,
        demo,
        export,
        pipelines,
        policy,
        recovery,
        replay,
        review,
        runs,
        serve,
        sql,
        status,
        up,
        verify,
        worker,
    )

    app.command("serve")(serve.serve)
    app.command("up")(up.up)
    app.command("status")(status.status)
    app.command("sql")(sql.sql)
    app.command("demo")(company_x.demo)
    app.command("demo-traces")(demo.demo)
    app.add_typer(runs.app, name="runs")
    app.command("replay")(replay.replay)
    app.command("rollback")(recovery.rollback)
    app.command("resume")(recovery.resume)
    app.command("fork")(recovery.fork)
    app.command("verify")(verify.verify)
    app.add_typer(policy.app, name="policy")
    app.command("worker")(worker.worker)
    app.command("submit")(worker.submit)
    app.command("review")(review.review)
    app.command("incidents")(review.incidents)
    app.command("console")(console.console)
    app.add_typer(data_import.app, name="import")
    app.add_typer(export.app, name="export")
    app.add_typer(pipelines.app, name="pipelines")


_register()


def main() -> None:
    """Run the CLI; Omium's own errors become one red line and exit code 2."""
    try:
        app()
    except OmiumError as exc:
        from rich.console import Console
        from rich.markup import escape

        # soft_wrap: an error line stays one line (scripts grep it); escape: ids may hold brackets.
        Console(stderr=True, soft_wrap=True).print(f"[red]error:[/red] {escape(str(exc))}", highlight=False)
        sys.exit(2)


if __name__ == "__main__":
    main()
