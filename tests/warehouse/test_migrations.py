import pytest

from omium.errors import MigrationError
from omium.warehouse import LATEST_VERSION, ClickHouseWarehouse, migrate
from omium.warehouse.migrations import current_version

# REFERENCE.md section 1: the contrib ClickHouse exporter's 22 columns and their types.
EXPORTER_COLUMNS = {
    "Timestamp": "DateTime64(9)",
    "TraceId": "String",
    "SpanId": "String",
    "ParentSpanId": "String",
    "TraceState": "String",
    "SpanName": "LowCardinality(String)",
    "SpanKind": "LowCardinality(String)",
    "ServiceName": "LowCardinality(String)",
    "ResourceAttributes": "Map(LowCardinality(String), String)",
    "ScopeName": "String",
    "ScopeVersion": "String",
    "SpanAttributes": "Map(LowCardinality(String), String)",
    "Duration": "UInt64",
    "StatusCode": "LowCardinality(String)",
    "StatusMessage": "String",
    "Events.Timestamp": "Array(DateTime64(9))",
    "Events.Name": "Array(LowCardinality(String))",
    "Events.Attributes": "Array(Map(LowCardinality(String), String))",
    "Links.TraceId": "Array(String)",
    "Links.SpanId": "Array(String)",
    "Links.TraceState": "Array(String)",
    "Links.Attributes": "Array(Map(LowCardinality(String), String))",
}


def test_fresh_database_is_at_latest_version(warehouse: ClickHouseWarehouse) -> None:
    assert current_version(warehouse) == LATEST_VERSION
    versions = [
        r["version"] for r in warehouse.query_rows("SELECT version FROM omium_migrations FINAL ORDER BY 1")
    ]
    assert versions == list(range(1, LATEST_VERSION + 1))


def test_migrate_is_idempotent(warehouse: ClickHouseWarehouse) -> None:
    assert migrate(warehouse) == 0
    assert current_version(warehouse) == LATEST_VERSION


def test_otel_traces_has_the_exporters_exact_columns(warehouse: ClickHouseWarehouse) -> None:
    rows = warehouse.query_rows(
        "SELECT name, type, default_kind FROM system.columns WHERE database = {db:String} AND table = 'otel_traces'",
        {"db": warehouse.database},
    )
    insertable = {r["name"]: r["type"] for r in rows if r["default_kind"] == ""}
    assert insertable == EXPORTER_COLUMNS


def test_trace_id_lookup_table_is_fed_by_its_view(warehouse: ClickHouseWarehouse) -> None:
    warehouse.command(
        "INSERT INTO otel_traces (Timestamp, TraceId, SpanId, ServiceName) VALUES "
        "('2026-01-01 10:00:00', 'aa', '01', 's'), ('2026-01-01 10:00:05', 'aa', '02', 's')"
    )
    row = warehouse.query_rows(
        "SELECT TraceId, toSecond(min(Start)) AS s, toSecond(max(End)) AS e "
        "FROM otel_traces_trace_id_ts GROUP BY TraceId"
    )
    assert [(r["TraceId"], r["s"], r["e"]) for r in row] == [("aa", 0, 5)]


def test_runtime_tables_exist(warehouse: ClickHouseWarehouse) -> None:
    names = {
        r["name"]
        for r in warehouse.query_rows(
            "SELECT name FROM system.tables WHERE database = {db:String}", {"db": warehouse.database}
        )
    }
    for table in (
        "omium_runs",
        "omium_checkpoints",
        "omium_state_blobs",
        "omium_steps",
        "omium_handoffs",
        "omium_shared_state",
        "omium_events",
        "omium_commands",
        "omium_reviews",
    ):
        assert table in names


def test_a_newer_schema_is_refused(warehouse: ClickHouseWarehouse) -> None:
    warehouse.command("INSERT INTO omium_migrations (version) VALUES ({v:UInt32})", {"v": LATEST_VERSION + 1})
    with pytest.raises(MigrationError, match="newer than this Omium"):
        migrate(warehouse)
