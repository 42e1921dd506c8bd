"""``omium sql``: run SQL against the warehouse (through the server when one is running)."""

from __future__ import annotations

import json
import sys
from enum import StrEnum

import typer

from omium.config import Settings
from omium.errors import ConfigError


class Format(StrEnum):
    """Output formats of ``omium sql``."""

    table = "table"
    csv = "csv"
    json = "json"


def _parse_params(values: list[str]) -> dict[str, str]:
    params: dict[str, str] = {}
    for item in values:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise ConfigError(f"--param takes NAME=VALUE, got {item!r}")
        params[name] = value
    return params


def sql(
    query: str = typer.Argument(..., help="ClickHouse SQL; bind values as {name:Type} and pass --param."),
    fmt: Format = typer.Option(Format.table, "--format", "-f", help="Output format."),
    param: list[str] = typer.Option([], "--param", "-p", help="NAME=VALUE, bound server-side."),
    write: bool = typer.Option(False, "--write", help="Run as a write (needs OMIUM_API_TOKEN via a server)."),
) -> None:
    """Run one SQL statement and print the result."""
    from omium.warehouse import connect

    settings = Settings.from_env()
    params = _parse_params(param)
    with connect(settings) as warehouse:
        if write:
            warehouse.command(query, params)
            typer.echo("ok")
            return
        frame = warehouse.query_df(query, params)
    if fmt is Format.csv:
        sys.stdout.write(frame.write_csv())
    elif fmt is Format.json:
        sys.stdout.write(json.dumps(frame.to_dicts(), default=str, indent=2) + "\n")
    else:
        from rich.console import Console
        from rich.table import Table

        table = Table(*frame.columns)
        for row in frame.iter_rows():
            table.add_row(*(str(v) for v in row))
        Console().print(table)
        Console(stderr=True).print(f"[dim]{frame.height} row(s)[/dim]")
