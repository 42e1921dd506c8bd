"""``omium demo-traces``: the embedded stack end to end on realistic multi-agent OTLP traffic.

(``omium demo``, the Company X onboarding demo, is :mod:`omium.cli.company_x`.)
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from typing import Any

import httpx
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from omium.config import Settings


@contextlib.contextmanager
def stack(settings: Settings, console: Console) -> Iterator[tuple[str, Any, str | None]]:
    """The server's URL, its store when it was started here (None for a server elsewhere), and
    the API token to call it with (a server started here may have generated it)."""
    from omium.warehouse.remote import server_answers

    if server_answers(settings.server_url):
        console.print(f"using the Omium server at {settings.server_url}")
        yield settings.server_url, None, settings.api_token
        return
    from omium.collector.server import serving

    try:
        context = serving(settings)
        running = context.__enter__()
    except OSError:
        # The default ports are taken by something else: take free ones.
        context = serving(settings.with_(http_port=0, grpc_port=0))
        running = context.__enter__()
    console.print(f"started an embedded Omium server at {running.url} (warehouse {settings.warehouse_path})")
    try:
        yield running.url, running.state.store, running.state.settings.api_token
    finally:
        context.__exit__(None, None, None)


def demo(
    requests: int = typer.Option(40, help="OTLP export requests to send."),
    spans_per_request: int = typer.Option(1000, help="Agent spans in each request."),
    serve: bool = typer.Option(False, "--serve", help="Keep the server running afterwards (Ctrl-C stops)."),
) -> None:
    """Send realistic multi-agent traces through OTLP into the embedded warehouse and summarise them."""
    from omium.collector import sample
    from omium.warehouse import queries
    from omium.warehouse.remote import RemoteWarehouse

    settings = Settings.from_env()
    console = Console()
    with stack(settings, console) as (url, _, token):
        payloads = sample.requests(requests, spans_per_request, seed=int(time.time()))
        started = time.perf_counter()
        with (
            httpx.Client(timeout=60) as client,
            Progress(
                TextColumn("exporting spans"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                console=console,
            ) as progress,
        ):
            task = progress.add_task("export", total=requests * spans_per_request)
            for body in payloads:
                response = client.post(
                    f"{url}/v1/traces", content=body, headers={"content-type": "application/x-protobuf"}
                )
                if response.status_code != 200:
                    console.print(f"[red]export failed: {response.status_code} {response.text[:200]}[/red]")
                    raise typer.Exit(1)
                progress.advance(task, spans_per_request)
        elapsed = time.perf_counter() - started
        with RemoteWarehouse(url, token=token) as warehouse:
            totals = queries.span_totals(warehouse).row(0, named=True)
            agents = queries.agent_summary(warehouse)
        console.print(
            f"sent {requests * spans_per_request:,} spans in {elapsed:.1f}s "
            f"({requests * spans_per_request / elapsed:,.0f} spans/s, each acknowledged once durable)"
        )
        console.print(
            f"warehouse holds {totals['spans']:,} spans in {totals['traces']:,} traces, "
            f"{totals['errors']:,} with errors"
        )
        table = Table("agent", "spans", "error rate", "p50 ms", "p99 ms", "input tokens", title="Agents")
        for row in agents.iter_rows(named=True):
            table.add_row(
                row["agent"],
                f"{row['spans']:,}",
                f"{row['error_rate']:.2%}",
                f"{row['p50_ms']:.0f}",
                f"{row['p99_ms']:.0f}",
                f"{row['input_tokens']:,}",
            )
        console.print(table)
        hint = 'omium sql "SELECT SpanName, count() FROM otel_traces FINAL GROUP BY 1"'
        console.print(f"query it: [bold]{hint}[/bold] (server {url})")
        if serve:
            console.print("serving; Ctrl-C stops")
            with contextlib.suppress(KeyboardInterrupt):
                while True:
                    time.sleep(1)
