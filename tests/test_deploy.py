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
        "postgres",
        "server",
        "server-2",
        "worker",
        "console",
        "dagster-webserver",
        "dagster-daemon",
        "grafana",
    }
    for name in ("clickhouse", "postgres", "server", "server-2", "console", "dagster-webserver", "grafana"):
        check = services[name]["healthcheck"]
        assert check["test"][0] == "CMD" and check["retries"] > 0, name
    for name in ("server", "server-2"):
        for store in ("clickhouse", "postgres"):
            assert services[name]["depends_on"][store]["condition"] == "service_healthy", name
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
    for name in ("server", "server-2", "worker", "console", "dagster-webserver", "dagster-daemon"):
        env = services[name]["environment"]
        assert env["OMIUM_CLICKHOUSE_URL"].endswith("@clickhouse:8123"), name
        assert "OMIUM_API_TOKEN" in env, name
    # The servers bind beyond loopback inside their containers, which Settings allows only with a token.
    for name in ("server", "server-2"):
        assert "--host" in services[name]["command"]
        assert ":?" in services[name]["environment"]["OMIUM_API_TOKEN"]


def test_server_command_exists_in_the_cli() -> None:
    commands = get_command(app).commands  # type: ignore[attr-defined]
    assert "serve" in commands
    dockerfile = (ROOT / "deploy" / "Dockerfile").read_text()
    assert re.search(r'CMD \["omium", "serve"\]', dockerfile)
    assert re.search(r'pip install --no-cache-dir "\.\[all(,[\w-]+)*\]"', dockerfile)


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
    # The plugin's settings are strings (pkg/plugin/settings.go CustomSetting): FINAL on every query.
    assert data["customSettings"] == [{"setting": "final", "value": "1"}]
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
    commands = [
        s["command"] for s in _compose()["services"].values() if s.get("command", [None])[0] == "omium"
    ]
    assert len(commands) >= 3
    for command in commands:
        result = runner.invoke(app, [*command[1:], "--help"])
        assert result.exit_code == 0, f"{command}: {result.output}"


# Values for the compose file's required variables, as an operator would set them.
COMPOSE_ENV = {
    "OMIUM_API_TOKEN": "token-1",
    "CLICKHOUSE_PASSWORD": "ch-secret",
    "POSTGRES_PASSWORD": "pg-secret",
}


def _interpolated(value: str) -> str:
    """``value`` with ``${VAR}``, ``${VAR:?message}`` and ``${VAR:-default}`` substituted the way
    compose does, from :data:`COMPOSE_ENV` (a required variable that is unset fails)."""

    def substitute(match: re.Match[str]) -> str:
        name, operator, word = match.group(1), match.group(2) or "", match.group(3) or ""
        if name in COMPOSE_ENV:
            return COMPOSE_ENV[name]
        assert operator != ":?", f"{name} is required: {word}"
        return word if operator == ":-" else ""

    return re.sub(r"\$\{(\w+)(:\?|:-)?([^}]*)\}", substitute, value)


def test_postgres_is_the_control_database_with_its_password_required() -> None:
    services = _compose()["services"]
    postgres = services["postgres"]
    assert postgres["image"].startswith("postgres:")
    env = postgres["environment"]
    assert ":?" in env["POSTGRES_PASSWORD"]  # no default password
    assert postgres["healthcheck"]["test"][:2] == ["CMD", "pg_isready"]
    assert any(v.startswith("postgres-data:/var/lib/postgresql") for v in postgres["volumes"])
    # Each Omium process pools up to 2 x (8 + 16) connections (sdk/sql/engine.py): two servers, a
    # worker and the console need more than PostgreSQL's default of 100.
    command = postgres["command"]
    limit = int(command[command.index("-c") + 1].removeprefix("max_connections="))
    assert limit >= 4 * 2 * (8 + 16)
    assert "ports" not in postgres  # reachable from the compose network only


def test_both_servers_worker_and_console_share_one_postgres_control_database() -> None:
    from omium.config import Settings
    from omium.sdk.sql.engine import control_url

    services = _compose()["services"]
    postgres = services["postgres"]["environment"]
    urls = set()
    for name in ("server", "server-2", "worker", "console"):
        service = services[name]
        env = {k: _interpolated(str(v)) for k, v in service["environment"].items()}
        settings = Settings.from_env(env)  # the URLs are ones Omium accepts
        url = control_url(settings.control_database)
        assert url.get_backend_name() == "postgresql", name
        assert (url.host, url.port, url.database) == ("postgres", 5432, postgres["POSTGRES_DB"]), name
        assert url.username == postgres["POSTGRES_USER"], name
        assert url.password == COMPOSE_ENV["POSTGRES_PASSWORD"], name
        assert settings.clickhouse_url is not None and not settings.embedded, name
        urls.add((settings.control_database, settings.clickhouse_url, settings.database))
        depends = service["depends_on"]
        assert "postgres" in depends or "server" in depends, name  # directly or through the server
    assert len(urls) == 1  # one deployment: one control database, one ClickHouse, one database


def test_two_servers_on_their_own_ports_and_homes() -> None:
    services = _compose()["services"]
    first, second = services["server"], services["server-2"]
    assert first["command"] == second["command"] == ["omium", "serve", "--host", "0.0.0.0"]
    assert first["environment"] == second["environment"]
    published = [p.rsplit(":", 2)[1] for p in first["ports"] + second["ports"]]
    assert sorted(published) == ["4317", "4318", "4327", "4328"]  # the existing ports stay the first's
    assert [p for p in first["ports"] if p.endswith(":4318")] == ["127.0.0.1:4318:4318"]
    # Each keeps its span spool and token in a home of its own (a shared spool would mix two writers).
    homes = [v for s in (first, second) for v in s["volumes"] if v.endswith(":/var/lib/omium")]
    assert len(homes) == 2 and len({h.split(":")[0] for h in homes}) == 2


def test_the_image_has_the_postgresql_driver() -> None:
    """The compose file's control URL is postgresql://: the image must install the driver."""
    import tomllib

    dockerfile = (ROOT / "deploy" / "Dockerfile").read_text()
    installing = re.search(r'pip install --no-cache-dir "\.\[([^\]]+)\]"', dockerfile)
    assert installing is not None
    extras = set(installing.group(1).split(","))
    optional = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]

    def requirements(extra: str) -> set[str]:
        found: set[str] = set()
        for requirement in optional[extra]:
            nested = re.fullmatch(r"omium\[(.+)\]", requirement)
            found |= requirements(nested.group(1)) if nested else {requirement}
        return found

    installed = set().union(*(requirements(extra) for extra in extras))
    assert any(r.startswith("psycopg") for r in installed), sorted(extras)
