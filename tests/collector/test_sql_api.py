"""The SQL API: read-only by default, token for writes, parameters bound server-side."""

from __future__ import annotations

import httpx
import pyarrow as pa
import pytest

from omium.collector.server import RunningServer, serving
from omium.config import Settings
from omium.errors import AuthError, ReadOnlyError
from omium.warehouse import ClickHouseWarehouse
from omium.warehouse.remote import RemoteWarehouse, server_answers

TOKEN = {"authorization": "Bearer test-token"}


def _sql(server: RunningServer, body: dict[str, object], **headers: str) -> httpx.Response:
    return httpx.post(f"{server.url}/v1/sql", json=body, headers=headers, timeout=30)


def test_reads_return_arrow(server: RunningServer) -> None:
    response = _sql(server, {"query": "SELECT number AS n FROM numbers(3)"})
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/vnd.apache.arrow.stream"
    assert pa.ipc.open_stream(response.content).read_all().column("n").to_pylist() == [0, 1, 2]


def test_json_on_request(server: RunningServer) -> None:
    response = _sql(server, {"query": "SELECT 1 AS a, 'x' AS b"}, accept="application/json")
    assert response.json() == {"columns": ["a", "b"], "rows": [[1, "x"]]}


@pytest.mark.parametrize(
    "statement",
    [
        "INSERT INTO omium_runs (run_id) VALUES ('x')",
        "DROP TABLE otel_traces",
        "ALTER TABLE omium_runs DELETE WHERE 1",
        "SELECT * FROM file('/etc/passwd', 'LineAsString')",
        "SELECT * FROM url('http://127.0.0.1:9/', 'LineAsString')",
    ],
)
def test_writes_through_the_read_only_door_are_403(
    server: RunningServer, warehouse: ClickHouseWarehouse, statement: str
) -> None:
    response = _sql(server, {"query": statement}, **TOKEN)  # even with the token: readonly is the default
    assert response.status_code == 403
    assert "read-only" in response.json()["error"]
    assert warehouse.scalar("SELECT count() FROM omium_runs") == 0
    assert (
        warehouse.scalar(
            "SELECT count() FROM system.tables WHERE database = {d:String} AND name = 'otel_traces'",
            {"d": warehouse.database},
        )
        == 1
    )


def test_writes_need_the_token(server: RunningServer, warehouse: ClickHouseWarehouse) -> None:
    write = {
        "query": "INSERT INTO omium_runs (run_id) VALUES ({r:String})",
        "parameters": {"r": "w"},
        "readonly": False,
    }
    assert _sql(server, write).status_code == 401
    assert _sql(server, write, authorization="Bearer wrong").status_code == 401
    assert _sql(server, write, **TOKEN).status_code == 200
    assert warehouse.scalar("SELECT count() FROM omium_runs WHERE run_id = 'w'") == 1


def test_a_server_without_a_configured_token_makes_one(
    settings: Settings, warehouse: ClickHouseWarehouse
) -> None:
    local = settings.with_(api_token=None)
    with serving(local, warehouse) as running:
        write = {"query": "INSERT INTO omium_runs (run_id) VALUES ('x')", "readonly": False}
        assert _sql(running, write).status_code == 401
        token = local.token_path.read_text()
        assert _sql(running, write, authorization=f"Bearer {token}").status_code == 200
    local.token_path.unlink()


def test_injection_through_parameters_is_inert(server: RunningServer, warehouse: ClickHouseWarehouse) -> None:
    warehouse.command("INSERT INTO omium_runs (run_id) VALUES ('a'), ('b')")
    hostile = "a' OR '1'='1"
    response = _sql(
        server,
        {
            "query": "SELECT count() AS n FROM omium_runs WHERE run_id = {r:String}",
            "parameters": {"r": hostile},
        },
        accept="application/json",
    )
    assert response.json()["rows"] == [[0]]
    response = _sql(
        server,
        {
            "query": "SELECT count() AS n FROM omium_runs WHERE run_id = {r:String}",
            "parameters": {"r": "a'; DROP TABLE omium_runs; --"},
        },
        accept="application/json",
    )
    assert response.json()["rows"] == [[0]]
    assert warehouse.scalar("SELECT count() FROM omium_runs") == 2


@pytest.mark.parametrize(
    ("body", "status"),
    [
        (b"not json", 400),
        (b'{"q": 1}', 400),
        (b'{"query": "SELEC 1"}', 400),
        (b'{"query": "SELECT 1", "parameters": [1]}', 400),
        (b'{"query": "SELECT * FROM missing"}', 400),
    ],
)
def test_bad_requests_are_400(server: RunningServer, body: bytes, status: int) -> None:
    response = httpx.post(f"{server.url}/v1/sql", content=body, timeout=10)
    assert response.status_code == status
    assert response.json()["error"]


def test_non_loopback_server_needs_the_token_to_read(
    settings: Settings, warehouse: ClickHouseWarehouse
) -> None:
    # Bound to loopback for the test, but configured as if exposed: the read path must ask for the token.
    exposed = settings.with_(host="127.0.0.1")
    with serving(exposed, warehouse) as running:
        object.__setattr__(running.state.settings, "host", "0.0.0.0")
        assert _sql(running, {"query": "SELECT 1"}).status_code == 401
        assert _sql(running, {"query": "SELECT 1"}, **TOKEN).status_code == 200


def _exercise_remote(remote: RemoteWarehouse, stranger: RemoteWarehouse) -> None:
    remote.command("INSERT INTO omium_runs (run_id, workflow) VALUES ({r:String}, 'wf')", {"r": "r1"})
    remote.insert("omium_runs", [["r2", "r3"], ["wf", "wf"]], ["run_id", "workflow"])
    frame = remote.query_df("SELECT run_id FROM omium_runs ORDER BY run_id")
    assert frame["run_id"].to_list() == ["r1", "r2", "r3"]
    with pytest.raises(ReadOnlyError):
        remote.query_df("DROP TABLE omium_runs")
    with pytest.raises(AuthError):
        stranger.command("INSERT INTO omium_runs (run_id) VALUES ('z')")


def test_remote_warehouse(server: RunningServer, warehouse: ClickHouseWarehouse) -> None:
    assert server_answers(server.url)
    with (
        RemoteWarehouse(server.url, token="test-token") as remote,
        RemoteWarehouse(server.url, token="nope") as stranger,
    ):
        _exercise_remote(remote, stranger)  # type: ignore[arg-type]
    assert (
        httpx.post(
            f"{server.url}/v1/insert", params={"table": "omium_runs; DROP"}, content=b"", headers=TOKEN
        ).status_code
        == 400
    )
    assert (
        httpx.post(
            f"{server.url}/v1/insert", params={"table": "nope"}, content=b"", headers=TOKEN
        ).status_code
        == 404
    )
    assert warehouse.scalar("SELECT count() FROM omium_runs") == 3
