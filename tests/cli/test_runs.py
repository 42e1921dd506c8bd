"""``omium runs`` against runs recorded in a server's control database, reached through the server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

import omium
from omium import Checkpoint, tool, workflow
from omium.cli.main import app
from omium.collector.server import RunningServer
from omium.sdk import tracing
from omium.warehouse import ClickHouseWarehouse

runner = CliRunner()


def _cli(cwd: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """``omium ARGS`` as a real process in ``cwd`` (where the test's workflow module lives)."""
    return subprocess.run(
        [sys.executable, "-m", "omium.cli.main", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@tool
def verify(customer: str) -> str:
    return f"ok {customer}"


@tool
def explode() -> None:
    raise RuntimeError("APR 0.0% outside 2.5%-8.5%")


@workflow(name="cli_onboarding")
def onboarding(customer: str, fail: bool) -> str:
    with Checkpoint("kyc_done"):
        result = verify(customer)
    if fail:
        explode()
    return result


@pytest.fixture
def recorded(server: RunningServer, warehouse: ClickHouseWarehouse, monkeypatch: pytest.MonkeyPatch) -> None:
    omium.init(store=server.state.store, tracer_provider=None)
    tracing.configure(None)
    omium.run(onboarding, "jane", False, run_id="good-run")
    with pytest.raises(RuntimeError):
        omium.run(onboarding, "ann", True, run_id="bad-run")
    monkeypatch.setenv("OMIUM_SERVER_URL", server.url)
    monkeypatch.setenv("OMIUM_API_TOKEN", "test-token")
    monkeypatch.setenv("OMIUM_DATABASE", warehouse.database)


def test_runs_list(recorded: None) -> None:
    result = runner.invoke(app, ["runs", "list", "--json"])
    assert result.exit_code == 0, result.output
    runs = {r["run_id"]: r["status"] for r in json.loads(result.stdout)}
    assert runs == {"good-run": "completed", "bad-run": "failed"}
    result = runner.invoke(app, ["runs", "list", "--status", "failed", "--json"])
    assert [r["run_id"] for r in json.loads(result.stdout)] == ["bad-run"]
    result = runner.invoke(app, ["runs", "list", "--status", "weird"])
    assert result.exit_code == 2


def test_runs_show(recorded: None) -> None:
    result = runner.invoke(app, ["runs", "show", "bad-run"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "failed" in result.output and "APR 0.0%" in result.output
    assert "verify" in result.output and "explode" in result.output and "kyc_done" in result.output


def test_unknown_run_exits_2(recorded: None, server: RunningServer, warehouse: ClickHouseWarehouse) -> None:
    env = os.environ | {
        "OMIUM_SERVER_URL": server.url,
        "OMIUM_API_TOKEN": "test-token",
        "OMIUM_DATABASE": warehouse.database,
    }
    result = subprocess.run(
        [sys.executable, "-m", "omium.cli.main", "runs", "show", "no-such-run"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "no run 'no-such-run'" in result.stderr


def test_replay_verify_from_the_command_line(tmp_path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "flows.py").write_text(
        "import omium\n"
        "from omium import tool, workflow\n"
        "@tool\n"
        "def greet(name):\n    return 'hi ' + name\n"
        "@tool\n"
        "def shout(name):\n    return name.upper()\n"
        "@workflow\n"
        "def hello(name):\n    return greet(name)\n"
        "@workflow\n"
        "def changed(name):\n    return shout(name)\n"
        "if __name__ == '__main__':\n    omium.run(hello, 'jane', run_id='cli-replay')\n"
    )
    env = os.environ | {"OMIUM_HOME": str(tmp_path / "home"), "OMIUM_SERVER_URL": "http://127.0.0.1:9"}
    subprocess.run([sys.executable, "flows.py"], cwd=tmp_path, env=env, check=True, timeout=120)
    same = _cli(tmp_path, env, "replay", "cli-replay", "--app", "flows:hello")
    assert same.returncode == 0, same.stderr
    assert "identical (1 recorded calls replayed)" in same.stdout
    diverged = _cli(tmp_path, env, "replay", "cli-replay", "--app", "flows:changed")
    assert diverged.returncode == 1
    assert "diverged" in diverged.stdout and "shout" in diverged.stdout
    unknown = _cli(tmp_path, env, "replay", "nope", "--app", "flows:hello")
    assert unknown.returncode == 2 and "no run 'nope'" in unknown.stderr


def test_rollback_and_resume_from_the_command_line(tmp_path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "flaky.py").write_text(
        "import os, omium\n"
        "from omium import Checkpoint, tool, workflow\n"
        "@tool\n"
        "def step_one(x):\n    print('ran step_one', flush=True)\n    return x + 1\n"
        "@tool\n"
        "def step_two(x):\n"
        "    if os.environ.get('BROKEN'):\n        raise RuntimeError('broken')\n"
        "    return x * 10\n"
        "@workflow\n"
        "def flow(x):\n"
        "    with Checkpoint('one'):\n        y = step_one(x)\n"
        "    return step_two(y)\n"
        "if __name__ == '__main__':\n    omium.run(flow, 1, run_id='cli-rb')\n"
    )
    env = os.environ | {"OMIUM_HOME": str(tmp_path / "home"), "OMIUM_SERVER_URL": "http://127.0.0.1:9"}
    first = subprocess.run(
        [sys.executable, "flaky.py"],
        cwd=tmp_path,
        env=env | {"BROKEN": "1"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert first.returncode != 0 and "ran step_one" in first.stdout
    rolled = _cli(tmp_path, env, "rollback", "cli-rb", "--to", "one")
    assert rolled.returncode == 0, rolled.stderr
    resumed = _cli(tmp_path, env, "resume", "cli-rb", "--app", "flaky:flow")
    assert resumed.returncode == 0, resumed.stderr
    assert "completed: 20" in resumed.stdout
    assert "ran step_one" not in resumed.stdout  # before the checkpoint nothing ran again
    missing = _cli(tmp_path, env, "rollback", "cli-rb", "--to", "nope")
    assert missing.returncode == 2 and "no checkpoint 'nope'" in missing.stderr


def test_fork_from_the_command_line(tmp_path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "branchy.py").write_text(
        "import omium\n"
        "from omium import Checkpoint, agent, tool, workflow\n"
        "from omium.sdk.branching import agent_config\n"
        "@tool\n"
        "def base(x):\n    print('ran base', flush=True)\n    return x\n"
        "@agent(config={'prompt': 'plain'})\n"
        "def writer(x):\n    return agent_config()['prompt'] + ':' + str(x)\n"
        "@workflow\n"
        "def flow(x):\n"
        "    with Checkpoint('based'):\n        y = base(x)\n"
        "    return writer(y)\n"
        "if __name__ == '__main__':\n    print(omium.run(flow, 7, run_id='cli-parent'))\n"
    )
    env = os.environ | {"OMIUM_HOME": str(tmp_path / "home"), "OMIUM_SERVER_URL": "http://127.0.0.1:9"}
    first = subprocess.run(
        [sys.executable, "branchy.py"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )
    assert first.returncode == 0 and "plain:7" in first.stdout, first.stderr
    forked = _cli(
        tmp_path,
        env,
        "fork",
        "cli-parent",
        "--from",
        "based",
        "--set",
        "writer.prompt=fixed",
        "--run-id",
        "cli-branch",
    )
    assert forked.returncode == 0, forked.stderr
    resumed = _cli(tmp_path, env, "resume", "cli-branch", "--app", "branchy:flow")
    assert resumed.returncode == 0, resumed.stderr
    assert "completed: 'fixed:7'" in resumed.stdout and "ran base" not in resumed.stdout
    refused = _cli(tmp_path, env, "fork", "cli-parent", "--from", "based", "--set", "writer.core_logic=x")
    assert refused.returncode == 2 and "may be edited" in refused.stderr
