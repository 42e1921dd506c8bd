"""docker-compose.yml and deploy/ are validated here, since no Docker engine runs on CI."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml
from typer.main import get_command

from omium.cli.main import app

ROOT = Path(__file__).resolve().parent.parent


def _compose() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())  # type: ignore[no-any-return]


def test_compose_has_every_component_with_healthchecks() -> None:
    services = _compose()["services"]
    assert set(services) == {
        "clickhouse",
        "server",
        "worker",
        "console",
        "dagster-webserver",
        "dagster-daemon",
        "grafana",
    }
    for name in ("clickhouse", "server", "console", "dagster-webserver", "grafana"):
        check = services[name]["healthcheck"]
        assert check["test"][0] == "CMD" and check["retries"] > 0, name
    assert services["server"]["depends_on"]["clickhouse"]["condition"] == "service_healthy"
    for name in ("worker", "console"):
        assert services[name]["depends_on"]["server"]["condition"] == "service_healthy"


def test_compose_services_are_well_formed() -> None:
    compose = _compose()
    declared_volumes = set(compose["volumes"])
    for name, service in compose["services"].items():
        assert "image" in service or "build" in service, name
        for port in service.get("ports", []):
            assert port.startswith("127.0.0.1:"), f"{name} publishes {port} beyond loopback"
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (ROOT / source).exists(), f"{name} mounts missing {source}"
            else:
                assert source in declared_volumes, f"{name} uses undeclared volume {source}"
        if "build" in service:
            assert (ROOT / service["build"]["context"] / service["build"]["dockerfile"]).is_file()


def test_omium_services_point_at_clickhouse_with_a_token() -> None:
    services = _compose()["services"]
    for name in ("server", "worker", "console", "dagster-webserver", "dagster-daemon"):
        env = services[name]["environment"]
        assert env["OMIUM_CLICKHOUSE_URL"].endswith("@clickhouse:8123"), name
        assert "OMIUM_API_TOKEN" in env, name
    # The server binds beyond loopback inside its container, which Settings allows only with a token.
    assert "--host" in services["server"]["command"]
    assert ":?" in services["server"]["environment"]["OMIUM_API_TOKEN"]


def test_server_command_exists_in_the_cli() -> None:
    commands = get_command(app).commands  # type: ignore[attr-defined]
    assert "serve" in commands
    dockerfile = (ROOT / "deploy" / "Dockerfile").read_text()
    assert re.search(r'CMD \["omium", "serve"\]', dockerfile)
    assert 'pip install --no-cache-dir ".[all]"' in dockerfile


def test_grafana_datasource_provisioning_matches_the_plugin() -> None:
    provisioning = yaml.safe_load(
        (ROOT / "deploy/grafana/provisioning/datasources/clickhouse.yaml").read_text()
    )
    assert provisioning["apiVersion"] == 1
    source = provisioning["datasources"][0]
    assert source["type"] == "grafana-clickhouse-datasource"
    data = source["jsonData"]
    assert {"host", "port", "protocol", "username", "defaultDatabase"} <= set(data)
    assert data["protocol"] in ("native", "http")
    assert data["traces"] == {
        "defaultDatabase": "omium",
        "defaultTable": "otel_traces",
        "otelEnabled": True,
        "durationUnit": "nanoseconds",
        "traceTimestampTableSuffix": "_trace_id_ts",
    }
    dashboards = yaml.safe_load((ROOT / "deploy/grafana/provisioning/dashboards/omium.yaml").read_text())
    assert dashboards["providers"][0]["type"] == "file"
    grafana = _compose()["services"]["grafana"]
    assert grafana["environment"]["GF_INSTALL_PLUGINS"] == "grafana-clickhouse-datasource"


def test_compose_runs_omium_commands_that_exist() -> None:
    """Every `omium ...` command line in the compose file parses (options included)."""
    from typer.testing import CliRunner

    from omium.cli.main import app

    runner = CliRunner()
    commands = [s["command"] for s in _compose()["services"].values() if s.get("command", [None])[0] == "omium"]
    assert len(commands) >= 3
    for command in commands:
        result = runner.invoke(app, [*command[1:], "--help"])
        assert result.exit_code == 0, f"{command}: {result.output}"
