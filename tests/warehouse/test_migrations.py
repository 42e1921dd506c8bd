from collections.abc import Iterator
from pathlib import Path

import pytest

from omium.collector import sample
from omium.collector.writer import SpanWriter
from omium.config import Settings
from omium.errors import MigrationError
from omium.pipelines.spans import days_with_spans
from omium.warehouse import LATEST_VERSION, ClickHouseWarehouse, connect, migrate, queries
from omium.warehouse.migrations import adopt_existing_traces, current_version

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


# --- otel_traces created first by otelcol-contrib ---------------------------------------------
# The contrib ClickHouse exporter's DDL (exporter/clickhouseexporter/internal/sqltemplates:
# traces_table.sql, traces_id_ts_lookup_table.sql, traces_id_ts_lookup_mv.sql) as it renders with
# its defaults: engine MergeTree, no TTL, no cluster, bloom-filter indexes.
CONTRIB_TRACES = """
CREATE TABLE IF NOT EXISTS otel_traces (
    Timestamp DateTime64(9) CODEC(Delta(8), ZSTD(1)),
    TraceId String CODEC(ZSTD(1)),
    SpanId String CODEC(ZSTD(1)),
    ParentSpanId String CODEC(ZSTD(1)),
    TraceState String CODEC(ZSTD(1)),
    SpanName LowCardinality(String) CODEC(ZSTD(1)),
    SpanKind LowCardinality(String) CODEC(ZSTD(1)),
    ServiceName LowCardinality(String) CODEC(ZSTD(1)),
    ResourceAttributes Map(LowCardinality(String), String) CODEC(ZSTD(1)),
    ScopeName String CODEC(ZSTD(1)),
    ScopeVersion String CODEC(ZSTD(1)),
    SpanAttributes Map(LowCardinality(String), String) CODEC(ZSTD(1)),
    Duration UInt64 CODEC(T64, ZSTD(1)),
    StatusCode LowCardinality(String) CODEC(ZSTD(1)),
    StatusMessage String CODEC(ZSTD(1)),
    Events Nested (
        Timestamp DateTime64(9),
        Name LowCardinality(String),
        Attributes Map(LowCardinality(String), String)
    ) CODEC(ZSTD(1)),
    Links Nested (
        TraceId String,
        SpanId String,
        TraceState String,
        Attributes Map(LowCardinality(String), String)
    ) CODEC(ZSTD(1)),
    ResourceAttributeItems Array(String) ALIAS arrayMap(kv -> concat(kv.1, '=', kv.2),
        CAST(ResourceAttributes, 'Array(Tuple(String, String))')),
    SpanAttributeItems Array(String) ALIAS arrayMap(kv -> concat(kv.1, '=', kv.2),
        CAST(SpanAttributes, 'Array(Tuple(String, String))')),
    INDEX idx_trace_id TraceId TYPE bloom_filter(0.001) GRANULARITY 1,
    INDEX idx_res_attr_key mapKeys(ResourceAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_res_attr_value mapValues(ResourceAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_span_attr_key mapKeys(SpanAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_span_attr_value mapValues(SpanAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_duration Duration TYPE minmax GRANULARITY 1,
    INDEX idx_lower_span_name lower(SpanName) TYPE tokenbf_v1(32768, 3, 0) GRANULARITY 8
) ENGINE = {engine}
PARTITION BY toDate(Timestamp)
PRIMARY KEY (ServiceName, SpanName, toDateTime(Timestamp))
ORDER BY (ServiceName, SpanName, toDateTime(Timestamp), Timestamp)
SETTINGS index_granularity = 8192, ttl_only_drop_parts = 1
"""
CONTRIB_TRACE_ID_TS = """
CREATE TABLE IF NOT EXISTS otel_traces_trace_id_ts (
    TraceId String CODEC(ZSTD(1)),
    Start SimpleAggregateFunction(min, DateTime) CODEC(ZSTD(1)),
    End SimpleAggregateFunction(max, DateTime) CODEC(ZSTD(1))
) ENGINE = AggregatingMergeTree
PARTITION BY toStartOfWeek(Start)
ORDER BY (TraceId)
SETTINGS index_granularity = 8192, ttl_only_drop_parts = 1
"""
CONTRIB_TRACE_ID_TS_MV = """
CREATE MATERIALIZED VIEW IF NOT EXISTS otel_traces_trace_id_ts_mv
TO otel_traces_trace_id_ts
AS SELECT TraceId, min(Timestamp) as Start, max(Timestamp) as End
FROM otel_traces WHERE TraceId != '' GROUP BY TraceId
"""
# What the exporter inserts (traces_insert.sql): its 22 columns.
CONTRIB_INSERT = (
    "INSERT INTO otel_traces (Timestamp, TraceId, SpanId, ParentSpanId, TraceState, SpanName, SpanKind, "
    "ServiceName, ResourceAttributes, ScopeName, ScopeVersion, SpanAttributes, Duration, StatusCode, "
    "StatusMessage, `Events.Timestamp`, `Events.Name`, `Events.Attributes`, `Links.TraceId`, "
    "`Links.SpanId`, `Links.TraceState`, `Links.Attributes`) VALUES "
    "(now64(9), 'c0ffee00c0ffee00c0ffee00c0ffee00', 'c0ffee00c0ffee00', '', '', 'invoke_agent kyc', 'Internal', "
    "'contrib-svc', {'service.name': 'contrib-svc'}, 'otelcol', '1', "
    "{'gen_ai.agent.name': 'kyc', 'omium.run_id': 'contrib-run'}, 1000, 'Ok', '', [], [], [], [], [], [], [])"
)


@pytest.fixture
def bare(settings: Settings) -> Iterator[ClickHouseWarehouse]:
    """An embedded warehouse in a fresh database that nothing has migrated yet."""
    wh = connect(settings, mode="embedded", migrate=False)
    assert isinstance(wh, ClickHouseWarehouse)
    yield wh
    wh.command("DROP DATABASE IF EXISTS {db:Identifier}", {"db": settings.database})
    wh.close()


def _contrib_schema(warehouse: ClickHouseWarehouse, engine: str = "MergeTree") -> None:
    for statement in (
        CONTRIB_TRACES.replace("{engine}", engine),
        CONTRIB_TRACE_ID_TS,
        CONTRIB_TRACE_ID_TS_MV,
    ):
        warehouse.command(statement)


def _engine(warehouse: ClickHouseWarehouse) -> str:
    return str(
        warehouse.scalar(
            "SELECT engine FROM system.tables WHERE database = {db:String} AND name = 'otel_traces'",
            {"db": warehouse.database},
        )
    )


def _ingest_and_query(warehouse: ClickHouseWarehouse, tmp_path: Path) -> None:
    """Omium's writer (both paths) and the exporter's own insert, then Omium's reads of otel_traces."""
    bodies = sample.requests(2, 40, seed=71)
    for native_min, body in zip((0, 10**9), bodies, strict=True):
        writer = SpanWriter(warehouse, tmp_path / "spool", native_min_spans=native_min, writers=1)
        writer.start()
        try:
            writer.submit(body, 40).result(60)
        finally:
            writer.stop()
    warehouse.command(CONTRIB_INSERT)
    totals = queries.span_totals(warehouse)
    assert totals["spans"][0] == 81
    recent = queries.recent_traces(warehouse, limit=100)
    assert "c0ffee00c0ffee00c0ffee00c0ffee00" in recent["TraceId"].to_list()
    spans = queries.trace_spans(warehouse, recent["TraceId"][0])  # through otel_traces_trace_id_ts
    assert len(spans) >= 1
    assert len(queries.trace_spans(warehouse, "c0ffee00c0ffee00c0ffee00c0ffee00")) == 1
    assert "kyc" in queries.agent_summary(warehouse)["agent"].to_list()
    assert warehouse.scalar("SELECT count() FROM otel_traces FINAL WHERE RunId = 'contrib-run'") == 1
    assert days_with_spans(warehouse)


def test_an_empty_otel_traces_of_the_contrib_exporter_is_replaced(
    bare: ClickHouseWarehouse, tmp_path: Path
) -> None:
    _contrib_schema(bare)
    assert _engine(bare) == "MergeTree"
    assert migrate(bare) == LATEST_VERSION
    assert _engine(bare) == "ReplacingMergeTree"
    columns = {
        r["name"]: r["type"]
        for r in bare.query_rows(
            "SELECT name, type, default_kind FROM system.columns WHERE database = {db:String} "
            "AND table = 'otel_traces'",
            {"db": bare.database},
        )
        if r["default_kind"] == ""
    }
    assert columns == EXPORTER_COLUMNS
    assert not [t for t in _tables(bare) if t.startswith("otel_traces_replaced")]
    _ingest_and_query(bare, tmp_path)
    assert adopt_existing_traces(bare) == "kept"  # and the next open changes nothing


def test_a_contrib_otel_traces_holding_rows_is_refused_with_what_to_do(
    bare: ClickHouseWarehouse, tmp_path: Path
) -> None:
    _contrib_schema(bare)
    bare.command(CONTRIB_INSERT)
    with pytest.raises(MigrationError, match="RENAME TABLE otel_traces TO otel_traces_contrib") as refused:
        migrate(bare)
    assert "MergeTree" in str(refused.value) and "1 rows" in str(refused.value)
    assert current_version(bare) == 0  # nothing half-done
    # Doing what the message says works, and keeps the collector's rows.
    message = str(refused.value)
    steps = message.split("with the collector stopped: ")[1].split("; then start the collector")[0]
    rename, _, copy, drop = steps.split("; ")
    bare.command(rename)
    assert migrate(bare) == LATEST_VERSION
    bare.command(copy)
    bare.command(drop)
    assert bare.scalar("SELECT count() FROM otel_traces FINAL WHERE ServiceName = 'contrib-svc'") == 1
    bare.command("TRUNCATE TABLE otel_traces")
    _ingest_and_query(bare, tmp_path)


def test_a_replacing_otel_traces_of_the_exporter_gets_omiums_column(
    bare: ClickHouseWarehouse, tmp_path: Path
) -> None:
    _contrib_schema(bare, engine="ReplacingMergeTree")
    bare.command(CONTRIB_INSERT)
    assert migrate(bare) == LATEST_VERSION
    assert _engine(bare) == "ReplacingMergeTree"
    assert bare.scalar("SELECT count() FROM otel_traces FINAL WHERE RunId = 'contrib-run'") == 1
    bare.command("TRUNCATE TABLE otel_traces")
    _ingest_and_query(bare, tmp_path)


def _tables(warehouse: ClickHouseWarehouse) -> list[str]:
    return [
        r["name"]
        for r in warehouse.query_rows(
            "SELECT name FROM system.tables WHERE database = {db:String}", {"db": warehouse.database}
        )
    ]
