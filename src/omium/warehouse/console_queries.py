"""The console's queries: run health, trends, failure rates, run search, hand-offs and incidents;
every run and trace (Omium's and any OTel instrumentation's), a trace's spans and a session's traces.

Every query binds its parameters server-side and returns a polars DataFrame (a run's step tries:
the control store's records, to merge with its live rows); the console's data module caches them.
Reads of versioned tables use FINAL (the latest version of each row).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from omium import conventions
from omium.pipelines import prices
from omium.sdk.store import StepRecord
from omium.warehouse.connection import Warehouse

if TYPE_CHECKING:
    import polars as pl

FAILED = "('failed', 'paused', 'rejected')"

RUN_HEALTH = f"""
SELECT count() AS executions,
       countIf(status = 'completed') AS completed,
       countIf(status IN {FAILED}) AS failing,
       countIf(status = 'paused') AS paused,
       countIf(status IN ('running', 'queued')) AS in_flight
FROM omium_runs FINAL
WHERE started_at >= {{since:DateTime64(6)}}
"""  # noqa: S608 - a constant, not user input

# Rollbacks that recovered (the run completed), reviews, and time from detection to settling.
INCIDENT_HEALTH = """
WITH incidents AS (
    SELECT attributes['incident'] AS incident, any(run_id) AS run_id,
           minIf(ts, kind = 'detected') AS detected,
           minIf(ts, kind IN ('completed', 'paused', 'failed')) AS settled,
           countIf(kind = 'rolled_back') AS rolled,
           countIf(kind = 'reviewed') AS reviews,
           countIf(kind = 'detected') AS detections
    FROM omium_events FINAL
    WHERE ts >= {since:DateTime64(6)} AND attributes['incident'] != ''
    GROUP BY incident
)
SELECT count() AS incidents,
       sum(rolled) AS rollbacks,
       countIf(rolled > 0 AND run_id IN (SELECT run_id FROM omium_runs FINAL WHERE status = 'completed'))
           AS recovered_rollbacks,
       uniqExactIf(
           run_id,
           detections > 0 AND run_id IN (SELECT run_id FROM omium_runs FINAL WHERE status = 'completed')
       ) AS recovered_runs,
       sum(reviews) AS interventions,
       quantileIf(0.5)(dateDiff('millisecond', detected, settled) / 1000, settled > detected)
           AS p50_recovery_s,
       quantileIf(0.99)(dateDiff('millisecond', detected, settled) / 1000, settled > detected)
           AS p99_recovery_s
FROM incidents
"""

# The bucket is cast to DateTime64: a plain DateTime reaches Arrow (and the chart) as a UInt32 of
# epoch seconds, which the chart's axis printed as numbers.
RUN_TREND = f"""
SELECT toDateTime64(toStartOfInterval(started_at, INTERVAL {{bucket_minutes:UInt32}} MINUTE), 0, 'UTC')
           AS bucket,
       count() AS executions,
       countIf(status = 'completed') AS completed,
       countIf(status IN {FAILED}) AS failing
FROM omium_runs FINAL
WHERE started_at >= {{since:DateTime64(6)}}
GROUP BY bucket
ORDER BY bucket
"""  # noqa: S608

FAILURES_BY_WORKFLOW = f"""
SELECT workflow, count() AS runs, countIf(status IN {FAILED}) AS failing,
       round(failing / runs, 4) AS failure_rate
FROM omium_runs FINAL
WHERE started_at >= {{since:DateTime64(6)}}
GROUP BY workflow
ORDER BY failure_rate DESC, runs DESC
"""  # noqa: S608

FAILURES_BY_AGENT = """
SELECT agent, count() AS calls, countIf(status = 'failed') AS failed,
       round(failed / calls, 4) AS failure_rate
FROM omium_steps FINAL
WHERE ended_at >= {since:DateTime64(6)} AND agent != ''
GROUP BY agent
ORDER BY failure_rate DESC, calls DESC
"""

RUN_FILTER = """
WHERE ({workflow:String} = '' OR workflow = {workflow:String})
  AND ({status:String} = '' OR status = {status:String})
  AND started_at >= {since:DateTime64(6)} AND started_at <= {until:DateTime64(6)}
  AND ({agent:String} = ''
       OR run_id IN (SELECT DISTINCT run_id FROM omium_steps WHERE agent = {agent:String}))
  AND ({text:String} = ''
       OR positionCaseInsensitive(run_id, {text:String}) > 0
       OR positionCaseInsensitive(error, {text:String}) > 0
       OR arrayExists(v -> positionCaseInsensitive(v, {text:String}) > 0, mapValues(attributes)))
"""

RUN_SEARCH = f"""
SELECT run_id, workflow, status, started_at, updated_at, error, parent_run_id,
       attributes['incident'] AS incident
FROM omium_runs FINAL
{RUN_FILTER}
ORDER BY started_at DESC, run_id DESC
LIMIT {{limit:UInt32}} OFFSET {{offset:UInt32}}
"""  # noqa: S608
RUN_COUNT = f"SELECT count() FROM omium_runs FINAL {RUN_FILTER}"  # noqa: S608

WORKFLOWS = """
SELECT workflow, count() AS runs, max(started_at) AS last_run
FROM omium_runs FINAL
GROUP BY workflow
ORDER BY last_run DESC
"""

WORKFLOW_AGENTS = """
SELECT r.workflow AS workflow, s.agent AS agent, count() AS calls, groupUniqArray(s.kind) AS kinds
FROM omium_steps AS s FINAL
INNER JOIN (SELECT run_id, workflow FROM omium_runs FINAL) AS r ON r.run_id = s.run_id
WHERE s.agent != ''
GROUP BY workflow, agent
ORDER BY workflow, agent
"""

WORKFLOW_CHECKPOINTS = """
SELECT r.workflow AS workflow, c.name AS checkpoint, count() AS times,
       round(avg(c.step_index), 1) AS mean_position
FROM omium_checkpoints AS c FINAL
INNER JOIN (SELECT run_id, workflow FROM omium_runs FINAL) AS r ON r.run_id = c.run_id
GROUP BY workflow, checkpoint
ORDER BY workflow, mean_position
"""

RUN_HANDOFFS = """
SELECT channel, seq, sender, receiver, schema_name, status, reason, send_key, receive_key,
       depends_on, trace_id, span_id, payload_hash, created_at
FROM omium_handoffs FINAL
WHERE run_id = {run_id:String}
ORDER BY created_at, channel, seq
"""

PAUSED_RUNS = """
SELECT run_id, workflow, updated_at, attributes['awaiting'] AS awaiting,
       attributes['incident'] AS incident,
       attributes['failure'] AS failure, attributes['policy'] AS policy,
       attributes['rolled_back_to'] AS checkpoint
FROM omium_runs FINAL
WHERE status = 'paused' AND attributes['awaiting'] != ''
ORDER BY updated_at DESC
LIMIT {limit:UInt32}
"""

LATEST_RUN = "SELECT run_id FROM omium_runs FINAL ORDER BY updated_at DESC LIMIT 1"


# --- Every run and trace (issue 17), at ten million spans.
#
# Two steps. First the page: per-trace facts kept at write time (omium_trace_summaries, one row per
# trace and insert, grouped here) are grouped into runs by ``omium.run_id``, else the conventions'
# session, else the trace id; Omium runs without spans in the window still list (FULL JOIN on
# omium_runs), and an Omium run's status, workflow and error come from omium_runs. Filters, paging
# and the count read only those facts, none of which a re-sent span changes. Then the figures of
# the page's traces only (tokens, cost, span and error counts: sums, which a re-sent span would
# change) are read from otel_traces FINAL, bounded by the traces' hours (TRACE_FIGURES). A search
# of message text scans the window's spans (TEXT_HITS): the one filter the facts cannot answer.

SOURCES = ("OTLP client", "SDK", "adapter", "import")
_WINDOW = "Timestamp >= {since:DateTime64(6)} AND Timestamp <= {until:DateTime64(6)}"

# The facts of each trace that started in the window (of the session, if one is given). A trace's
# facts are one row once its inserts' rows merged (nearly all: merges run within seconds); the few
# traces still split over rows are grouped here, the rest read as they are (grouping every trace
# costs ten times more at 400k traces).
_TRACE_FACTS = """
    split AS (SELECT TraceId FROM omium_trace_summaries GROUP BY TraceId HAVING count() > 1),
    traces AS (
        SELECT TraceId AS trace_id, Start AS started, End AS ended,
               RunId AS trace_run, Session AS trace_session, User AS trace_user, Agents AS agents,
               HasError AS has_error, FirstError.2 AS first_error, HasRoot AS has_root,
               RootFailed AS root_failed, Root.2 AS root_name, SourceRank AS source_rank
        FROM omium_trace_summaries
        WHERE Start >= {since:DateTime64(6)} AND Start <= {until:DateTime64(6)}
          AND ({session:String} = '' OR Session = {session:String})
          AND TraceId NOT IN split
        UNION ALL
        SELECT TraceId, min(Start) AS started, max(End), max(RunId), max(Session) AS session, max(User),
               groupUniqArrayArray(Agents), max(HasError), min(FirstError).2, max(HasRoot), max(RootFailed),
               min(Root).2, max(SourceRank)
        FROM omium_trace_summaries
        WHERE TraceId IN split
        GROUP BY TraceId
        HAVING started >= {since:DateTime64(6)} AND started <= {until:DateTime64(6)}
           AND ({session:String} = '' OR session = {session:String})
    )"""

# Traces with a span or an event log record whose message text matches the search (none, and no
# read, without one).
_TEXT_HITS = f"""
    hits AS (
        SELECT TraceId FROM otel_traces
        WHERE {{text:String}} != '' AND {_WINDOW}
          AND (positionCaseInsensitive({conventions.field_sql("input_content")}, {{text:String}}) > 0
               OR positionCaseInsensitive({conventions.field_sql("output_content")}, {{text:String}}) > 0
               OR positionCaseInsensitive(StatusMessage, {{text:String}}) > 0
               OR positionCaseInsensitive(SpanAttributes['error.type'], {{text:String}}) > 0)
        UNION DISTINCT
        SELECT TraceId FROM otel_logs
        WHERE {{text:String}} != '' AND TraceId != ''
          AND TimestampTime >= toDateTime({{since:DateTime64(6)}})
          AND TimestampTime <= toDateTime({{until:DateTime64(6)}}) + 1
          AND (positionCaseInsensitive(Body, {{text:String}}) > 0
               OR arrayExists(v -> positionCaseInsensitive(v, {{text:String}}) > 0, mapValues(LogAttributes)))
    )"""  # noqa: S608 - constants and server-side parameters only

_RUNS_OF_TRACES = f"""
    runs AS (
        SELECT coalesce(nullIf(trace_run, ''), nullIf(trace_session, ''), trace_id) AS run_key,
               multiIf(any(trace_run) != '', 'run', any(trace_session) != '', 'session', 'trace')
                   AS grouped_by,
               any(trace_session) AS r_session, anyIf(trace_user, trace_user != '') AS r_user,
               min(started) AS r_started, max(ended) AS r_ended,
               max(has_error) AS r_has_error,
               argMinIf(first_error, started, first_error != '') AS r_error,
               multiIf(countIf(NOT has_root) > 0, 'running', countIf(root_failed) > 0, 'failed', 'completed')
                   AS trace_status,
               argMin(root_name, started) AS root_name,
               max(source_rank) AS r_source,
               count() AS r_traces,
               argMin(trace_id, started) AS r_first,
               -- The filters on agents and trace ids, as flags: the lists are read for the page only.
               {{agent:String}} = '' OR max(has(agents, {{agent:String}})) AS r_agent_hit,
               {{text:String}} != '' AND max(trace_id IN hits
                   OR positionCaseInsensitive(trace_id, {{text:String}}) > 0
                   OR arrayExists(a -> positionCaseInsensitive(a, {{text:String}}) > 0, agents)) AS r_hit
        FROM traces
        GROUP BY run_key
    ),
    omium AS (
        SELECT run_id, workflow, status, started_at, updated_at, ended_at, error
        FROM omium_runs FINAL
        WHERE started_at >= {{since:DateTime64(6)}} AND started_at <= {{until:DateTime64(6)}}
    ),
    merged AS (
        SELECT if(o.run_id != '', o.run_id, r.run_key) AS run_id,
               if(o.run_id != '', 'run', r.grouped_by) AS grouped_by,
               o.run_id != '' AS recorded,
               if(o.run_id != '', o.workflow, r.root_name) AS name,
               if(o.run_id != '', o.status, r.trace_status) AS status,
               if(o.run_id != '', o.started_at, toDateTime64(r.r_started, 6, 'UTC')) AS started,
               if(r.run_key != '', dateDiff('millisecond', r.r_started, r.r_ended),
                  dateDiff('millisecond', o.started_at, coalesce(o.ended_at, o.updated_at))) / 1000
                   AS duration_s,
               r.r_has_error AS has_error_span,
               if(o.error != '', o.error, r.r_error) AS error,
               if(r.run_key = '', 'SDK', arrayElement({list(SOURCES)!r}, r.r_source + 1)) AS source,
               r.r_session AS session, r.r_user AS user,
               r.r_traces AS traces, r.r_first AS first_trace,
               if(r.run_key != '', r.r_agent_hit, {{agent:String}} = '') AS agent_hit,
               r.r_hit AS text_hit
        FROM runs AS r
        FULL OUTER JOIN omium AS o ON o.run_id = r.run_key
    )"""  # noqa: S608

_RUN_LIST_FILTER = """
WHERE ({status:String} = '' OR status = {status:String})
  AND agent_hit
  AND ({source:String} = '' OR source = {source:String})
  AND ({name:String} = '' OR name = {name:String})
  AND (NOT {errors_only:Bool} OR error != '' OR has_error_span)
  AND ({text:String} = ''
       OR text_hit
       OR positionCaseInsensitive(run_id, {text:String}) > 0
       OR positionCaseInsensitive(session, {text:String}) > 0
       OR positionCaseInsensitive(user, {text:String}) > 0
       OR positionCaseInsensitive(name, {text:String}) > 0
       OR positionCaseInsensitive(error, {text:String}) > 0)"""

# One query: the page of runs and, as a window count, how many match (RUN_TRACES adds the page's
# agents and traces).
RUN_LIST = f"""
WITH {_TRACE_FACTS},
{_TEXT_HITS},
{_RUNS_OF_TRACES}
SELECT run_id, grouped_by, recorded, name, status, started, duration_s, error, source, session,
       traces, first_trace, count() OVER () AS total
FROM merged
{_RUN_LIST_FILTER}
ORDER BY started DESC, run_id DESC
LIMIT {{limit:UInt32}} OFFSET {{offset:UInt32}}
"""  # noqa: S608

# The agents and traces of the given runs (keys of RUN_LIST's grouping), with the traces' time span.
RUN_TRACES = """
SELECT run_key AS run_id, arraySort(arrayDistinct(arrayFlatten(groupArray(agents)))) AS agents,
       groupArray(TraceId) AS trace_ids, min(started) AS lo, max(ended) AS hi
FROM (
    SELECT TraceId, min(Start) AS started, max(End) AS ended, groupUniqArrayArray(Agents) AS agents,
           coalesce(nullIf(max(RunId), ''), nullIf(max(Session), ''), TraceId) AS run_key
    FROM omium_trace_summaries
    WHERE TraceId IN (SELECT TraceId FROM omium_trace_summaries
                      WHERE RunId IN {runs:Array(String)} OR Session IN {runs:Array(String)}
                         OR TraceId IN {runs:Array(String)})
    GROUP BY TraceId
    HAVING started >= {since:DateTime64(6)} AND started <= {until:DateTime64(6)}
       AND run_key IN {runs:Array(String)}
)
GROUP BY run_key
"""

# The traces of one session in the order they started (one row each; figures from TRACE_FIGURES).
SESSION_TRACES = f"""
WITH {_TRACE_FACTS}
SELECT trace_id, trace_run AS run_id, toDateTime64(started, 6, 'UTC') AS started,
       dateDiff('millisecond', started, ended) / 1000 AS duration_s,
       root_name AS name,
       multiIf(NOT has_root, 'running', root_failed, 'failed', 'completed') AS status,
       agents, first_error AS error, trace_user AS user, [trace_id] AS trace_ids, started AS lo, ended AS hi
FROM traces
WHERE trace_session = {{session:String}}
ORDER BY started, trace_id
LIMIT {{limit:UInt32}}
"""  # noqa: S608

# The (provider, model) pairs of the traces that started in the window, to price them.
TRACE_MODELS = """
SELECT DISTINCT splitByChar('|', key)[1] AS provider, substring(key, position(key, '|') + 1) AS model
FROM omium_trace_summaries ARRAY JOIN Models AS key
WHERE Start >= {since:DateTime64(6)} AND Start <= {until:DateTime64(6)}
ORDER BY provider, model
"""

# Figures of the given traces, exact (FINAL: a re-sent span counts once), from their spans only:
# the primary key (hour, TraceId) bounds the read to the traces' hours.
TRACE_FIGURES = f"""
SELECT trace_id, sum(input_tokens) AS input_tokens, sum(output_tokens) AS output_tokens,
       sum(cost_usd) AS cost_usd, count() AS spans, countIf(error) AS error_spans
FROM (
    SELECT trace_id, error, input_tokens, output_tokens, {prices.COST_SQL}
    FROM (
        SELECT TraceId AS trace_id, StatusCode IN ('Error', 'STATUS_CODE_ERROR') AS error,
               {conventions.DEFAULT.select_sql(("provider", "model"))},
               {conventions.DEFAULT.select_sql(conventions.TOKEN_FIELDS[:3])},
               {conventions.field_sql("cache_write_tokens")} AS cache_write_tokens
        FROM otel_traces FINAL
        -- PREWHERE: the attribute maps are read for the traces' rows only (0.3 s instead of 0.5 s
        -- for 250 traces at 10M spans; TraceId is a sorting-key column, so FINAL stays exact).
        PREWHERE TraceId IN {{traces:Array(String)}}
        WHERE Timestamp >= {{lo:DateTime64(9)}} AND Timestamp <= {{hi:DateTime64(9)}}
    )
)
GROUP BY trace_id
"""  # noqa: S608

# Every span of a trace (``trace``) or of every trace of an Omium run (``run``), in start order,
# bounded in time by otel_traces_trace_id_ts (Start/End per trace) so the scan is the traces' hours.
# Event log records (otel_logs) of each span come along as arrays, for conversations sent as events.
TRACE_SPANS = f"""
WITH wanted AS (
        SELECT DISTINCT TraceId FROM otel_traces
        WHERE ({{trace:String}} != '' AND TraceId = {{trace:String}})
           OR ({{run:String}} != '' AND RunId = {{run:String}})
    ),
    bounds AS (
        SELECT min(Start) - 60 AS lo, max(End) + 60 AS hi
        FROM otel_traces_trace_id_ts WHERE TraceId IN wanted
    ),
    logs AS (
        SELECT TraceId, SpanId,
               groupArray((Timestamp, if(EventName != '', EventName, LogAttributes['event.name']), Body,
                           LogAttributes['gen_ai.input.messages'], LogAttributes['gen_ai.output.messages']))
                   AS records
        FROM otel_logs
        WHERE TraceId IN wanted AND SpanId != ''
          AND TimestampTime >= (SELECT lo FROM bounds) AND TimestampTime <= (SELECT hi FROM bounds)
        GROUP BY TraceId, SpanId
    )
SELECT s.TraceId AS trace_id, s.SpanId AS span_id, s.ParentSpanId AS parent_span_id,
       s.SpanName AS name, toDateTime64(s.Timestamp, 6, 'UTC') AS started,
       s.Duration / 1e6 AS duration_ms,
       s.StatusCode IN ('Error', 'STATUS_CODE_ERROR') AS error,
       s.StatusMessage AS status_message, s.ServiceName AS service, s.ScopeName AS scope,
       s.RunId AS run_id, toInt32OrDefault(s.SpanAttributes['omium.step_index'], toInt32(-1)) AS step_index,
       {conventions.DEFAULT.select_sql(("agent", "operation", "tool", "provider", "model", "session"))},
       {conventions.DEFAULT.select_sql(conventions.TOKEN_FIELDS)},
       {conventions.DEFAULT.select_sql(("input_content", "output_content"))},
       s.SpanAttributes AS attributes,
       arrayMap((t, n, a) -> (toDateTime64(t, 6, 'UTC'), n, a), s.Events.Timestamp, s.Events.Name,
                s.Events.Attributes) AS events,
       l.records AS logs
FROM otel_traces AS s FINAL
LEFT JOIN logs AS l ON l.TraceId = s.TraceId AND l.SpanId = s.SpanId
WHERE s.TraceId IN wanted
  AND s.Timestamp >= (SELECT lo FROM bounds) AND s.Timestamp <= (SELECT hi FROM bounds) + 1
ORDER BY s.Timestamp, s.SpanId
LIMIT {{limit:UInt32}}
"""  # noqa: S608


def _ts(moment: datetime) -> str:
    """A UTC timestamp as ClickHouse parses it on every transport (no ISO 'T' or offset)."""
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC).replace(tzinfo=None)
    return moment.strftime("%Y-%m-%d %H:%M:%S.%f")


def _since(since: datetime) -> dict[str, Any]:
    return {"since": _ts(since)}


def run_health(warehouse: Warehouse, since: datetime) -> dict[str, Any]:
    """Executions, completed, failing, paused and in flight since ``since``, plus incident figures."""
    runs = warehouse.query_df(RUN_HEALTH, _since(since)).row(0, named=True)
    incidents = warehouse.query_df(INCIDENT_HEALTH, _since(since)).row(0, named=True)
    return {**runs, **incidents}


def run_trend(warehouse: Warehouse, since: datetime, bucket_minutes: int = 5) -> pl.DataFrame:
    """Executions, completed and failing per time bucket."""
    return warehouse.query_df(RUN_TREND, {**_since(since), "bucket_minutes": bucket_minutes})


def failures_by_workflow(warehouse: Warehouse, since: datetime) -> pl.DataFrame:
    """Runs and failure rate per workflow."""
    return warehouse.query_df(FAILURES_BY_WORKFLOW, _since(since))


def failures_by_agent(warehouse: Warehouse, since: datetime) -> pl.DataFrame:
    """Recorded calls and failure rate per agent."""
    return warehouse.query_df(FAILURES_BY_AGENT, _since(since))


def search_runs(
    warehouse: Warehouse,
    *,
    since: datetime,
    until: datetime,
    workflow: str = "",
    status: str = "",
    agent: str = "",
    text: str = "",
    limit: int = 50,
    offset: int = 0,
) -> tuple[pl.DataFrame, int]:
    """A page of runs matching the filters (newest first) and how many match in all."""
    params = {
        "since": _ts(since),
        "until": _ts(until),
        "workflow": workflow,
        "status": status,
        "agent": agent,
        "text": text,
    }
    page = warehouse.query_df(RUN_SEARCH, {**params, "limit": limit, "offset": offset})
    return page, int(warehouse.scalar(RUN_COUNT, params) or 0)


def workflows(warehouse: Warehouse) -> pl.DataFrame:
    """Workflows seen, with their run counts."""
    return warehouse.query_df(WORKFLOWS)


def workflow_agents(warehouse: Warehouse) -> pl.DataFrame:
    """Agents seen per workflow, with the kinds of calls they make."""
    return warehouse.query_df(WORKFLOW_AGENTS)


def workflow_checkpoints(warehouse: Warehouse) -> pl.DataFrame:
    """Checkpoints per workflow, in the order they occur."""
    return warehouse.query_df(WORKFLOW_CHECKPOINTS)


def run_handoffs(warehouse: Warehouse, run_id: str) -> pl.DataFrame:
    """Every hand-off of a run, on every channel, with its validation result."""
    return warehouse.query_df(RUN_HANDOFFS, {"run_id": run_id})


# Every try of every recorded call of a run (omium_steps is keyed by try: a failed try, its retry and
# a re-execution after a rollback are rows of their own), in run order: generation, then position.
STEP_TRIES = """
SELECT run_id, position, attempt, kind, name, agent, status, input_hash, output_hash, error, idempotency_key,
       toUnixTimestamp64Micro(started_at) AS started_at, toUnixTimestamp64Micro(ended_at) AS ended_at,
       call_id, generation, fence
FROM omium_steps FINAL
WHERE run_id = {run_id:String}
ORDER BY generation, position, attempt, started_at
LIMIT {limit:UInt32}
"""


def step_tries(warehouse: Warehouse, run_id: str, limit: int = 20_000) -> list[StepRecord]:
    """Every try of every recorded call of ``run_id`` the warehouse holds, failed ones included,
    oldest generation first (a try overwritten in the control store reaches it through the
    shipper, within seconds)."""
    rows = warehouse.query_rows(STEP_TRIES, {"run_id": run_id, "limit": limit})
    return [StepRecord(**row) for row in rows]


def paused_runs(warehouse: Warehouse, limit: int = 200) -> pl.DataFrame:
    """Runs paused awaiting a review or an approval, newest first."""
    return warehouse.query_df(PAUSED_RUNS, {"limit": limit})


def latest_run(warehouse: Warehouse) -> str:
    """The id of the run updated last ('' if none)."""
    return str(warehouse.scalar(LATEST_RUN) or "")


def trace_models(warehouse: Warehouse, since: datetime, until: datetime) -> list[tuple[str, str]]:
    """The (provider, model) pairs of spans between ``since`` and ``until`` (to price them)."""
    rows = warehouse.query_rows(TRACE_MODELS, {"since": _ts(since), "until": _ts(until)})
    return [(str(r["provider"]), str(r["model"])) for r in rows]


def run_list(
    warehouse: Warehouse,
    *,
    since: datetime,
    until: datetime,
    price_table: prices.PriceTable,
    status: str = "",
    agent: str = "",
    source: str = "",
    name: str = "",
    text: str = "",
    errors_only: bool = False,
    limit: int = 50,
    offset: int = 0,
) -> tuple[pl.DataFrame, int]:
    """A page of runs (Omium runs and OTel traces grouped by run id, session or trace id), newest
    first, and how many match; ``text`` searches ids, agents, names, errors and message content.
    The page's tokens, cost and span counts are read exactly from its traces' spans."""
    params = {
        "since": _ts(since),
        "until": _ts(until),
        "session": "",
        "status": status,
        "agent": agent,
        "source": source,
        "name": name,
        "text": text,
        "errors_only": errors_only,
        "limit": limit,
        "offset": offset,
    }
    import polars as pl

    frame = warehouse.query_df(RUN_LIST, params)
    total = int(frame["total"][0]) if frame.height else 0
    traces = warehouse.query_df(
        RUN_TRACES, {"runs": frame["run_id"].to_list(), "since": params["since"], "until": params["until"]}
    )
    frame = frame.drop("total").join(traces, on="run_id", how="left", maintain_order="left")
    frame = frame.with_columns(
        pl.col("agents").fill_null(pl.lit([], dtype=pl.List(pl.String))),
        pl.col("trace_ids").fill_null(pl.lit([], dtype=pl.List(pl.String))),
    )
    return _with_figures(warehouse, frame, price_table, key="run_id"), total


def session_traces(
    warehouse: Warehouse,
    session: str,
    *,
    since: datetime,
    until: datetime,
    price_table: prices.PriceTable,
    limit: int = 500,
) -> pl.DataFrame:
    """The traces of one session between ``since`` and ``until``, in the order they started."""
    params = {"since": _ts(since), "until": _ts(until), "session": session, "limit": limit}
    frame = warehouse.query_df(SESSION_TRACES, params)
    return _with_figures(warehouse, frame, price_table, key="trace_id").drop("trace_ids")


def trace_figures(
    warehouse: Warehouse, traces: list[str], lo: datetime, hi: datetime, price_table: prices.PriceTable
) -> pl.DataFrame:
    """Tokens, cost, span and error counts of each of ``traces`` (whose spans start between ``lo``
    and ``hi``), counting a re-sent span once."""
    params = {"traces": traces, "lo": _ts(lo), "hi": _ts(hi), **price_table.parameters()}
    return warehouse.query_df(TRACE_FIGURES, params)


_FIGURES = ("input_tokens", "output_tokens", "cost_usd", "spans", "error_spans")


def _with_figures(
    warehouse: Warehouse, frame: pl.DataFrame, price_table: prices.PriceTable, *, key: str
) -> pl.DataFrame:
    """``frame`` (one row per ``key``, its traces in ``trace_ids``, their time span in ``lo`` and
    ``hi``) with the figures of its traces summed per row; a row without a priced span costs NULL."""
    import polars as pl

    traced = frame.filter(pl.col("trace_ids").list.len() > 0)
    traces = sorted({t for ids in traced["trace_ids"].to_list() for t in ids})
    if traces:
        lo, hi = traced.select(pl.col("lo").min(), pl.col("hi").max()).row(0)
        # hi arrives cut to microseconds: a second more keeps a span starting at the very end.
        figures = trace_figures(warehouse, traces, lo, hi + timedelta(seconds=1), price_table)
    else:
        counts = {f: pl.Int64 for f in _FIGURES if f != "cost_usd"}
        figures = pl.DataFrame(schema={"trace_id": pl.String, **counts, "cost_usd": pl.Float64})
    per_row = (
        frame.select(key, "trace_ids")
        .explode("trace_ids")
        .join(figures, left_on="trace_ids", right_on="trace_id", how="inner")
        .group_by(key)
        .agg(
            *(pl.col(f).sum() for f in _FIGURES if f != "cost_usd"),
            pl.when(pl.col("cost_usd").is_not_null().any()).then(pl.col("cost_usd").sum()).alias("cost_usd"),
        )
    )
    joined = frame.drop("lo", "hi").join(per_row, on=key, how="left", maintain_order="left")
    return joined.with_columns(pl.col(f).fill_null(0) for f in _FIGURES if f != "cost_usd")


def trace_spans(warehouse: Warehouse, *, trace: str = "", run: str = "", limit: int = 5000) -> pl.DataFrame:
    """Every span (up to ``limit``) of trace ``trace``, or of every trace of Omium run ``run``."""
    return warehouse.query_df(TRACE_SPANS, {"trace": trace, "run": run, "limit": limit})


__all__ = [
    "failures_by_agent",
    "failures_by_workflow",
    "latest_run",
    "paused_runs",
    "run_handoffs",
    "run_health",
    "run_list",
    "run_trend",
    "search_runs",
    "session_traces",
    "step_tries",
    "trace_models",
    "trace_spans",
    "workflow_agents",
    "workflow_checkpoints",
    "workflows",
]
