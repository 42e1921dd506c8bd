"""``omium up``: the server and its companions as child processes, stopped together."""

from __future__ import annotations

import contextlib
import importlib.util
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field

import typer
from rich.console import Console

from omium.config import Settings
from omium.errors import OmiumError


@dataclass(frozen=True)
class Child:
    """A process ``omium up`` runs: its name, command, and the URL it serves."""

    name: str
    argv: list[str]
    url: str
    env: dict[str, str] = field(default_factory=dict)


DEFAULT_WORKER_APP = "omium.examples.company_x.workflow"


def children(settings: Settings, worker_apps: list[str] | None = None) -> list[Child]:
    """The processes of a local stack; companions whose code is not installed are left out.

    One worker per module in ``worker_apps`` (default: the Company X example, so the demo's
    paused runs can be reviewed and resumed from the console).
    """
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
                # Dagster keeps its runs, schedules and the sensor's cursor here, across restarts.
                {"DAGSTER_HOME": str((settings.home / "dagster").resolve())},
            )
        )
    for app in worker_apps if worker_apps is not None else [DEFAULT_WORKER_APP]:
        out.append(Child("worker", [python, "-m", "omium.cli.main", "worker", app], app))
    return out


def _has(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        return False


def _wait_for_server(settings: Settings, procs: list[tuple[Child, subprocess.Popen[bytes]]]) -> None:
    from omium.warehouse.remote import server_answers

    deadline = time.monotonic() + 120
    while not server_answers(settings.server_url):
        if any(proc.poll() is not None for _, proc in procs):
            return  # the server died: the loop below reports it and stops the rest
        if time.monotonic() > deadline:
            raise OmiumError(f"the server did not answer at {settings.server_url} within 120 s")
        time.sleep(0.2)


def _stop_on_signal(signum: int, frame: object) -> None:
    # SIGTERM (docker, systemd, Kubernetes) and SIGHUP end `omium up` the way Ctrl-C does, through
    # the `finally` that stops every child; their default action would kill this process alone.
    raise KeyboardInterrupt


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
GRACE_SECONDS = 15.0


def stop_children(procs: list[subprocess.Popen[bytes]], grace: float = GRACE_SECONDS) -> None:
    """SIGTERM each child's process group, wait up to ``grace`` seconds, then SIGKILL whatever is
    left, grandchildren included (Dagster's webserver, daemon and code server)."""
    import psutil

    descendants: list[psutil.Process] = []
    for proc in procs:
        with contextlib.suppress(psutil.Error):  # a child already gone has no descendants to list
            descendants += psutil.Process(proc.pid).children(recursive=True)
    for proc in procs:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    for proc in procs:
        try:
            proc.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
    _, alive = psutil.wait_procs(descendants, timeout=max(0.1, deadline - time.monotonic()))
    for leftover in alive:
        with contextlib.suppress(psutil.Error):
            leftover.kill()
    psutil.wait_procs(alive, timeout=5)


def up(
    worker: list[str] = typer.Option(
        None, "--worker", help=f"MODULE[:WORKFLOW] a worker hosts (repeatable; default {DEFAULT_WORKER_APP})."
    ),
) -> None:
    """Start the server, console, Dagster and workers together; Ctrl-C stops them all."""
    settings = Settings.from_env()
    console = Console()
    procs: list[tuple[Child, subprocess.Popen[bytes]]] = []
    os.umask(0o077)  # the warehouse, control database and Dagster's home are for this user only
    for signum in STOP_SIGNALS[1:]:
        signal.signal(signum, _stop_on_signal)
    try:
        for child in children(settings, worker or None):
            if child.name != "server":
                # Companions reach the warehouse through the server: in embedded mode only one
                # process may open it, so none may start before the server answers.
                _wait_for_server(settings, procs)
            # A stop signal between starting a child and noting it would orphan it: hold them.
            signal.pthread_sigmask(signal.SIG_BLOCK, set(STOP_SIGNALS))
            try:
                if "DAGSTER_HOME" in child.env:
                    os.makedirs(child.env["DAGSTER_HOME"], exist_ok=True)
                proc = subprocess.Popen(child.argv, env=os.environ | child.env, start_new_session=True)
                procs.append((child, proc))
            finally:
                signal.pthread_sigmask(signal.SIG_UNBLOCK, set(STOP_SIGNALS))
            console.print(f"[green]started[/green] {child.name:<8} pid {proc.pid:<7} {child.url}")
        console.print("Ctrl-C (or SIGTERM) stops everything.")
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
        # A second signal while stopping must not abandon the children half-way.
        for signum in STOP_SIGNALS:
            signal.signal(signum, signal.SIG_IGN)
        stop_children([proc for _, proc in procs])
    raise typer.Exit(0)
