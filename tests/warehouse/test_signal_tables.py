"""The logs and metrics tables hold the contrib ClickHouse exporter's exact columns and types, and
a record inserted twice reads as one row with FINAL."""

from __future__ import annotations

import time

from omium.warehouse import ClickHouseWarehouse
from omium.warehouse.log_rows import OTEL_LOGS_COLUMNS
from omium.warehouse.metric_rows import METRIC_TABLE_COLUMNS

_MAP = "Map(LowCardinality(String), String)"
# exporter/clickhouseexporter/internal/sqltemplates/*_table.sql, column by column.
_METRIC_HEAD = [
    ("ResourceAttributes", _MAP),
    ("ResourceSchemaUrl", "String"),
    ("ScopeName", "String"),
    ("ScopeVersion", "String"),
    ("ScopeAttributes", _MAP),
    ("ScopeDroppedAttrCount", "UInt32"),
    ("ScopeSchemaUrl", "String"),
    ("ServiceName", "LowCardinality(String)"),
    ("MetricName", "String"),
    ("MetricDescription", "String"),
    ("MetricUnit", "String"),
    ("Attributes", _MAP),
    ("StartTimeUnix", "DateTime64(9)"),
    ("TimeUnix", "DateTime64(9)"),
]
_EXEMPLARS = [
    ("Exemplars.FilteredAttributes", f"Array({_MAP})"),
    ("Exemplars.TimeUnix", "Array(DateTime64(9))"),
    ("Exemplars.Value", "Array(Float64)"),
    ("Exemplars.SpanId", "Array(String)"),
    ("Exemplars.TraceId", "Array(String)"),
]
CONTRIB = {
    "otel_logs": [
        ("Timestamp", "DateTime64(9)"),
        ("TimestampTime", "DateTime"),
        ("TraceId", "String"),
        ("SpanId", "String"),
        ("TraceFlags", "UInt8"),
        ("SeverityText", "LowCardinality(String)"),
        ("SeverityNumber", "UInt8"),
        ("ServiceName", "LowCardinality(String)"),
        ("Body", "String"),
        ("ResourceSchemaUrl", "LowCardinality(String)"),
        ("ResourceAttributes", _MAP),
        ("ScopeSchemaUrl", "LowCardinality(String)"),
        ("ScopeName", "String"),
        ("ScopeVersion", "LowCardinality(String)"),
        ("ScopeAttributes", _MAP),
        ("LogAttributes", _MAP),
        ("EventName", "String"),
    ],
    "otel_metrics_gauge": [*_METRIC_HEAD, ("Value", "Float64"), ("Flags", "UInt32"), *_EXEMPLARS],
    "otel_metrics_sum": [
        *_METRIC_HEAD,
        ("Value", "Float64"),
        ("Flags", "UInt32"),
        *_EXEMPLARS,
        ("AggregationTemporality", "Int32"),
        ("IsMonotonic", "Bool"),
    ],
    "otel_metrics_histogram": [
        *_METRIC_HEAD,
        ("Count", "UInt64"),
        ("Sum", "Float64"),
        ("BucketCounts", "Array(UInt64)"),
        ("ExplicitBounds", "Array(Float64)"),
        *_EXEMPLARS,
        ("Flags", "UInt32"),
        ("Min", "Float64"),
        ("Max", "Float64"),
        ("AggregationTemporality", "Int32"),
    ],
    "otel_metrics_exponential_histogram": [
        *_METRIC_HEAD,
        ("Count", "UInt64"),
        ("Sum", "Float64"),
        ("Scale", "Int32"),
        ("ZeroCount", "UInt64"),
        ("PositiveOffset", "Int32"),
        ("PositiveBucketCounts", "Array(UInt64)"),
        ("NegativeOffset", "Int32"),
        ("NegativeBucketCounts", "Array(UInt64)"),
        *_EXEMPLARS,
        ("Flags", "UInt32"),
        ("Min", "Float64"),
        ("Max", "Float64"),
        ("AggregationTemporality", "Int32"),
    ],
    "otel_metrics_summary": [
        *_METRIC_HEAD,
        ("Count", "UInt64"),
        ("Sum", "Float64"),
        ("ValueAtQuantiles.Quantile", "Array(Float64)"),
        ("ValueAtQuantiles.Value", "Array(Float64)"),
        ("Flags", "UInt32"),
    ],
}


def test_tables_have_the_exporters_columns(warehouse: ClickHouseWarehouse) -> None:
    for table, columns in CONTRIB.items():
        found = warehouse.query_rows(
            "SELECT name, type, default_kind FROM system.columns "
            "WHERE database = {db:String} AND table = {t:String} ORDER BY position",
            {"db": warehouse.database, "t": table},
        )
        # The exporter's columns in its order; Omium adds one MATERIALIZED hash after them.
        assert [(r["name"], r["type"]) for r in found[: len(columns)]] == columns, table
        assert [(r["name"], r["default_kind"]) for r in found[len(columns) :]] == [
            ("RecordHash", "MATERIALIZED")
        ]
    # What Omium inserts is what the exporter inserts (otel_logs: all but TimestampTime's default).
    assert list(OTEL_LOGS_COLUMNS) == [n for n, _ in CONTRIB["otel_logs"] if n != "TimestampTime"]
    for table, names in METRIC_TABLE_COLUMNS.items():
        assert list(names) == [n for n, _ in CONTRIB[table]], table


def test_the_same_record_twice_is_one_row_with_final(warehouse: ClickHouseWarehouse) -> None:
    now = time.time_ns()
    logs = [[now, now], ["a", "a"], [{"k": "v"}, {"k": "v"}], ["body", "body"]]
    names = ["Timestamp", "ServiceName", "LogAttributes", "Body"]
    for _ in range(2):
        warehouse.insert("otel_logs", logs, names)
    assert warehouse.scalar("SELECT count() FROM otel_logs FINAL") == 1
    # A record differing in any column (here its body) is another record.
    warehouse.insert("otel_logs", [[now], ["a"], [{"k": "v"}], ["other"]], names)
    assert warehouse.scalar("SELECT count() FROM otel_logs FINAL") == 2
    gauge = [[now], ["svc"], ["m"], [{"host": "1"}], [1.5]]
    gauge_names = ["TimeUnix", "ServiceName", "MetricName", "ResourceAttributes", "Value"]
    for resource in ({"host": "1"}, {"host": "1"}, {"host": "2"}):
        gauge[3] = [resource]
        warehouse.insert("otel_metrics_gauge", gauge, gauge_names)
    # Two hosts with the same series and time are two points; the re-sent one collapses.
    assert warehouse.scalar("SELECT count() FROM otel_metrics_gauge FINAL") == 2
