"""``omium export grafana DIR``: Omium's Grafana dashboards and provisioning files."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path

import typer

app = typer.Typer(help="Write Omium's files for other tools.", no_args_is_help=True)


class Protocol(StrEnum):
    """How Grafana's ClickHouse plugin connects."""

    native = "native"
    http = "http"


@app.command("grafana")
def grafana(
    directory: Path = typer.Argument(
        ..., help="Where to write dashboards/ and provisioning/ (created if missing)."
    ),
    datasource_host: str = typer.Option(
        "clickhouse", "--datasource-host", help="ClickHouse host Grafana reaches."
    ),
    port: int = typer.Option(9000, "--port", help="ClickHouse port (9000 native, 8123 http)."),
    protocol: Protocol = typer.Option(Protocol.native, "--protocol", help="native or http."),
    username: str = typer.Option(
        "omium", "--username", help="ClickHouse user (password: $CLICKHOUSE_PASSWORD)."
    ),
    database: str = typer.Option("omium", "--database", help="The database holding Omium's tables."),
    dashboards_path: str = typer.Option(
        "/var/lib/grafana/dashboards", "--dashboards-path", help="Where Grafana will find DIR/dashboards."
    ),
) -> None:
    """Write the four dashboards and the data source and dashboard provisioning for Grafana."""
    from omium.dashboards import grafana as dashboards

    if directory.exists() and not directory.is_dir():
        raise typer.BadParameter(f"{directory} is a file, not a directory", param_hint="DIRECTORY")
    options = dashboards.DatasourceOptions(
        host=datasource_host, port=port, protocol=protocol.value, username=username, database=database
    )
    try:
        written = dashboards.export(directory, datasource=options, dashboards_path=dashboards_path)
    except NotADirectoryError as error:
        raise typer.BadParameter(str(error), param_hint="DIRECTORY") from None
    except OSError as error:
        typer.secho(f"error: cannot write to {directory}: {error.strerror or error}", err=True, fg="red")
        raise typer.Exit(1) from None
    for path in written:
        typer.echo(f"wrote {path}")
    typer.echo(
        f"mount {directory / dashboards.PROVISIONING} at /etc/grafana/provisioning and "
        f"{directory / dashboards.DASHBOARDS} at {dashboards_path}; "
        "install the grafana-clickhouse-datasource plugin"
    )
