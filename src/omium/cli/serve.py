"""``omium serve``: the Omium server in the foreground."""

from __future__ import annotations

import typer

from omium.config import Settings


def serve(
    host: str = typer.Option(None, help="Address to bind (default OMIUM_HOST or 127.0.0.1)."),
    port: int = typer.Option(None, help="HTTP port: OTLP/HTTP, control and SQL API (default 4318)."),
    grpc_port: int = typer.Option(None, help="OTLP/gRPC port (default 4317; -1 disables)."),
) -> None:
    """Run the Omium server: OTLP ingest (HTTP + gRPC), control API and SQL API."""
    import os

    from omium.collector.server import start

    os.umask(0o077)  # warehouse, control database and spool files are for this user only
    settings = Settings.from_env()
    changes: dict[str, object] = {}
    if host is not None:
        changes["host"] = host
    if port is not None:
        changes["http_port"] = port
    if grpc_port is not None:
        changes["grpc_port"] = grpc_port
    settings = settings.with_(**changes)
    typer.echo(
        f"Omium server: http://{settings.host}:{settings.http_port} (OTLP/HTTP, API), "
        f"OTLP/gRPC on {settings.grpc_port}, warehouse "
        f"{'embedded at ' + str(settings.warehouse_path) if settings.embedded else settings.clickhouse_url}"
    )
    try:
        start(settings, in_thread=False)
    except OSError as exc:
        typer.secho(
            f"error: cannot start the server: {exc} (is another server running? "
            "set OMIUM_HTTP_PORT / OMIUM_GRPC_PORT)",
            err=True,
            fg="red",
        )
        raise typer.Exit(2) from None
