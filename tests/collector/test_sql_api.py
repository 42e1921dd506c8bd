"""The SQL API: reads checked and limited at the door, writes checked too, parameters bound server-side."""

from __future__ import annotations

import datetime as dt
import os
import random
import threading
import time
from pathlib import Path

import httpx
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from omium.collector.server import RunningServer, serving
from omium.config import Settings
from omium.errors import AuthError, NotFoundError, QueryLimitExceeded, ReadOnlyError
from omium.warehouse import ClickHouseWarehouse, Warehouse, console_queries, queries
from omium.warehouse.remote import RemoteWarehouse, server_answers
from omium.warehouse.store import EmbeddedStore, recorded_steps
from tests.conftest import ServerProcess

TOKEN = {"authorization": "Bearer test-token"}
JSON = {"accept": "application/json"}


def _sql(server: RunningServer | ServerProcess, body: dict[str, object], **headers: str) -> httpx.Response:
    return httpx.post(f"{server.url}/v1/sql", json=body, headers=TOKEN | headers, timeout=30)


def _door_queries(warehouse: ClickHouseWarehouse) -> list[str]:
    """Door queries the engine is running now, seen through a trusted session."""
    rows = warehouse.query_rows(
        "SELECT query FROM system.processes WHERE Settings['log_comment'] LIKE 'omium-sql-door-%'"
    )
    return [str(r["query"]) for r in rows]


def test_reads_return_arrow(server: RunningServer) -> None:
    response = _sql(server, {"query": "SELECT number AS n FROM numbers(3)"})
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/vnd.apache.arrow.stream"
    assert pa.ipc.open_stream(response.content).read_all().column("n").to_pylist() == [0, 1, 2]


def test_json_on_request(server: RunningServer) -> None:
    response = _sql(server, {"query": "SELECT 1 AS a, 'x' AS b"}, **JSON)
    assert response.json() == {"columns": ["a", "b"], "types": ["UInt8", "String"], "rows": [[1, "x"]]}


TYPES = """
SELECT toDate('2024-01-02') AS date, toDate32('1900-01-01') AS date32,
       toDateTime('2024-01-02 03:04:05', 'UTC') AS datetime,
       toDateTime64('2024-01-02 03:04:05.123456789', 9, 'UTC') AS datetime64,
       toDecimal64(1.5, 4) AS decimal, toDecimal256('12345678901234567890.123456789', 9) AS decimal256,
       toUUID('486af422-87c1-4766-8e4b-f4d1899b6558') AS uuid, toFixedString('ab', 4) AS fixed,
       unhex('FF61') AS bytes, nan AS nan, inf AS inf, -inf AS ninf, [nan, 1.5] AS nans,
       map('a', 1, 'b', 2) AS map, [[1, 2], []] AS arrays, tuple(1, 'x') AS tuple,
       CAST((1, 'x') AS Tuple(a UInt8, b String)) AS named, CAST(NULL AS Nullable(UInt8)) AS null,
       toIPv4('1.2.3.4') AS ipv4, toIPv6('::1') AS ipv6, CAST('b' AS Enum8('a' = 1, 'b' = 2)) AS enum,
       toLowCardinality('lc') AS lowcard, 18446744073709551615 AS uint64, toInt128(-1) AS int128,
       true AS bool, toFloat32(1.5) AS float32, unhex('EDA080') AS surrogate
"""


def test_json_answers_every_type(server: RunningServer) -> None:
    response = _sql(server, {"query": TYPES}, **JSON)
    assert response.status_code == 200, response.text
    body = response.json()
    row = dict(zip(body["columns"], body["rows"][0], strict=True))
    assert row == {
        "date": "2024-01-02",
        "date32": "1900-01-01",
        "datetime": "2024-01-02T03:04:05Z",
        "datetime64": "2024-01-02T03:04:05.123456789Z",
        "decimal": "1.5",
        "decimal256": "12345678901234567890.123456789",
        "uuid": "486af422-87c1-4766-8e4b-f4d1899b6558",
        "fixed": "ab\x00\x00",
        "bytes": "\ufffda",
        "nan": None,
        "inf": None,
        "ninf": None,
        "nans": [None, 1.5],
        "map": {"a": 1, "b": 2},
        "arrays": [[1, 2], []],
        "tuple": [1, "x"],
        "named": {"a": 1, "b": "x"},
        "null": None,
        "ipv4": "1.2.3.4",
        "ipv6": "::1",
        "enum": "b",
        "lowcard": "lc",
        "uint64": 18446744073709551615,
        "int128": -1,
        "bool": True,
        "float32": 1.5,
        "surrogate": "\ufffd",
    }
    assert dict(zip(body["columns"], body["types"], strict=True))["decimal"] == "Decimal(18, 4)"
    # The same query answers Arrow too.
    assert _sql(server, {"query": TYPES}).status_code == 200


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
    response = _sql(server, {"query": statement})  # even with the token: readonly is the default
    assert response.status_code == 403
    assert response.json()["error"].startswith("refused: ")
    assert warehouse.scalar("SELECT count() FROM omium_runs") == 0
    assert (
        warehouse.scalar(
            "SELECT count() FROM system.tables WHERE database = {d:String} AND name = 'otel_traces'",
            {"d": warehouse.database},
        )
        == 1
    )


def test_the_attacks_of_issue_13_are_refused(
    server: RunningServer, warehouse: ClickHouseWarehouse, tmp_path: Path
) -> None:
    token_file = server.state.settings.token_path
    token_file.write_text("secret-token-text")
    # Reading a file (the API token) with the scalar file().
    stolen = _sql(server, {"query": "SELECT file({p:String})", "parameters": {"p": str(token_file)}}, **JSON)
    assert stolen.status_code == 403
    assert stolen.json()["error"] == (
        "refused: function 'file' is not allowed on this door: it reads the server's files"
    )
    assert "secret-token-text" not in stolen.text
    # Overwriting any file.
    target = tmp_path / "overwritten"
    target.write_text("precious")
    outfile = _sql(server, {"query": f"SELECT 'x' INTO OUTFILE '{target}' TRUNCATE"})
    assert outfile.status_code == 403
    assert "INTO OUTFILE" in outfile.json()["error"]
    assert target.read_text() == "precious"
    # Killing the collector's own statements.
    kill = _sql(server, {"query": "KILL QUERY WHERE 1"})
    assert kill.status_code == 403
    assert "KILL QUERY is not allowed" in kill.json()["error"]
    # A second statement behind the first never runs.
    chained = _sql(server, {"query": "SELECT 1; DROP TABLE omium_runs"})
    assert chained.status_code == 400
    assert "Multi-statements are not allowed" in chained.json()["error"]
    assert warehouse.scalar("SELECT count() FROM omium_runs") == 0
    # Loosening the limits.
    settings_clause = _sql(server, {"query": "SELECT 1 SETTINGS max_execution_time = 0"})
    assert (settings_clause.status_code, settings_clause.json()["error"]) == (
        403,
        "refused: a SETTINGS clause is not allowed on this door",
    )


def test_a_query_past_its_time_limit_is_422(server: RunningServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OMIUM_SQL_MAX_EXECUTION_SECONDS", "1")
    started = time.monotonic()
    response = _sql(server, {"query": "SELECT count() FROM numbers(1e12)"})
    assert time.monotonic() - started < 5
    assert response.status_code == 422
    assert response.json()["limit"] == "time"
    assert "OMIUM_SQL_MAX_EXECUTION_SECONDS" in response.json()["error"]


@pytest.mark.parametrize(
    ("variable", "value", "query", "limit"),
    [
        ("OMIUM_SQL_MAX_MEMORY_BYTES", "50000000", "SELECT groupArray(number) FROM numbers(1e8)", "memory"),
        ("OMIUM_SQL_MAX_RESULT_ROWS", "1000", "SELECT number FROM numbers(2000)", "result"),
        ("OMIUM_SQL_MAX_RESULT_BYTES", "100000", "SELECT toString(number) FROM numbers(100000)", "result"),
    ],
)
def test_a_query_past_its_memory_or_answer_limit_is_422(
    server: RunningServer, monkeypatch: pytest.MonkeyPatch, variable: str, value: str, query: str, limit: str
) -> None:
    monkeypatch.setenv(variable, value)
    response = _sql(server, {"query": query})
    assert response.status_code == 422, response.text
    assert response.json()["limit"] == limit
    assert variable.removesuffix("_ROWS").removesuffix("_BYTES") in response.json()["error"]
    assert _sql(server, {"query": "SELECT 1"}).status_code == 200


def test_a_client_that_gives_up_cancels_its_query(
    server: RunningServer, warehouse: ClickHouseWarehouse
) -> None:
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(
            f"{server.url}/v1/sql",
            json={"query": "SELECT count() FROM numbers(1e12)"},
            headers=TOKEN,
            timeout=httpx.Timeout(10, read=1),
        )
    deadline = time.monotonic() + 2
    while _door_queries(warehouse) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _door_queries(warehouse) == []
    # Both of the door's sessions answer at once.
    for _ in range(3):
        started = time.monotonic()
        assert _sql(server, {"query": "SELECT 1"}).status_code == 200
        assert time.monotonic() - started < 1


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@pytest.mark.integration
def test_a_served_query_stops_when_its_client_gives_up(server_process: ServerProcess) -> None:
    server_process.start()
    assert server_process.proc is not None
    pid = server_process.proc.pid
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(
            f"{server_process.url}/v1/sql",
            json={"query": "SELECT count() FROM numbers(1e12)"},
            headers=TOKEN,
            timeout=httpx.Timeout(10, read=1),
        )
    started = time.monotonic()
    assert httpx.get(f"{server_process.url}/v1/health", timeout=2).status_code == 200
    assert _sql(server_process, {"query": "SELECT 1 AS one"}, **JSON).json()["rows"] == [[1]]
    assert time.monotonic() - started < 2
    # The query really stopped: two threads counting would burn ~2 s of CPU a second, for 30 s.
    time.sleep(0.5)
    before = _cpu_seconds(pid)
    time.sleep(1)
    assert _cpu_seconds(pid) - before < 0.5


def test_writes_need_the_token(server: RunningServer, warehouse: ClickHouseWarehouse) -> None:
    write = {
        "query": "INSERT INTO omium_runs (run_id) VALUES ({r:String})",
        "parameters": {"r": "w"},
        "readonly": False,
    }
    assert _sql(server, write, authorization="Bearer wrong").status_code == 401
    assert _sql(server, write).status_code == 200
    assert warehouse.scalar("SELECT count() FROM omium_runs WHERE run_id = 'w'") == 1


def test_a_server_without_a_configured_token_makes_one(
    settings: Settings, warehouse: ClickHouseWarehouse
) -> None:
    local = settings.with_(api_token=None)
    with serving(local, warehouse) as running:
        write = {"query": "INSERT INTO omium_runs (run_id) VALUES ('x')", "readonly": False}
        assert _sql(running, write, authorization="Bearer wrong").status_code == 401
        token = local.token_path.read_text()
        assert _sql(running, write, authorization=f"Bearer {token}").status_code == 200
    local.token_path.unlink()


def test_injection_through_parameters_is_inert(server: RunningServer, warehouse: ClickHouseWarehouse) -> None:
    warehouse.command("INSERT INTO omium_runs (run_id) VALUES ('a'), ('b')")
    count = "SELECT count() AS n FROM omium_runs WHERE run_id = {r:String}"
    for hostile in ("a' OR '1'='1", "a'; DROP TABLE omium_runs; --"):
        response = _sql(server, {"query": count, "parameters": {"r": hostile}}, **JSON)
        assert response.json()["rows"] == [[0]]
    assert warehouse.scalar("SELECT count() FROM omium_runs") == 2
    # An Identifier parameter names a table of the server's database, nothing else.
    table = "SELECT count() AS n FROM {t:Identifier}"
    assert _sql(server, {"query": table, "parameters": {"t": "omium_runs"}}, **JSON).json()["rows"] == [[2]]
    for hostile in ("system.users", "omium_runs; DROP TABLE omium_runs", "`system`.`users`"):
        assert _sql(server, {"query": table, "parameters": {"t": hostile}}).status_code == 403


@pytest.mark.parametrize(
    ("body", "status"),
    [
        (b"not json", 400),
        (b'{"q": 1}', 400),
        (b'{"query": "SELEC 1"}', 400),
        (b'{"query": "SELECT 1", "parameters": [1]}', 400),
        (b'{"query": "SELECT * FROM missing"}', 400),
        (b'{"query": "SELECT {p:UInt8}", "parameters": {"p": "x"}}', 400),
        (b'{"query": "SELECT {p:UInt8}"}', 400),
        (b'{"query": "SELECT nosuchfunction(1)"}', 400),
        (b'{"query": "SELECT \'\\\\xFF\'"}', 400),
        (b'{"query": "' + b"(" * 5000 + b'"}', 400),
        (b'{"query": "SELECT \\ud800"}', 400),
    ],
)
def test_bad_requests_are_400(server: RunningServer, body: bytes, status: int) -> None:
    response = httpx.post(
        f"{server.url}/v1/sql", content=body, headers=TOKEN | {"content-type": "application/json"}, timeout=10
    )
    assert response.status_code == status, response.text
    assert response.json()["error"]


def test_non_loopback_server_needs_the_token_to_read(
    settings: Settings, warehouse: ClickHouseWarehouse
) -> None:
    # Bound to loopback for the test, but configured as if exposed: the read path must ask for the token.
    exposed = settings.with_(host="127.0.0.1")
    with serving(exposed, warehouse) as running:
        object.__setattr__(running.state.settings, "host", "0.0.0.0")
        assert _sql(running, {"query": "SELECT 1"}, authorization="Bearer nope").status_code == 401
        assert _sql(running, {"query": "SELECT 1"}).status_code == 200


def _exercise_remote(remote: Warehouse, stranger: Warehouse) -> None:
    remote.command("INSERT INTO omium_runs (run_id, workflow) VALUES ({r:String}, 'wf')", {"r": "r1"})
    remote.insert("omium_runs", [["r2", "r3"], ["wf", "wf"]], ["run_id", "workflow"])
    frame = remote.query_df("SELECT run_id FROM omium_runs ORDER BY run_id")
    assert frame["run_id"].to_list() == ["r1", "r2", "r3"]
    with pytest.raises(ReadOnlyError):
        remote.query_df("DROP TABLE omium_runs")
    with pytest.raises(QueryLimitExceeded):
        remote.query_df("SELECT number FROM numbers(2000000)")
    with pytest.raises(AuthError):
        stranger.command("INSERT INTO omium_runs (run_id) VALUES ('z')")


def test_remote_warehouse(server: RunningServer, warehouse: ClickHouseWarehouse) -> None:
    assert server_answers(server.url)
    with (
        RemoteWarehouse(server.url, token="test-token") as remote,
        RemoteWarehouse(server.url, token="nope") as stranger,
    ):
        _exercise_remote(remote, stranger)
    assert (
        httpx.post(
            f"{server.url}/v1/insert",
            params={"table": "omium_runs; DROP"},
            content=b"",
            headers=TOKEN | {"content-type": "application/vnd.apache.arrow.stream"},
        ).status_code
        == 400
    )
    assert warehouse.scalar("SELECT count() FROM omium_runs") == 3


def test_the_products_own_reads_pass_the_door(server: RunningServer, warehouse: ClickHouseWarehouse) -> None:
    """What the console, the CLI and the pipelines send through a RemoteWarehouse still runs."""
    warehouse.command(
        "INSERT INTO omium_runs (run_id, workflow, status, attributes) VALUES "
        "('r1', 'wf', 'failed', {}), ('r2', 'wf', 'paused', {'awaiting': 'review'})"
    )
    since = dt.datetime.now(dt.UTC) - dt.timedelta(days=1)
    with RemoteWarehouse(server.url, token="test-token", database=warehouse.database) as remote:
        assert queries.span_totals(remote)["spans"].to_list() == [0]
        assert queries.recent_traces(remote).height == 0
        assert queries.agent_summary(remote).height == 0
        with pytest.raises(NotFoundError):
            queries.trace_spans(remote, "0" * 32)
        console_queries.run_health(remote, since)
        console_queries.run_trend(remote, since)
        console_queries.failures_by_workflow(remote, since)
        console_queries.failures_by_agent(remote, since)
        page, total = console_queries.search_runs(remote, since=since, until=since + dt.timedelta(days=2))
        assert total == page.height
        console_queries.workflows(remote)
        console_queries.workflow_agents(remote)
        console_queries.workflow_checkpoints(remote)
        console_queries.run_handoffs(remote, "r1")
        assert console_queries.paused_runs(remote)["run_id"].to_list() == ["r2"]
        assert console_queries.latest_run(remote) in {"r1", "r2"}
        assert recorded_steps(remote, "r1") == []  # the pipelines' reader of recorded calls
        tables = remote.query_rows(
            "SELECT name FROM system.tables WHERE database = {db:String}", {"db": warehouse.database}
        )
        assert {"omium_runs", "otel_traces"} <= {row["name"] for row in tables}


def test_the_products_own_writes_pass_the_door(
    server: RunningServer,
    warehouse: ClickHouseWarehouse,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    """What the outbox shipper, the console and the Dagster pipelines write through a
    RemoteWarehouse (every statement of theirs: tests/warehouse/test_sql_guard.py) still runs,
    through the door."""
    import dagster as dg

    from omium.pipelines import spans
    from omium.pipelines.defs import assets
    from omium.pipelines.defs.resources import WarehouseResource
    from omium.sdk.store import CommandRecord, EventRecord
    from tests.pipelines.conftest import record_live_runs

    with RemoteWarehouse(server.url, token="test-token", database=warehouse.database) as remote:
        # Runs, steps, checkpoints and handoffs (Company X hands off), blobs and spans.
        record_live_runs(remote, {"remote-ok": "ok", "remote-stale": "stale"})  # type: ignore[arg-type]
        store = EmbeddedStore(f"sqlite:///{tmp_path / 'control.db'}", remote, owns_warehouse=False)
        store.record_event(EventRecord("e1", "remote-ok", "review", "me", "why", "a", "b", {"k": "v"}, 1))
        store.enqueue_command(CommandRecord("c1", "remote-ok", "replay", "{}", created_at=1, updated_at=1))
        store.write_state("ns", "key", 0, "0" * 64, writer="me", run_id="remote-ok")
        assert store.ship() == 3
        store.close()
    counts = {
        table: warehouse.scalar(f"SELECT count() FROM {table}")
        for table in (
            "omium_runs",
            "omium_steps",
            "omium_checkpoints",
            "omium_handoffs",
            "omium_shared_state",
            "omium_events",
            "omium_commands",
            "otel_traces",
        )
    }
    assert all(counts.values()), counts
    # The daily pipelines, through the server (their NORMALISE and AGENT_EDGES are INSERT ... SELECT).
    monkeypatch.setenv("OMIUM_SERVER_URL", server.url)
    monkeypatch.setenv("OMIUM_API_TOKEN", "test-token")
    resource = WarehouseResource(
        mode="remote", database=warehouse.database, home=str(settings.home), models_dir=str(tmp_path)
    )
    daily = [
        assets.normalized_spans,
        assets.run_edges,
        assets.agent_graph,
        assets.step_features,
        assets.run_features,
        assets.failure_labels,
    ]
    for day in spans.days_with_spans(warehouse):
        result = dg.materialize(daily, partition_key=str(day), resources={"warehouse": resource})
        assert result.success
        assert all(check.passed for check in result.get_asset_check_evaluations())
    assert warehouse.scalar("SELECT count() FROM omium_normalized_spans") == counts["otel_traces"]
    assert warehouse.scalar("SELECT count() FROM omium_agent_edges") > 0


def test_the_siblings_of_the_products_writes_run(
    server: RunningServer, warehouse: ClickHouseWarehouse
) -> None:
    """CREATE, ALTER, DELETE, OPTIMIZE, TRUNCATE and DROP of the server's own tables still run."""
    statements = [
        "CREATE TABLE IF NOT EXISTS scratch (id UInt32, note String) ENGINE = MergeTree ORDER BY id",
        "INSERT INTO scratch SELECT number, toString(number) FROM numbers(10)",
        "INSERT INTO scratch (id, note) VALUES ({id:UInt32}, {note:String}), (11, upper('eleven'))",
        "INSERT INTO scratch VALUES (12, 'é😀\\n\\'\"\\\\')",
        "ALTER TABLE scratch ADD COLUMN IF NOT EXISTS seen UInt8 DEFAULT 0",
        "ALTER TABLE scratch UPDATE seen = 1 WHERE id < 5",
        "ALTER TABLE scratch DELETE WHERE id = 0",
        "DELETE FROM scratch WHERE id = 1",
        "OPTIMIZE TABLE scratch FINAL",
        "CREATE VIEW IF NOT EXISTS scratch_seen AS SELECT count() AS n FROM scratch WHERE seen = 1",
    ]
    for statement in statements:
        response = _sql(
            server, {"query": statement, "parameters": {"id": 10, "note": "ten"}, "readonly": False}
        )
        assert response.status_code == 200, (statement, response.text)
        assert response.content == b""
    answer = _sql(server, {"query": "SELECT n FROM scratch_seen"}, **JSON)
    assert answer.json()["rows"] == [[3]]
    assert warehouse.scalar("SELECT note FROM scratch WHERE id = 11") == "ELEVEN"
    assert warehouse.scalar("SELECT note FROM scratch WHERE id = 12") == "é😀\n'\"\\"
    for statement in ("TRUNCATE TABLE scratch", "DROP VIEW scratch_seen", "DROP TABLE IF EXISTS scratch"):
        response = _sql(server, {"query": statement, "readonly": False}, **JSON)
        assert response.json() == {"columns": [], "types": [], "rows": []}
    assert (
        warehouse.scalar(
            "SELECT count() FROM system.tables WHERE database = {d:String} AND name LIKE 'scratch%'",
            {"d": warehouse.database},
        )
        == 0
    )


@pytest.mark.parametrize(
    ("statement", "refusal"),
    [
        ("SELECT file('{secret}')", "function 'file'"),
        ("INSERT INTO omium_runs (run_id) SELECT file('{secret}')", "function 'file'"),
        ("INSERT INTO omium_runs (run_id) VALUES (file('{secret}'))", "function 'file'"),
        ("INSERT INTO omium_runs (run_id) SELECT * FROM file('{secret}', 'LineAsString')", "'file'"),
        ("INSERT INTO FUNCTION file('{target}', 'LineAsString', 'x String') SELECT 'x'", "INTO FUNCTION"),
        ("SELECT 'x' INTO OUTFILE '{target}' TRUNCATE", "INTO OUTFILE"),
        ("INSERT INTO omium_runs (run_id) FROM INFILE '{secret}' FORMAT LineAsString", "FROM INFILE"),
        ("SYSTEM DROP MARK CACHE", "SYSTEM"),
        ("SYSTEM SHUTDOWN", "SYSTEM"),
        ("KILL QUERY WHERE 1", "KILL QUERY"),
        ("SET max_execution_time = 0", "SET"),
        ("GRANT ALL ON *.* TO default", "GRANT"),
        ("CREATE USER omium_evil", "CREATE USER"),
        ("CREATE FUNCTION omium_evil AS x -> x", "CREATE SQL FUNCTION"),
        ("INSERT INTO system.one SELECT 1", "database 'system'"),
        ("CREATE TABLE evil (x String) ENGINE = File(LineAsString, '{target}')", "'File'"),
        ("CREATE TABLE evil (x String) ENGINE = URL('http://127.0.0.1:9/', LineAsString)", "'URL'"),
        ("CREATE TABLE evil ENGINE = Memory AS SELECT * FROM file('{secret}', 'LineAsString')", "'file'"),
        ("CREATE TABLE evil AS file('{secret}', 'LineAsString')", "table function"),
        ("CREATE VIEW evil AS SELECT name FROM system.users", "system.users"),
        ("ATTACH TABLE evil (x String) ENGINE = Memory", "ATTACH"),
    ],
)
def test_writes_off_the_list_are_403_and_change_nothing(
    server: RunningServer, warehouse: ClickHouseWarehouse, tmp_path: Path, statement: str, refusal: str
) -> None:
    secret = tmp_path / "secret"
    secret.write_text("secret-text")
    target = tmp_path / "written"
    query = statement.format(secret=secret, target=target)
    response = _sql(server, {"query": query, "readonly": False}, **JSON)
    assert response.status_code == 403, response.text
    assert response.json()["error"].startswith("refused: ")
    assert refusal in response.json()["error"]
    assert "secret-text" not in response.text
    assert not target.exists()
    assert warehouse.scalar("SELECT count() FROM omium_runs") == 0
    tables = {r["name"] for r in warehouse.query_rows("SHOW TABLES")}
    assert "evil" not in tables and "omium_runs" in tables
    assert warehouse.scalar("SELECT count() FROM system.functions WHERE name = 'omium_evil'") == 0
    assert _sql(server, {"query": "SELECT 1"}).status_code == 200  # the server is still up


def test_other_databases_are_out_of_reach_of_writes(
    server: RunningServer, warehouse: ClickHouseWarehouse
) -> None:
    other = f"{warehouse.database}_other"
    warehouse.command("CREATE DATABASE {d:Identifier}", {"d": other})
    try:
        warehouse.command(f"CREATE TABLE {other}.t (a UInt8) ENGINE = Memory")
        warehouse.command(f"INSERT INTO {other}.t VALUES (1)")
        for statement in (
            f"INSERT INTO {other}.t SELECT 2",
            f"INSERT INTO {other}.t VALUES (2)",
            f"ALTER TABLE {other}.t DELETE WHERE 1",
            f"DELETE FROM {other}.t WHERE 1",
            f"TRUNCATE TABLE {other}.t",
            f"DROP TABLE {other}.t",
            f"OPTIMIZE TABLE {other}.t",
            f"CREATE TABLE {other}.u (a UInt8) ENGINE = Memory",
            f"CREATE MATERIALIZED VIEW mv TO {other}.t AS SELECT 3 AS a",
            f"DROP DATABASE {other}",
            f"INSERT INTO omium_runs (run_id) SELECT toString(a) FROM {other}.t",
        ):
            response = _sql(server, {"query": statement, "readonly": False})
            assert response.status_code == 403, (statement, response.text)
            assert other in response.json()["error"]
        table = {"query": "DROP TABLE {t:Identifier}", "parameters": {"t": f"{other}.t"}, "readonly": False}
        assert _sql(server, table).status_code == 403
        assert warehouse.query_rows(f"SELECT a FROM {other}.t") == [{"a": 1}]
        assert warehouse.scalar("SELECT count() FROM omium_runs") == 0
    finally:
        warehouse.command("DROP DATABASE IF EXISTS {d:Identifier}", {"d": other})


@pytest.mark.parametrize(
    "query",
    [
        "INSERT INTO omium_runs (run_id) VALUES (",
        "INSERT INTO omium_runs (nosuch) VALUES (1)",
        "INSERT INTO nosuch (a) VALUES (1)",
        "INSERT INTO nosuch SELECT 1",
        "INSERT INT omium_runs SELECT 1",
        "INSERT INTO omium_runs (run_id) SELECT 'x'; DROP TABLE omium_runs",
        "INSERT INTO omium_runs (run_id) VALUES ({p:UInt8})",
        "ALTER TABLE omium_runs DROP COLUMN nosuch",
    ],
)
def test_bad_writes_are_400(server: RunningServer, warehouse: ClickHouseWarehouse, query: str) -> None:
    response = _sql(server, {"query": query, "parameters": {"p": "x"}, "readonly": False})
    assert response.status_code == 400, response.text
    assert response.json()["error"]
    assert warehouse.scalar("SELECT count() FROM omium_runs") == 0
    assert (
        _sql(
            server, {"query": "INSERT INTO omium_runs (run_id) VALUES ('ok')", "readonly": False}
        ).status_code
        == 200
    )


def test_a_server_on_clickhouse_has_no_door_for_writes_either(
    server: RunningServer, warehouse: ClickHouseWarehouse, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(warehouse, "mode", "clickhouse")  # what sql_door() looks at
    for readonly in (True, False):
        body = {"query": "INSERT INTO omium_runs (run_id) VALUES ('x')", "readonly": readonly}
        response = _sql(server, body)
        assert response.status_code == 501, response.text
        assert "embedded" in response.json()["error"]
    assert warehouse.scalar("SELECT count() FROM omium_runs") == 0


_SEEDS = [
    "SELECT number AS n FROM numbers(10) WHERE n % 2 = 0 ORDER BY n DESC LIMIT 3",
    "SELECT run_id, argMax(status, updated_at) FROM omium_runs FINAL GROUP BY run_id",
    "WITH x AS (SELECT 1 AS a) SELECT a + 1 FROM x UNION ALL SELECT 2",
    "SELECT arrayJoin([1, 2, 3]) AS v, toString(v), JSONExtractString('{\"a\": \"b\"}', 'a')",
    "SELECT name FROM system.tables WHERE database = currentDatabase()",
    "SELECT toDate(now()) - INTERVAL 1 DAY, map('k', 1)['k'], tuple(1, 'a').2",
    "EXPLAIN SELECT count() FROM otel_traces FINAL",
    "SHOW TABLES",
]
_PIECES = [
    "(",
    ")",
    ",",
    ";",
    "'",
    '"',
    "`",
    "\\",
    "{p:String}",
    "{t:Identifier}",
    " FROM ",
    " file('x') ",
    " SETTINGS a=1 ",
    " FORMAT JSON ",
    " INTO OUTFILE 'y' ",
    " UNION ALL ",
    " system.users ",
    " -- ",
    "/*",
    "*/",
    "\x00",
    "é",
    "\ud7ff",
    " KILL QUERY ",
    " numbers(",
    "1e308",
    "-",
    "[",
    "]",
    "::",
]


@st.composite
def _mutated(draw: st.DrawFn) -> str:
    text = draw(st.sampled_from(_SEEDS))
    rng = random.Random(draw(st.integers(0, 2**32)))
    for _ in range(draw(st.integers(1, 4))):
        at = rng.randrange(len(text) + 1)
        action = rng.choice(("insert", "delete", "swap"))
        if action == "insert":
            text = text[:at] + rng.choice(_PIECES) + text[at:]
        elif action == "delete":
            text = text[:at] + text[at + rng.randrange(1, 8) :]
        else:
            text = text[:at] + chr(rng.randrange(32, 0x2FF)) + text[at + 1 :]
    return text


@settings(
    max_examples=200,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(query=_mutated(), as_json=st.booleans())
def test_fuzzed_queries_never_get_a_5xx(server: RunningServer, query: str, as_json: bool) -> None:
    response = _sql(
        server,
        {"query": query, "parameters": {"p": "v", "t": "omium_runs"}},
        **(JSON if as_json else {}),
    )
    assert response.status_code < 500, (query, response.text)
    assert response.status_code in (200, 400, 403, 422), (query, response.text)


_WRITE_SEEDS = [
    "INSERT INTO omium_runs (run_id, workflow) VALUES ({p:String}, 'wf'), ('b', concat('w', 'f'))",
    "INSERT INTO omium_runs (run_id) SELECT toString(number) FROM numbers(3)",
    "ALTER TABLE omium_runs DELETE WHERE run_id = {p:String}",
    "CREATE TABLE IF NOT EXISTS fuzzed (a UInt8) ENGINE = Memory",
]


@st.composite
def _mutated_write(draw: st.DrawFn) -> str:
    text = draw(st.sampled_from(_WRITE_SEEDS))
    rng = random.Random(draw(st.integers(0, 2**32)))
    for _ in range(draw(st.integers(1, 4))):
        at = rng.randrange(len(text) + 1)
        if rng.random() < 0.5:
            text = text[:at] + rng.choice(_PIECES) + text[at:]
        else:
            text = text[:at] + text[at + rng.randrange(1, 8) :]
    return text


@settings(
    max_examples=100,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(query=_mutated_write())
def test_fuzzed_writes_never_get_a_5xx(server: RunningServer, query: str) -> None:
    body = {"query": query, "parameters": {"p": "v", "t": "omium_runs"}, "readonly": False}
    response = _sql(server, body)
    assert response.status_code in (200, 400, 403), (query, response.text)


def test_reads_from_many_threads_at_once(server: RunningServer) -> None:
    """More readers than door sessions: every one answers, none fails."""
    statuses: list[int] = []

    def read(i: int) -> None:
        statuses.append(_sql(server, {"query": f"SELECT {i} AS i FROM numbers(1000) LIMIT 1"}).status_code)

    threads = [threading.Thread(target=read, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert statuses == [200] * 8
