"""The logs and metrics tables: the OpenTelemetry Collector contrib ClickHouse exporter's own.

``otel_logs`` and the five ``otel_metrics_*`` tables keep the exporter's exact column names and
types (``exporter/clickhouseexporter/internal/sqltemplates``), so a stock otelcol-contrib can
write here and Grafana's ClickHouse data source reads ``otel_logs`` in its OTel logs mode.

Departures from the exporter's DDL (other keys are allowed, as for ``otel_traces``):

- **ReplacingMergeTree, keyed by a content hash.** OTLP delivery is at-least-once: a client that
  timed out re-sends a request that was stored. Each table has one extra ``MATERIALIZED`` column,
  ``RecordHash`` (``cityHash64`` of every column the exporter writes that the sorting key does not
  already hold), appended to the exporter's ``ORDER BY``: a re-sent record is the same key and
  collapses into one row for a reader using ``FINAL`` (and after merges for everyone). Two records
  identical in every column, nanosecond timestamp included, are one record too; that is the
  price of deduplicating without an id, which OTLP logs and data points do not carry. A
  ``MATERIALIZED`` column is computed by ClickHouse on every insert, so rows written by
  otelcol-contrib get it too.
- The exporter's ``TTL`` is left out (no retention is configured by default).
"""

from __future__ import annotations

OTEL_LOGS = """
CREATE TABLE IF NOT EXISTS otel_logs (
    Timestamp DateTime64(9) CODEC(Delta(8), ZSTD(1)),
    TimestampTime DateTime DEFAULT toDateTime(Timestamp),
    TraceId String CODEC(ZSTD(1)),
    SpanId String CODEC(ZSTD(1)),
    TraceFlags UInt8,
    SeverityText LowCardinality(String) CODEC(ZSTD(1)),
    SeverityNumber UInt8,
    ServiceName LowCardinality(String) CODEC(ZSTD(1)),
    Body String CODEC(ZSTD(1)),
    ResourceSchemaUrl LowCardinality(String) CODEC(ZSTD(1)),
    ResourceAttributes Map(LowCardinality(String), String) CODEC(ZSTD(1)),
    ScopeSchemaUrl LowCardinality(String) CODEC(ZSTD(1)),
    ScopeName String CODEC(ZSTD(1)),
    ScopeVersion LowCardinality(String) CODEC(ZSTD(1)),
    ScopeAttributes Map(LowCardinality(String), String) CODEC(ZSTD(1)),
    LogAttributes Map(LowCardinality(String), String) CODEC(ZSTD(1)),
    EventName String CODEC(ZSTD(1)),
    RecordHash UInt64 MATERIALIZED cityHash64(
        Timestamp, TraceId, SpanId, TraceFlags, SeverityText, SeverityNumber, Body,
        ResourceSchemaUrl, ResourceAttributes, ScopeSchemaUrl, ScopeName, ScopeVersion,
        ScopeAttributes, LogAttributes, EventName
    ),
    INDEX idx_trace_id TraceId TYPE bloom_filter(0.001) GRANULARITY 1,
    INDEX idx_res_attr_key mapKeys(ResourceAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_res_attr_value mapValues(ResourceAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_scope_attr_key mapKeys(ScopeAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_scope_attr_value mapValues(ScopeAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_log_attr_key mapKeys(LogAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_log_attr_value mapValues(LogAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_body Body TYPE tokenbf_v1(32768, 3, 0) GRANULARITY 8
) ENGINE = ReplacingMergeTree
PARTITION BY toDate(TimestampTime)
PRIMARY KEY (ServiceName, TimestampTime)
ORDER BY (ServiceName, TimestampTime, Timestamp, RecordHash)
SETTINGS index_granularity = 8192, ttl_only_drop_parts = 1
"""

# The columns every metrics table starts with, in the exporter's order.
_METRIC_HEAD = """
    ResourceAttributes Map(LowCardinality(String), String) CODEC(ZSTD(1)),
    ResourceSchemaUrl String CODEC(ZSTD(1)),
    ScopeName String CODEC(ZSTD(1)),
    ScopeVersion String CODEC(ZSTD(1)),
    ScopeAttributes Map(LowCardinality(String), String) CODEC(ZSTD(1)),
    ScopeDroppedAttrCount UInt32 CODEC(ZSTD(1)),
    ScopeSchemaUrl String CODEC(ZSTD(1)),
    ServiceName LowCardinality(String) CODEC(ZSTD(1)),
    MetricName String CODEC(ZSTD(1)),
    MetricDescription String CODEC(ZSTD(1)),
    MetricUnit String CODEC(ZSTD(1)),
    Attributes Map(LowCardinality(String), String) CODEC(ZSTD(1)),
    StartTimeUnix DateTime64(9) CODEC(Delta, ZSTD(1)),
    TimeUnix DateTime64(9) CODEC(Delta, ZSTD(1)),"""

_EXEMPLARS = """
    Exemplars Nested (
        FilteredAttributes Map(LowCardinality(String), String),
        TimeUnix DateTime64(9),
        Value Float64,
        SpanId String,
        TraceId String
    ) CODEC(ZSTD(1)),"""

# What the key (ServiceName, MetricName, Attributes, TimeUnix) does not hold, for every table.
_HASHED_HEAD = (
    "ResourceAttributes, ResourceSchemaUrl, ScopeName, ScopeVersion, ScopeAttributes, "
    "ScopeDroppedAttrCount, ScopeSchemaUrl, MetricDescription, MetricUnit, StartTimeUnix"
)
_HASHED_EXEMPLARS = (
    "Exemplars.FilteredAttributes, Exemplars.TimeUnix, Exemplars.Value, Exemplars.SpanId, "
    "Exemplars.TraceId"
)

_METRIC_TAIL = """
    RecordHash UInt64 MATERIALIZED cityHash64({hashed}),
    INDEX idx_res_attr_key mapKeys(ResourceAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_res_attr_value mapValues(ResourceAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_scope_attr_key mapKeys(ScopeAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_scope_attr_value mapValues(ScopeAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_attr_key mapKeys(Attributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_attr_value mapValues(Attributes) TYPE bloom_filter(0.01) GRANULARITY 1
) ENGINE = ReplacingMergeTree
PARTITION BY toDate(TimeUnix)
ORDER BY (ServiceName, MetricName, Attributes, toUnixTimestamp64Nano(TimeUnix), RecordHash)
SETTINGS index_granularity = 8192, ttl_only_drop_parts = 1
"""


def _metric_table(name: str, body: str, hashed: str) -> str:
    # Assembled from constants of this module only: no value ever reaches this text.
    tail = _METRIC_TAIL.replace("{hashed}", f"{_HASHED_HEAD}, {hashed}")
    return f"\nCREATE TABLE IF NOT EXISTS {name} ({_METRIC_HEAD}{body}{tail}"


OTEL_METRICS_GAUGE = _metric_table(
    "otel_metrics_gauge",
    """
    Value Float64 CODEC(ZSTD(1)),
    Flags UInt32 CODEC(ZSTD(1)),"""
    + _EXEMPLARS,
    f"Value, Flags, {_HASHED_EXEMPLARS}",
)

OTEL_METRICS_SUM = _metric_table(
    "otel_metrics_sum",
    """
    Value Float64 CODEC(ZSTD(1)),
    Flags UInt32 CODEC(ZSTD(1)),"""
    + _EXEMPLARS
    + """
    AggregationTemporality Int32 CODEC(ZSTD(1)),
    IsMonotonic Boolean CODEC(Delta, ZSTD(1)),""",
    f"Value, Flags, {_HASHED_EXEMPLARS}, AggregationTemporality, IsMonotonic",
)

OTEL_METRICS_HISTOGRAM = _metric_table(
    "otel_metrics_histogram",
    """
    Count UInt64 CODEC(Delta, ZSTD(1)),
    Sum Float64 CODEC(ZSTD(1)),
    BucketCounts Array(UInt64) CODEC(ZSTD(1)),
    ExplicitBounds Array(Float64) CODEC(ZSTD(1)),"""
    + _EXEMPLARS
    + """
    Flags UInt32 CODEC(ZSTD(1)),
    Min Float64 CODEC(ZSTD(1)),
    Max Float64 CODEC(ZSTD(1)),
    AggregationTemporality Int32 CODEC(ZSTD(1)),""",
    f"Count, Sum, BucketCounts, ExplicitBounds, {_HASHED_EXEMPLARS}, Flags, Min, Max, "
    "AggregationTemporality",
)

OTEL_METRICS_EXPONENTIAL_HISTOGRAM = _metric_table(
    "otel_metrics_exponential_histogram",
    """
    Count UInt64 CODEC(Delta, ZSTD(1)),
    Sum Float64 CODEC(ZSTD(1)),
    Scale Int32 CODEC(ZSTD(1)),
    ZeroCount UInt64 CODEC(ZSTD(1)),
    PositiveOffset Int32 CODEC(ZSTD(1)),
    PositiveBucketCounts Array(UInt64) CODEC(ZSTD(1)),
    NegativeOffset Int32 CODEC(ZSTD(1)),
    NegativeBucketCounts Array(UInt64) CODEC(ZSTD(1)),"""
    + _EXEMPLARS
    + """
    Flags UInt32 CODEC(ZSTD(1)),
    Min Float64 CODEC(ZSTD(1)),
    Max Float64 CODEC(ZSTD(1)),
    AggregationTemporality Int32 CODEC(ZSTD(1)),""",
    "Count, Sum, Scale, ZeroCount, PositiveOffset, PositiveBucketCounts, NegativeOffset, "
    f"NegativeBucketCounts, {_HASHED_EXEMPLARS}, Flags, Min, Max, AggregationTemporality",
)

OTEL_METRICS_SUMMARY = _metric_table(
    "otel_metrics_summary",
    """
    Count UInt64 CODEC(Delta, ZSTD(1)),
    Sum Float64 CODEC(ZSTD(1)),
    ValueAtQuantiles Nested (
        Quantile Float64,
        Value Float64
    ) CODEC(ZSTD(1)),
    Flags UInt32 CODEC(ZSTD(1)),""",
    "Count, Sum, ValueAtQuantiles.Quantile, ValueAtQuantiles.Value, Flags",
)

# One migration: every table of the logs and metrics signals.
SIGNAL_TABLES: tuple[str, ...] = (
    OTEL_LOGS,
    OTEL_METRICS_GAUGE,
    OTEL_METRICS_SUM,
    OTEL_METRICS_HISTOGRAM,
    OTEL_METRICS_EXPONENTIAL_HISTOGRAM,
    OTEL_METRICS_SUMMARY,
)

__all__ = [
    "OTEL_LOGS",
    "OTEL_METRICS_EXPONENTIAL_HISTOGRAM",
    "OTEL_METRICS_GAUGE",
    "OTEL_METRICS_HISTOGRAM",
    "OTEL_METRICS_SUM",
    "OTEL_METRICS_SUMMARY",
    "SIGNAL_TABLES",
]
