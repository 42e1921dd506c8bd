"""``omium runs pause | resume | cancel RUN``: an operator's actions from the command line, on runs
of a server's control database, with the reason of a refusal on stderr and exit code 2."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from omium import workflow
from omium.cli.main import app
from omium.collector.server import RunningServer
from omium.recovery.worker import submit
from omium.warehouse import ClickHouseWarehouse

runner = CliRunner()


@workflow(name="cli_act_flow")
def cli_act_flow(n: int) -> int:
    return n


def test_pause_resume_and_cancel_from_the_cli(
    server: RunningServer, warehouse: ClickHouseWarehouse, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = {
        "OMIUM_SERVER_URL": server.url,
        "OMIUM_API_TOKEN": "test-token",
        "OMIUM_DATABASE": warehouse.database,
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    store = server.state.store
    submit(store, "cli_act_flow", 1, run_id="cli-q")
    paused = runner.invoke(app, ["runs", "pause", "cli-q", "--actor", "ops", "--reason", "hold it"])
    assert paused.exit_code == 0, paused.output
    assert "run cli-q paused" in paused.stdout and store.get_run("cli-q").status == "paused"
    resumed = runner.invoke(app, ["runs", "resume", "cli-q"])
    assert resumed.exit_code == 0 and "queued to resume" in resumed.stdout, resumed.output
    cancelled = runner.invoke(app, ["runs", "cancel", "cli-q", "--actor", "ops"])
    assert cancelled.exit_code == 0 and "run cli-q cancelled" in cancelled.stdout, cancelled.output
    assert store.get_run("cli-q").status == "cancelled"
    events = [(e.kind, e.actor) for e in store.events("cli-q")]
    assert events == [("paused", "ops"), ("resumed", "cli"), ("cancelled", "ops")]
    assert "hold it" in store.events("cli-q")[0].reason

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "omium.cli.main", "runs", *args],
            env=os.environ | env,
            capture_output=True,
            text=True,
            timeout=120,
        )

    refused = cli("resume", "cli-q")
    assert refused.returncode == 2 and "is cancelled (it has finished)" in refused.stderr, refused.stderr
    unknown = cli("pause", "nope")
    assert unknown.returncode == 2 and "no run 'nope'" in unknown.stderr, unknown.stderr
