"""The ``omium`` command against a real server (in-process) and as a real subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from omium.cli.main import app
from omium.collector import sample
from omium.collector.server import RunningServer
from omium.warehouse import ClickHouseWarehouse
from tests.conftest import free_port

runner = CliRunner()


@pytest.fixture
def cli_env(server: RunningServer, monkeypatch: pytest.MonkeyPatch) -> RunningServer:
    monkeypatch.setenv("OMIUM_SERVER_URL", server.url)
    monkeypatch.setenv("OMIUM_API_TOKEN", "test-token")
    return server


def test_version() -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.output.startswith("omium ")


def test_sql_formats_and_parameters(cli_env: RunningServer, warehouse: ClickHouseWarehouse) -> None:
    warehouse.command(
        "INSERT INTO omium_runs (run_id, workflow) VALUES ('r1', 'onboarding'), ('r2', 'billing')"
    )
    query = "SELECT run_id, workflow FROM omium_runs WHERE workflow = {w:String} ORDER BY run_id"
    result = runner.invoke(app, ["sql", query, "--param", "w=onboarding", "--format", "json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == [{"run_id": "r1", "workflow": "onboarding"}]
    result = runner.invoke(app, ["sql", "SELECT run_id FROM omium_runs ORDER BY run_id", "-f", "csv"])
    assert result.stdout.splitlines() == ["run_id", "r1", "r2"]
    result = runner.invoke(app, ["sql", "SELECT count() AS n FROM omium_runs"])
    assert "2" in result.stdout


def test_sql_write_through_read_only_door_is_a_clear_error(cli_env: RunningServer) -> None:
    result = runner.invoke(app, ["sql", "DROP TABLE omium_runs"])
    assert result.exit_code != 0
    assert "read-only" in str(result.exception) or "read-only" in result.output


def test_sql_bad_param_names_itself(cli_env: RunningServer) -> None:
    result = runner.invoke(app, ["sql", "SELECT 1", "--param", "oops"])
    assert result.exit_code != 0
    assert "NAME=VALUE" in str(result.exception)


def test_status_reports_the_warehouse(cli_env: RunningServer) -> None:
    import httpx

    httpx.post(
        f"{cli_env.url}/v1/traces",
        content=sample.requests(1, 30)[0],
        headers={"content-type": "application/x-protobuf"},
    ).raise_for_status()
    result = runner.invoke(app, ["status"])
    assert result.exit_code == 0, result.output
    assert "spans stored" in result.output and "30" in result.output


def test_status_without_server_exits_1(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OMIUM_SERVER_URL", "http://127.0.0.1:9")
    result = runner.invoke(app, ["status"])
    assert result.exit_code == 1
    assert "no Omium server" in result.output


@pytest.mark.integration
def test_demo_runs_end_to_end_on_the_embedded_default(tmp_path: Path) -> None:
    env = os.environ | {
        "OMIUM_HOME": str(tmp_path),
        "OMIUM_HTTP_PORT": str(free_port()),
        "OMIUM_GRPC_PORT": str(free_port()),
        "COLUMNS": "200",
    }
    env["OMIUM_SERVER_URL"] = f"http://127.0.0.1:{env['OMIUM_HTTP_PORT']}"
    result = subprocess.run(
        [sys.executable, "-m", "omium.cli.main", "demo-traces", "--requests", "6"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr + result.stdout
    assert "warehouse holds 6,000 spans" in result.stdout
    assert "kyc_verification_agent" in result.stdout
    assert (tmp_path / "warehouse").is_dir()


@pytest.mark.integration
def test_embedded_commands_keep_their_spans_and_print_no_export_error(tmp_path: Path) -> None:
    """Each command of an embedded home writes its spans before its warehouse closes (they were
    lost with "could not write N spans ... The client has been closed" after the output)."""
    env = os.environ | {"OMIUM_HOME": str(tmp_path), "OMIUM_SERVER_URL": f"http://127.0.0.1:{free_port()}"}

    def omium(*args: str) -> str:
        result = subprocess.run(
            [sys.executable, "-m", "omium.cli.main", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert result.returncode == 0, result.stderr + result.stdout
        assert "could not write" not in result.stderr and "Traceback" not in result.stderr, result.stderr
        return result.stdout

    def spans(run_id: str) -> int:
        rows = json.loads(
            omium(
                "sql",
                "-f",
                "json",
                "SELECT count() AS n FROM otel_traces WHERE RunId = {r:String}",
                "-p",
                f"r={run_id}",
            )
        )
        return int(rows[0]["n"])

    omium("demo", "--executions", "6")
    rows = json.loads(
        omium(
            "sql",
            "-f",
            "json",
            "SELECT run_id, name FROM omium_checkpoints FINAL ORDER BY run_id, seq LIMIT 1",
        )
    )
    run_id, checkpoint = rows[0]["run_id"], rows[0]["name"]
    before = spans(run_id)
    assert before > 0
    omium("rollback", run_id, "--to", checkpoint)
    omium("resume", run_id, "--app", "omium.examples.company_x.workflow:onboard_customer")
    assert spans(run_id) > before  # the resumed execution's spans, written as the command ended


def test_main_turns_omium_errors_into_exit_2(monkeypatch: pytest.MonkeyPatch) -> None:
    env = os.environ | {"OMIUM_HTTP_PORT": "not-a-port"}
    result = subprocess.run(
        [sys.executable, "-m", "omium.cli.main", "serve"], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2
    assert "OMIUM_HTTP_PORT" in result.stderr


def test_serve_on_a_taken_port_is_a_clear_error(tmp_path: Path) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        env = os.environ | {
            "OMIUM_HOME": str(tmp_path),
            "OMIUM_HTTP_PORT": str(taken.getsockname()[1]),
            "OMIUM_GRPC_PORT": str(free_port()),
        }
        result = subprocess.run(
            [sys.executable, "-m", "omium.cli.main", "serve"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode == 2
    assert "cannot start the server" in result.stderr
