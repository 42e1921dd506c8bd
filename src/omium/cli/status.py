"""``omium status``: is the server up, and what does the warehouse hold."""

from __future__ import annotations

import httpx
import typer
from rich.console import Console
from rich.table import Table

from omium.config import Settings


def status() -> None:
    """Show the server's health and what the warehouse holds; exit 1 when no server answers."""
    settings = Settings.from_env()
    console = Console()
    headers = {"authorization": f"Bearer {settings.api_token}"} if settings.api_token else {}
    try:
        health = httpx.get(f"{settings.server_url}/v1/health", timeout=2).json()
        answer = httpx.get(f"{settings.server_url}/v1/stats", timeout=2, headers=headers)
        stats = answer.json()
    except (httpx.HTTPError, ValueError):
        console.print(f"[red]no Omium server at {settings.server_url}[/red] (start one with `omium serve`)")
        raise typer.Exit(1) from None
    if answer.status_code == 401:
        console.print(
            f"[red]the server at {settings.server_url} refused this client's token[/red]: set "
            "OMIUM_API_TOKEN, or OMIUM_HOME to the server's home (its api-token file)"
        )
        raise typer.Exit(1)
    from omium.warehouse import connect, queries
    from omium.warehouse.connection import Warehouse
    from omium.warehouse.remote import RemoteWarehouse

    # A server on ClickHouse has no SQL door (its reads belong to ClickHouse's own users): read there.
    warehouse: Warehouse = (
        connect(settings, mode="clickhouse", migrate=False)
        if not settings.embedded
        else RemoteWarehouse(settings.server_url, token=settings.api_token)
    )
    with warehouse:
        totals = queries.span_totals(warehouse).row(0, named=True)
    table = Table(title=f"Omium server {settings.server_url}", show_header=False)
    table.add_row("version", str(health["version"]))
    table.add_row("warehouse", f"{health['warehouse']} (database {health['database']})")
    table.add_row("spans stored", f"{totals['spans']:,}")
    table.add_row("traces", f"{totals['traces']:,}")
    table.add_row("error spans", f"{totals['errors']:,}")
    table.add_row("spans waiting to be written", f"{stats['pending_spans']:,}")
    table.add_row("written since start", f"{stats['spans_written']:,} spans in {stats['batches']:,} batches")
    if stats.get("quarantined_records"):
        table.add_row(
            "quarantined control records",
            f"{stats['quarantined_records']:,} (last: {stats.get('last_quarantine_error', '')[:80]})",
        )
    console.print(table)
