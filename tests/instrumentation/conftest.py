"""Fixtures of the instrumentation tests: the fake OpenAI server, and a runner of scenarios.

Each scenario (``scenarios.py``) runs in a child process of its own, in the environment that has
its package: the main one, or ``.venv-openllmetry-legacy`` for the legacy OpenLLMetry release
(it pins an older ``openai``). Its spans and logs reach the test's real server over OTLP/HTTP and
land in the test's own database; the test then builds the normalised spans as the pipeline does.
"""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from omium.collector.server import RunningServer
from omium.pipelines import spans
from omium.warehouse import ClickHouseWarehouse
from tests.instrumentation import fake_openai

ROOT = Path(__file__).resolve().parents[2]
SCENARIOS = Path(__file__).with_name("scenarios.py")
LEGACY_PYTHON = ROOT / ".venv-openllmetry-legacy" / "bin" / "python"

Runner = Callable[..., list[dict[str, Any]]]


@pytest.fixture
def openai_url() -> Iterator[str]:
    """The base URL of a fake OpenAI server on loopback."""
    with fake_openai.serving() as (url, _requests):
        yield url


@pytest.fixture
def run_scenario(server: RunningServer, warehouse: ClickHouseWarehouse, openai_url: str) -> Runner:
    """Run a scenario in a child process, then normalise today's spans; returns their rows."""

    def run(name: str, *, python: Path | str = sys.executable, **env: str) -> list[dict[str, Any]]:
        child_env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "TRACELOOP_"))}
        child_env.update({"PYTHONPATH": "", "OPENAI_API_KEY": "test", "TRACELOOP_TELEMETRY": "false", **env})
        done = subprocess.run(
            [str(python), str(SCENARIOS), name, server.url, openai_url],
            env=child_env,
            capture_output=True,
            text=True,
            timeout=240,
            cwd=ROOT,
        )
        assert done.returncode == 0, done.stderr[-4000:]
        if os.environ.get("OMIUM_TEST_SHOW_CHILD"):
            print(done.stdout, done.stderr)
        day = dt.datetime.now(dt.UTC).date()
        spans.normalise_day(warehouse, day)
        return list(spans.load_day(warehouse, day).iter_rows(named=True))

    return run
