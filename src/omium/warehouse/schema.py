"""The warehouse schema as an ordered list of migrations: index + 1 is the version.

Each migration is a tuple of DDL statements, all ``IF NOT EXISTS`` so that re-running a
partly applied migration is harmless. Statements are unqualified: they run in the
connection's database, which is how tests isolate themselves (one database each).

Never edit a migration that has shipped; append a new one.
"""

from __future__ import annotations

from omium.warehouse import trace_summaries
from omium.warehouse.signal_tables import SIGNAL_TABLES

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

# Tables the Dagster pipelines derive (omium.pipelines). Each is rebuilt per day partition or per
# run, so rows are replaced by key (ReplacingMergeTree on a build time) and re-materialising a
# partition never double-counts when read with FINAL or argMax.
PIPELINE_TABLES = (
    # One row per span with the agent, operation, tool, tokens, provider and session resolved by the
    # REFERENCE.md section 3 cascade, so GenAI-convention, OpenInference and Omium spans read alike.
    """
CREATE TABLE IF NOT EXISTS omium_normalized_spans (
    day Date,
    run_id String,
    trace_id String,
    span_id String,
    parent_span_id String,
    ts DateTime64(9, 'UTC'),
    duration_ms Float64,
    span_name LowCardinality(String),
    service LowCardinality(String),
    agent String,
    operation LowCardinality(String),
    tool String,
    provider LowCardinality(String),
    model String,
    session String,
    input_tokens UInt64,
    output_tokens UInt64,
    status LowCardinality(String),
    error_type String,
    step_index Int32,
    role LowCardinality(String),
    handoff_verdict LowCardinality(String),
    producer_span_id String,
    content String,
    tool_calls String,
    built_at DateTime64(6, 'UTC')
) ENGINE = ReplacingMergeTree(built_at)
PARTITION BY day
ORDER BY (run_id, span_id)
""",
    # Per-run dependency edges: span parentage, hand-off links and shared-state reads.
    """
CREATE TABLE IF NOT EXISTS omium_run_edges (
    day Date,
    run_id String,
    source String,
    target String,
    kind LowCardinality(String),
    count UInt32,
    errors UInt32,
    detail String,
    built_at DateTime64(6, 'UTC')
) ENGINE = ReplacingMergeTree(built_at)
PARTITION BY day
ORDER BY (run_id, kind, source, target)
""",
    # The cross-run agent graph per window (a day): calls, errors, latency and tokens per edge.
    """
CREATE TABLE IF NOT EXISTS omium_agent_edges (
    day Date,
    source String,
    target String,
    runs UInt32,
    calls UInt64,
    errors UInt64,
    error_rate Float64,
    p50_ms Float64,
    p95_ms Float64,
    tokens UInt64,
    built_at DateTime64(6, 'UTC')
) ENGINE = ReplacingMergeTree(built_at)
PARTITION BY day
ORDER BY (day, source, target)
""",
    """
CREATE TABLE IF NOT EXISTS omium_step_features (
    day Date,
    run_id String,
    step_index Int32,
    span_id String,
    agent String,
    features Map(LowCardinality(String), Float64),
    built_at DateTime64(6, 'UTC')
) ENGINE = ReplacingMergeTree(built_at)
PARTITION BY day
ORDER BY (run_id, step_index, span_id)
""",
    """
CREATE TABLE IF NOT EXISTS omium_run_features (
    day Date,
    run_id String,
    source LowCardinality(String),
    steps UInt32,
    features Map(LowCardinality(String), Float64),
    built_at DateTime64(6, 'UTC')
) ENGINE = ReplacingMergeTree(built_at)
PARTITION BY day
ORDER BY run_id
""",
    # Failure labels in the product's taxonomy, with the MAST code where one is known.
    """
CREATE TABLE IF NOT EXISTS omium_failure_labels (
    day Date,
    run_id String,
    failed Bool,
    failure_class LowCardinality(String),
    mast_code LowCardinality(String),
    label_source LowCardinality(String),
    evidence String,
    built_at DateTime64(6, 'UTC')
) ENGINE = ReplacingMergeTree(built_at)
PARTITION BY day
ORDER BY run_id
""",
    # Model registry: one row per trained version with its held-out evaluation (JSON). The fitted
    # object lives beside the Dagster storage, named by its sha256, which is this row's version.
    """
CREATE TABLE IF NOT EXISTS omium_models (
    model_name LowCardinality(String),
    model_version String,
    trained_at DateTime64(6, 'UTC'),
    training_rows UInt32,
    metrics String,
    params String,
    artifact_path String
) ENGINE = ReplacingMergeTree(trained_at)
ORDER BY (model_name, model_version)
""",
    """
CREATE TABLE IF NOT EXISTS omium_predictions (
    run_id String,
    model_version String,
    k UInt16,
    risk Float64,
    steps_seen UInt32,
    predicted_at DateTime64(6, 'UTC')
) ENGINE = ReplacingMergeTree(predicted_at)
ORDER BY (run_id, model_version, k)
""",
    """
CREATE TABLE IF NOT EXISTS omium_failure_classes (
    run_id String,
    failure_class LowCardinality(String),
    confidence Float64,
    model_version String,
    classified_at DateTime64(6, 'UTC')
) ENGINE = ReplacingMergeTree(classified_at)
ORDER BY run_id
""",
    # For every failed run: the responsible agent and step (0-based position in the run) with the
    # evidence chain that led there, for the console and Grafana.
    """
CREATE TABLE IF NOT EXISTS omium_root_causes (
    run_id String,
    agent String,
    step_index Int32,
    span_id String,
    confidence Float64,
    failure_class LowCardinality(String),
    evidence String,
    method LowCardinality(String),
    model_version String,
    created_at DateTime64(6, 'UTC')
) ENGINE = ReplacingMergeTree(created_at)
ORDER BY run_id
""",
)

# Issue 14, concurrent agents in one run: a recorded call's scheduling-independent identity
# ("3.0.2"), the rollback generation it was recorded in, and the fencing token of the lease its
# writer held; and the run leases themselves (one execution per run). A lease changes by new
# rows: the highest version of a run's row is its current lease.
RUN_LEASES = (
    "ALTER TABLE omium_steps ADD COLUMN IF NOT EXISTS call_id String DEFAULT ''",
    "ALTER TABLE omium_steps ADD COLUMN IF NOT EXISTS generation UInt32 DEFAULT 0",
    "ALTER TABLE omium_steps ADD COLUMN IF NOT EXISTS fence UInt64 DEFAULT 0",
    "ALTER TABLE omium_checkpoints ADD COLUMN IF NOT EXISTS call_id String DEFAULT ''",
    "ALTER TABLE omium_checkpoints ADD COLUMN IF NOT EXISTS generation UInt32 DEFAULT 0",
    "ALTER TABLE omium_checkpoints ADD COLUMN IF NOT EXISTS fence UInt64 DEFAULT 0",
    "ALTER TABLE omium_handoffs ADD COLUMN IF NOT EXISTS fence UInt64 DEFAULT 0",
    """
CREATE TABLE IF NOT EXISTS omium_run_leases (
    run_id String,
    holder String,
    fence UInt64,
    lease_until Int64,
    acquired_at DateTime64(6, 'UTC'),
    version UInt64
) ENGINE = ReplacingMergeTree(version)
ORDER BY run_id
""",
)

# Issue 16, normalisation by convention (omium.conventions) and cost (omium.pipelines.prices): the
# span's user, cached / cache-write / reasoning tokens, what went in and came out, and its cost in
# USD with the price data it came from (NULL when the model's price is unknown, never 0).
NORMALIZED_SPANS_CONVENTIONS = (
    "ALTER TABLE omium_normalized_spans ADD COLUMN IF NOT EXISTS user String DEFAULT ''",
    "ALTER TABLE omium_normalized_spans ADD COLUMN IF NOT EXISTS cached_tokens UInt64 DEFAULT 0",
    "ALTER TABLE omium_normalized_spans ADD COLUMN IF NOT EXISTS cache_write_tokens UInt64 DEFAULT 0",
    "ALTER TABLE omium_normalized_spans ADD COLUMN IF NOT EXISTS reasoning_tokens UInt64 DEFAULT 0",
    "ALTER TABLE omium_normalized_spans ADD COLUMN IF NOT EXISTS input_content String DEFAULT ''",
    "ALTER TABLE omium_normalized_spans ADD COLUMN IF NOT EXISTS output_content String DEFAULT ''",
    "ALTER TABLE omium_normalized_spans ADD COLUMN IF NOT EXISTS cost_usd Nullable(Float64)",
    "ALTER TABLE omium_normalized_spans ADD COLUMN IF NOT EXISTS price_source LowCardinality(String) "
    "DEFAULT ''",
)

# Issue 16, a retried request never duplicates rows: the digest of every OTLP request body written,
# which the span writer looks up before writing (collector/writer.py says why not ClickHouse's
# insert deduplication). Retries come within minutes: a day of digests is plenty.
INGEST_REQUESTS = (
    """
CREATE TABLE IF NOT EXISTS omium_ingest_requests (
    digest String,
    written_at DateTime DEFAULT now()
) ENGINE = ReplacingMergeTree
ORDER BY digest
TTL written_at + INTERVAL 1 DAY
""",
)

# Issue 18, one root cause per method: a run holds one row per method that produced a result
# (runtime_chain, attribution_model or first_error, judge_<method>, counterfactual verification),
# keyed (run_id, method), each with an explicit verdict: 'known', 'unknown' (the method fell below
# its threshold: agent '' and step -1, its best guess only in the evidence), 'verified' or
# 'not_verified' (counterfactual replay). A sorting key cannot be altered: the rows are copied into
# a new table that then takes the old one's name. Each statement is safe to rerun from any point of
# an interrupted run: the copy is idempotent (the same rows collapse under the new key, and rows
# already in the new shape copy to themselves: unknown ones already have agent ''), and the old
# table is dropped only after its rows were copied (re-created empty first when a run stopped
# between the drop and the rename). A verdict is derived from the evidence on the copy (old rows
# said "unknown" by their first line), so a row written as 'verified' by a process between a
# rerun's rename and the version's record would be copied as 'known': that window is one statement.
ROOT_CAUSES_BY_METHOD = (
    """
CREATE TABLE IF NOT EXISTS omium_root_causes_by_method (
    run_id String,
    agent String,
    step_index Int32,
    span_id String,
    confidence Float64,
    failure_class LowCardinality(String),
    evidence String,
    method LowCardinality(String),
    model_version String,
    created_at DateTime64(6, 'UTC'),
    verdict LowCardinality(String) DEFAULT if(startsWith(evidence, '["unknown'), 'unknown', 'known')
) ENGINE = ReplacingMergeTree(created_at)
ORDER BY (run_id, method)
""",
    """
CREATE TABLE IF NOT EXISTS omium_root_causes (
    run_id String,
    agent String,
    step_index Int32,
    span_id String,
    confidence Float64,
    failure_class LowCardinality(String),
    evidence String,
    method LowCardinality(String),
    model_version String,
    created_at DateTime64(6, 'UTC')
) ENGINE = ReplacingMergeTree(created_at)
ORDER BY run_id
""",
    """
INSERT INTO omium_root_causes_by_method (run_id, agent, step_index, span_id, confidence, failure_class,
    evidence, method, model_version, created_at, verdict)
SELECT run_id, if(unknown, '', agent), if(unknown, -1, step_index), if(unknown, '', span_id), confidence,
    failure_class, evidence, method, model_version, created_at, if(unknown, 'unknown', 'known')
FROM (SELECT *, startsWith(evidence, '["unknown') AS unknown FROM omium_root_causes)
""",
    "DROP TABLE IF EXISTS omium_root_causes",
    "RENAME TABLE omium_root_causes_by_method TO omium_root_causes",
)

# Issue 17, run detail shows every try of every step: omium_steps keyed by try, so a failed try, a
# retry and a re-execution after a rollback or a resume are rows of their own (the shipper ships an
# overwritten try as it was: control migration 0004). The old key (run, position, attempt) merged a
# rolled-back generation's try into the re-executed one. A sorting key cannot be altered: the rows
# are copied into a table of the new key, which is exchanged for the old one. Idempotent: a rerun
# after an interruption drops what is left of the copy (the old table, once exchanged) and copies
# again; a copy of a table already keyed so changes nothing.
STEP_TRIES = (
    "DROP TABLE IF EXISTS omium_steps_rekeyed",
    "CREATE TABLE omium_steps_rekeyed AS omium_steps "
    "ENGINE = ReplacingMergeTree ORDER BY (run_id, position, generation, attempt, started_at)",
    "INSERT INTO omium_steps_rekeyed SELECT * FROM omium_steps",
    "EXCHANGE TABLES omium_steps AND omium_steps_rekeyed",
    "DROP TABLE omium_steps_rekeyed",
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
    PIPELINE_TABLES,
    RUN_LEASES,
    # Issue 16: the logs and metrics signals (otel_logs, otel_metrics_*): see signal_tables.py.
    SIGNAL_TABLES,
    NORMALIZED_SPANS_CONVENTIONS,
    INGEST_REQUESTS,
    ROOT_CAUSES_BY_METHOD,
    STEP_TRIES,
    # Issue 17, the console at ten million spans: per-trace facts kept at write time.
    trace_summaries.MIGRATION,
)

__all__ = ["MIGRATIONS", "MIGRATIONS_TABLE"]
