"""``omium up``: the server and its companions as child processes, stopped together."""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass

import typer
from rich.console import Console

from omium.config import Settings


@dataclass(frozen=True)
class Child:
    """A process ``omium up`` runs: its name, command, and the URL it serves."""

    name: str
    argv: list[str]
    url: str


def children(settings: Settings) -> list[Child]:
    """The processes of a local stack; companions whose code is not installed are left out."""
    python = sys.executable
    out = [Child("server", [python, "-m", "omium.cli.main", "serve"], settings.server_url)]
    if importlib.util.find_spec("streamlit") and _has("omium.dashboards.console.streamlit_app"):
        out.append(
            Child(
                "console",
                [python, "-m", "omium.cli.main", "console"],
                f"http://127.0.0.1:{settings.console_port}",
            )
        )
    if importlib.util.find_spec("dagster") and _has("omium.pipelines.definitions"):
        out.append(
            Child(
                "dagster",
                [
                    python,
                    "-m",
                    "dagster",
                    "dev",
                    "-m",
                    "omium.pipelines.definitions",
                    "-p",
                    str(settings.dagster_port),
                ],
                f"http://127.0.0.1:{settings.dagster_port}",
            )
        )
    if _has("omium.worker"):
        out.append(Child("worker", [python, "-m", "omium.cli.main", "worker"], "-"))
    return out


def _has(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        return False


def up() -> None:
    """Start the server, console, Dagster and worker together; Ctrl-C stops them all."""
    settings = Settings.from_env()
    console = Console()
    procs: list[tuple[Child, subprocess.Popen[bytes]]] = []
    for child in children(settings):
        proc = subprocess.Popen(child.argv, env=os.environ.copy(), start_new_session=True)
        procs.append((child, proc))
        console.print(f"[green]started[/green] {child.name:<8} pid {proc.pid:<7} {child.url}")
    console.print("Ctrl-C stops everything.")
    try:
        while True:
            for child, proc in procs:
                code = proc.poll()
                if code is not None:
                    console.print(f"[red]{child.name} exited with {code}[/red]; stopping the rest")
                    raise KeyboardInterrupt
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        for _, proc in procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 15
        for _, proc in procs:
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
    raise typer.Exit(0)
