"""The warehouse schema as an ordered list of migrations: index + 1 is the version.

Each migration is a tuple of DDL statements, all ``IF NOT EXISTS`` so that re-running a
partly applied migration is harmless. Statements are unqualified: they run in the
connection's database, which is how tests isolate themselves (one database each).

Never edit a migration that has shipped; append a new one.
"""

from __future__ import annotations

# ``otel_traces`` keeps the exact 22 columns of the OpenTelemetry Collector contrib ClickHouse
# exporter, so a stock otelcol-contrib can write here and Grafana reads it in OTel mode.
# Departures from the exporter's classic DDL (REFERENCE.md allows other keys):
# - ReplacingMergeTree keyed by span, because OTLP delivery is at-least-once; queries that must not
#   double-count read with FINAL.
# - ORDER BY (hour, TraceId, SpanId) instead of (ServiceName, SpanName, time): trace lookups (the
#   console's run detail, Grafana's trace view) bound the hour from otel_traces_trace_id_ts and
#   then binary-search TraceId: p95 ~30 ms at 1M spans against ~80 ms with the bloom filter alone,
#   while time-range scans still prune by hour.
OTEL_TRACES = """
CREATE TABLE IF NOT EXISTS otel_traces (
    Timestamp DateTime64(9) CODEC(Delta, ZSTD(1)),
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
    RunId String MATERIALIZED SpanAttributes['omium.run_id'] CODEC(ZSTD(1)),
    INDEX idx_trace_id TraceId TYPE bloom_filter(0.001) GRANULARITY 1,
    INDEX idx_run_id RunId TYPE bloom_filter(0.001) GRANULARITY 1,
    INDEX idx_res_attr_key mapKeys(ResourceAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_res_attr_value mapValues(ResourceAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_span_attr_key mapKeys(SpanAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_span_attr_value mapValues(SpanAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_duration Duration TYPE minmax GRANULARITY 1
) ENGINE = ReplacingMergeTree
PARTITION BY toDate(Timestamp)
ORDER BY (toStartOfHour(Timestamp), TraceId, SpanId)
SETTINGS index_granularity = 8192, ttl_only_drop_parts = 1
"""

OTEL_TRACES_TRACE_ID_TS = """
CREATE TABLE IF NOT EXISTS otel_traces_trace_id_ts (
    TraceId String CODEC(ZSTD(1)),
    Start SimpleAggregateFunction(min, DateTime) CODEC(Delta, ZSTD(1)),
    End SimpleAggregateFunction(max, DateTime) CODEC(Delta, ZSTD(1))
) ENGINE = AggregatingMergeTree
ORDER BY TraceId
SETTINGS index_granularity = 8192
"""

OTEL_TRACES_TRACE_ID_TS_MV = """
CREATE MATERIALIZED VIEW IF NOT EXISTS otel_traces_trace_id_ts_mv TO otel_traces_trace_id_ts AS
SELECT
    TraceId,
    min(toDateTime(Timestamp)) AS Start,
    max(toDateTime(Timestamp)) AS End
FROM otel_traces
WHERE TraceId != ''
GROUP BY TraceId
"""

# --- Omium's runtime tables. Append-only: a state change is a new row with a higher
# version, read back with argMax / FINAL; never UPDATE.

OMIUM_RUNS = """
CREATE TABLE IF NOT EXISTS omium_runs (
    run_id String,
    workflow LowCardinality(String),
    status LowCardinality(String),
    version UInt64,
    parent_run_id String DEFAULT '',
    forked_from String DEFAULT '',
    started_at DateTime64(6, 'UTC'),
    updated_at DateTime64(6, 'UTC'),
    ended_at Nullable(DateTime64(6, 'UTC')),
    error String DEFAULT '',
    attributes Map(LowCardinality(String), String)
) ENGINE = ReplacingMergeTree(version)
ORDER BY run_id
"""

OMIUM_STATE_BLOBS = """
CREATE TABLE IF NOT EXISTS omium_state_blobs (
    hash FixedString(64),
    data String CODEC(ZSTD(3)),
    size UInt64,
    created_at DateTime64(6, 'UTC') DEFAULT now64(6)
) ENGINE = ReplacingMergeTree
ORDER BY hash
"""

OMIUM_CHECKPOINTS = """
CREATE TABLE IF NOT EXISTS omium_checkpoints (
    run_id String,
    seq UInt32,
    checkpoint_id String,
    name String,
    agent LowCardinality(String),
    step_index UInt32,
    state_hash String,
    parent_checkpoint_id String DEFAULT '',
    metadata String DEFAULT '{}',
    created_at DateTime64(6, 'UTC')
) ENGINE = ReplacingMergeTree
ORDER BY (run_id, seq)
"""

OMIUM_STEPS = """
CREATE TABLE IF NOT EXISTS omium_steps (
    run_id String,
    position UInt32,
    attempt UInt16,
    kind LowCardinality(String),
    name String,
    agent LowCardinality(String),
    status LowCardinality(String),
    input_hash String,
    output_hash String,
    error String DEFAULT '',
    idempotency_key String,
    started_at DateTime64(6, 'UTC'),
    ended_at DateTime64(6, 'UTC')
) ENGINE = ReplacingMergeTree
ORDER BY (run_id, position, attempt)
"""

OMIUM_HANDOFFS = """
CREATE TABLE IF NOT EXISTS omium_handoffs (
    run_id String,
    channel String,
    seq UInt64,
    version UInt64,
    sender LowCardinality(String),
    receiver LowCardinality(String),
    schema_name String,
    payload_hash String,
    status LowCardinality(String),
    reason String DEFAULT '',
    depends_on Map(String, UInt64),
    trace_id String DEFAULT '',
    span_id String DEFAULT '',
    created_at DateTime64(6, 'UTC')
) ENGINE = ReplacingMergeTree(version)
ORDER BY (run_id, channel, seq)
"""

OMIUM_SHARED_STATE = """
CREATE TABLE IF NOT EXISTS omium_shared_state (
    namespace String,
    key String,
    version UInt64,
    value_hash String,
    writer LowCardinality(String),
    run_id String,
    written_at DateTime64(6, 'UTC')
) ENGINE = ReplacingMergeTree
ORDER BY (namespace, key, version)
"""

OMIUM_EVENTS = """
CREATE TABLE IF NOT EXISTS omium_events (
    event_id String,
    run_id String,
    kind LowCardinality(String),
    actor String,
    reason String,
    before String DEFAULT '',
    after String DEFAULT '',
    attributes Map(LowCardinality(String), String),
    ts DateTime64(6, 'UTC')
) ENGINE = ReplacingMergeTree
ORDER BY (run_id, ts, event_id)
"""

OMIUM_COMMANDS = """
CREATE TABLE IF NOT EXISTS omium_commands (
    command_id String,
    run_id String,
    kind LowCardinality(String),
    payload String,
    status LowCardinality(String),
    version UInt64,
    worker String DEFAULT '',
    created_at DateTime64(6, 'UTC'),
    updated_at DateTime64(6, 'UTC')
) ENGINE = ReplacingMergeTree(version)
ORDER BY command_id
"""

OMIUM_REVIEWS = """
CREATE TABLE IF NOT EXISTS omium_reviews (
    review_id String,
    run_id String,
    decision LowCardinality(String),
    reviewer String,
    edits String DEFAULT '{}',
    reason String DEFAULT '',
    ts DateTime64(6, 'UTC')
) ENGINE = ReplacingMergeTree
ORDER BY (run_id, ts, review_id)
"""

MIGRATIONS_TABLE = """
CREATE TABLE IF NOT EXISTS omium_migrations (
    version UInt32,
    applied_at DateTime64(6, 'UTC') DEFAULT now64(6)
) ENGINE = ReplacingMergeTree
ORDER BY version
"""

# Hand-offs remember the idempotency keys of the call that sent and the call that received them,
# so a send or receive re-executed after a crash finds its own message instead of making another.
HANDOFF_KEYS = (
    "ALTER TABLE omium_handoffs ADD COLUMN IF NOT EXISTS send_key String DEFAULT ''",
    "ALTER TABLE omium_handoffs ADD COLUMN IF NOT EXISTS receive_key String DEFAULT ''",
)

# Workers lease commands: until when, how many times a command was claimed, and what it produced.
COMMAND_LEASES = (
    "ALTER TABLE omium_commands ADD COLUMN IF NOT EXISTS lease_until Int64 DEFAULT 0",
    "ALTER TABLE omium_commands ADD COLUMN IF NOT EXISTS attempts UInt32 DEFAULT 0",
    "ALTER TABLE omium_commands ADD COLUMN IF NOT EXISTS result String DEFAULT ''",
)

# Labels of imported runs (public failure datasets), next to their traces.
GROUND_TRUTH = (
    """
CREATE TABLE IF NOT EXISTS omium_ground_truth (
    run_id String,
    source LowCardinality(String),
    source_id String,
    failed Bool,
    mistake_agent String DEFAULT '',
    mistake_step Int32 DEFAULT -1,
    mistake_reason String DEFAULT '',
    task_id String DEFAULT '',
    reward Float64 DEFAULT nan,
    question String DEFAULT '',
    imported_at DateTime64(6, 'UTC')
) ENGINE = ReplacingMergeTree(imported_at)
ORDER BY run_id
""",
)

# Index + 1 = version. Append only.
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (OTEL_TRACES, OTEL_TRACES_TRACE_ID_TS, OTEL_TRACES_TRACE_ID_TS_MV),
    (
        OMIUM_RUNS,
        OMIUM_STATE_BLOBS,
        OMIUM_CHECKPOINTS,
        OMIUM_STEPS,
        OMIUM_HANDOFFS,
        OMIUM_SHARED_STATE,
        OMIUM_EVENTS,
        OMIUM_COMMANDS,
        OMIUM_REVIEWS,
    ),
    HANDOFF_KEYS,
    COMMAND_LEASES,
    GROUND_TRUTH,
)

__all__ = ["MIGRATIONS", "MIGRATIONS_TABLE"]
