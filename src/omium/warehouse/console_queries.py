"""The console's queries: run health, trends, failure rates, run search, hand-offs and incidents.

Every query binds its parameters server-side and returns a polars DataFrame; the console's data
module caches them. Reads of versioned tables use FINAL (the latest version of each row).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

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


def paused_runs(warehouse: Warehouse, limit: int = 200) -> pl.DataFrame:
    """Runs paused awaiting a review or an approval, newest first."""
    return warehouse.query_df(PAUSED_RUNS, {"limit": limit})


def latest_run(warehouse: Warehouse) -> str:
    """The id of the run updated last ('' if none)."""
    return str(warehouse.scalar(LATEST_RUN) or "")


__all__ = [
    "failures_by_agent",
    "failures_by_workflow",
    "latest_run",
    "paused_runs",
    "run_handoffs",
    "run_health",
    "run_trend",
    "search_runs",
    "workflow_agents",
    "workflow_checkpoints",
    "workflows",
]
