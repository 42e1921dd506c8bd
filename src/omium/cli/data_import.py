"""``omium import who-and-when DIR`` and ``omium import tau-bench FILE``."""

from __future__ import annotations

from pathlib import Path

import typer

from omium.importers import ImportedRun

app = typer.Typer(help="Import public multi-agent failure runs as traces with labels.", no_args_is_help=True)


def _write(runs: list[ImportedRun]) -> None:
    from omium import importers
    from omium.config import Settings
    from omium.warehouse import connect

    with connect(Settings.from_env()) as warehouse:
        counts = importers.write(warehouse, runs)
    failed = sum(1 for r in runs if r.failed)
    typer.echo(f"imported {counts['runs']:,} runs ({failed:,} failed) as {counts['spans']:,} spans")


@app.command("who-and-when")
def who_and_when(directory: Path = typer.Argument(..., help="A folder of Who&When JSON files.")) -> None:
    """Who&When runs: one trace per run, one span per step, the mistake agent and step as ground truth."""
    from omium.importers import read_who_and_when

    _write(read_who_and_when(directory))


@app.command("tau-bench")
def tau_bench(file: Path = typer.Argument(..., help="A tau-bench trajectories JSON file.")) -> None:
    """tau-bench trajectories: one trace per run, one span per message, the reward as the outcome."""
    from omium.importers import read_tau_bench

    _write(read_tau_bench(file))
