"""``omium console``: the on-call console (Streamlit) on the configured host and console port."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import typer

from omium.config import Settings
from omium.errors import ConfigError


def console(
    port: int = typer.Option(None, help="Port (default OMIUM_CONSOLE_PORT, 8501)."),
    host: str = typer.Option(
        "127.0.0.1",
        help="Address to bind. The console has no login of its own and acts with the API token: "
        "bind beyond loopback only behind an authenticating proxy (or in a container whose port "
        "is published on loopback).",
    ),
) -> None:
    """Serve the console; it reads the warehouse through the Omium server (or ClickHouse directly)."""
    try:
        import streamlit  # noqa: F401
    except ImportError:
        raise ConfigError("the console needs its extra: pip install 'omium[console]'") from None
    settings = Settings.from_env()
    app = Path(__file__).resolve().parents[1] / "dashboards" / "console" / "streamlit_app.py"
    argv = [
        sys.executable, "-m", "streamlit", "run", str(app),
        "--server.address", host,
        "--server.port", str(port or settings.console_port),
        "--server.headless", "true",
        "--browser.gatherUsageStats", "false",
        "--server.fileWatcherType", "none",
    ]  # fmt: skip
    # exec, not a child: a signal to `omium console` (from omium up, or the demo) reaches Streamlit.
    os.execve(sys.executable, argv, os.environ.copy())
