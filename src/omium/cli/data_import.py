"""``omium import``: failure data (who-and-when, tau-bench) and workflows (langgraph, crewai)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from omium.importers import ImportedRun

app = typer.Typer(
    help="Import multi-agent runs (with or without labels) as traces; inspect workflows.",
    no_args_is_help=True,
)
SUBSET = typer.Option(None, "--subset", help="Name of this set in run ids (default: the folder's name).")


def _write(runs: list[ImportedRun]) -> None:
    from omium import importers
    from omium.config import Settings
    from omium.warehouse import connect

    with connect(Settings.from_env()) as warehouse:
        counts = importers.write(warehouse, runs)
    failed = sum(1 for r in runs if r.failed)
    typer.echo(
        f"imported {counts['runs']:,} runs ({counts['labelled']:,} labelled, {failed:,} failed) "
        f"as {counts['spans']:,} spans"
    )


@app.command("who-and-when")
def who_and_when(
    directory: Path = typer.Argument(..., help="A folder of Who&When JSON files."),
    subset: str | None = SUBSET,
) -> None:
    """Who&When-format runs: one trace per run, one span per step; the mistake agent and step, when
    a file has them, as annotations (omium_ground_truth)."""
    from omium.importers import read_who_and_when

    _write(read_who_and_when(directory, subset))


@app.command("tau-bench")
def tau_bench(
    file: Path = typer.Argument(..., help="A tau-bench trajectories JSON file."),
    subset: str | None = SUBSET,
) -> None:
    """tau-bench trajectories: one trace per run, one span per message; the reward, when there is
    one, as the outcome (omium_ground_truth)."""
    from omium.importers import read_tau_bench

    _write(read_tau_bench(file, subset))


@app.command("langgraph")
def langgraph(
    spec: str = typer.Argument(..., help="MODULE:GRAPH, a StateGraph or compiled graph."),
    policy: Path = typer.Option(
        Path("omium-policy.yaml"), "--policy", help="Where to write the starter policy."
    ),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing policy file."),
) -> None:
    """Inspect a LangGraph workflow: agents, suggested checkpoints, hand-offs; write a starter policy."""
    from omium.adapters.inspection import inspect_langgraph, load_object

    _report(inspect_langgraph(load_object(spec), name=spec), policy, force)


@app.command("crewai")
def crewai(
    spec: str = typer.Argument(..., help="MODULE:CREW, a crewai.Crew."),
    policy: Path = typer.Option(
        Path("omium-policy.yaml"), "--policy", help="Where to write the starter policy."
    ),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing policy file."),
) -> None:
    """Inspect a CrewAI crew: agents, a checkpoint after each task, hand-offs; write a starter policy."""
    from omium.adapters.inspection import inspect_crewai, load_object

    _report(inspect_crewai(load_object(spec), name=spec), policy, force)


def _report(report: Any, policy: Path, force: bool) -> None:
    """Print what an inspection found and write its starter policy (checked before writing)."""
    from rich.console import Console
    from rich.table import Table

    from omium.errors import ConfigError
    from omium.recovery.policy import Policy

    console = Console()
    console.print(
        f"[bold]{report.name}[/bold] ({report.framework}): {len(report.agents)} agents, "
        f"entry {', '.join(report.entry) or '-'}"
    )
    table = Table("checkpoint suggested", "agent", "hands off to")
    for checkpoint, agent in report.step_rows():
        targets = [f"{h.target}{'?' if h.conditional else ''}" for h in report.handoffs if h.source == agent]
        table.add_row(checkpoint, agent, ", ".join(targets) or "(end)")
    console.print(table)
    if report.reviews:
        console.print(f"review gates suggested: {', '.join(report.reviews)}")
    if policy.exists() and not force:
        raise ConfigError(f"{policy} exists; pass --force to overwrite it")
    text = report.policy_yaml()
    Policy.from_yaml(text, source=str(policy))  # what we write must pass `omium policy check`
    policy.write_text(text)
    console.print(
        f"wrote {policy} (check it with `omium policy check {policy}`); '?' marks a conditional route"
    )
