"""The console's data: live views from the control store, analytics from the warehouse, actions
through the control API.

The live views (a run's status, its recorded calls, checkpoints, events, the recovery queue) read
the control database, directly when the console can open the one the server runs on, else through
the server's control API (:func:`omium.sdk.sql.connect.connect_control`), so a paused run shows at
once. Analytics read the warehouse: in embedded mode through the Omium server's SQL API (only the
server opens the embedded data directory); with ``OMIUM_CLICKHOUSE_URL`` ClickHouse directly.
Reads are cached for a few seconds, so a busy page does not hammer either.
"""

from __future__ import annotations

import json
import logging
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import polars as pl
import streamlit as st

from omium.config import Settings
from omium.errors import NotFoundError, WarehouseError
from omium.pipelines import prices
from omium.sdk.store import CheckpointRecord, CheckpointStore, EventRecord, RunRecord, StepRecord
from omium.warehouse import console_queries as queries
from omium.warehouse.connection import Warehouse

logger = logging.getLogger(__name__)

TTL = 3  # seconds a read is cached


@st.cache_resource
def settings() -> Settings:
    """The console's settings (``OMIUM_*``)."""
    return Settings.from_env()


@st.cache_resource
def warehouse() -> Warehouse:
    """The warehouse: ClickHouse if configured, else through the running server."""
    from omium.warehouse import connect

    return connect(settings())


@st.cache_resource
def store() -> CheckpointStore:
    """The control store: runs, steps, checkpoints, events and values as committed."""
    from omium.sdk.sql.connect import connect_control

    return connect_control(settings(), warehouse=False)


def today() -> datetime:
    """Midnight UTC today."""
    now = datetime.now(UTC)
    return now.replace(hour=0, minute=0, second=0, microsecond=0)


@st.cache_data(ttl=TTL, show_spinner=False)
def health(since: datetime) -> dict[str, Any]:
    """Run and incident figures since ``since``."""
    return queries.run_health(warehouse(), since)


@st.cache_data(ttl=TTL, show_spinner=False)
def trend(since: datetime, bucket_minutes: int) -> pl.DataFrame:
    """Executions per time bucket."""
    return queries.run_trend(warehouse(), since, bucket_minutes)


@st.cache_data(ttl=TTL, show_spinner=False)
def failures(since: datetime) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Failure rates by workflow and by agent."""
    return queries.failures_by_workflow(warehouse(), since), queries.failures_by_agent(warehouse(), since)


@st.cache_data(ttl=TTL, show_spinner=False)
def search(
    since: datetime,
    until: datetime,
    workflow: str,
    status: str,
    agent: str,
    text: str,
    limit: int,
    offset: int,
) -> tuple[pl.DataFrame, int]:
    """A page of runs and the number matching."""
    return queries.search_runs(
        warehouse(),
        since=since,
        until=until,
        workflow=workflow,
        status=status,
        agent=agent,
        text=text,
        limit=limit,
        offset=offset,
    )


@st.cache_data(ttl=30, show_spinner=False)
def catalogue() -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """Workflows, their agents and their checkpoints."""
    wh = warehouse()
    return queries.workflows(wh), queries.workflow_agents(wh), queries.workflow_checkpoints(wh)


# The live views are cached for less than a second: a run paused just now shows at the next rerun.
LIVE_TTL = 0.5
PAUSED_COLUMNS: dict[str, pl.DataType | type[pl.DataType]] = {
    "run_id": pl.String,
    "workflow": pl.String,
    "updated_at": pl.Datetime("us", "UTC"),
    "awaiting": pl.String,
    "incident": pl.String,
    "failure": pl.String,
    "policy": pl.String,
    "checkpoint": pl.String,
    "paused_by": pl.String,
}


@st.cache_data(ttl=LIVE_TTL, show_spinner=False)
def paused(limit: int = 200) -> pl.DataFrame:
    """Paused runs, newest first (from the control store): those awaiting a review or an approval
    (``awaiting``) and those an operator paused (``paused_by``: who; awaiting an operator's resume)."""
    runs = sorted(
        (
            r
            for r in store().list_runs(status="paused", limit=10_000)
            if r.attributes.get("awaiting") or r.attributes.get("paused_by")
        ),
        key=lambda r: r.updated_at,
        reverse=True,
    )[:limit]
    rows = [
        {
            "run_id": r.run_id,
            "workflow": r.workflow,
            "updated_at": datetime.fromtimestamp(r.updated_at / 1e6, UTC),
            "awaiting": r.attributes.get("awaiting", ""),
            "incident": r.attributes.get("incident", ""),
            "failure": r.attributes.get("failure", ""),
            "policy": r.attributes.get("policy", ""),
            "checkpoint": r.attributes.get("rolled_back_to", ""),
            "paused_by": r.attributes.get("paused_by", ""),
        }
        for r in runs
    ]
    return pl.DataFrame(rows, schema=PAUSED_COLUMNS)


@st.cache_data(ttl=LIVE_TTL, show_spinner=False)
def latest_run() -> str:
    """The run started last ('' if none)."""
    found = store().list_runs(limit=1)
    return found[0].run_id if found else ""


def run(run_id: str) -> RunRecord | None:
    """A run, or None if unknown."""
    try:
        return store().get_run(run_id)
    except NotFoundError:
        return None


@st.cache_data(ttl=LIVE_TTL, show_spinner=False)
def steps(run_id: str) -> list[StepRecord]:
    """The run's recorded calls."""
    return store().steps(run_id)


def _try_key(step: StepRecord) -> tuple[int, int, int, int]:
    return (step.generation, step.position, step.attempt, step.started_at)


@st.cache_data(ttl=LIVE_TTL, show_spinner=False)
def step_tries(run_id: str) -> list[StepRecord]:
    """Every try of every recorded call of the run, failed ones included, oldest generation first:
    the warehouse's history (a try a retry or a re-execution overwrote in the control store is
    shipped there as it was) merged with the control store's live rows, which win for the tries
    they hold and show what is not shipped yet."""
    live = store().steps(run_id)
    try:
        history = queries.step_tries(warehouse(), run_id)
    except (WarehouseError, httpx.HTTPError):  # the warehouse or its server is down: live rows still tell
        logger.warning("reading run %s's step tries from the warehouse failed", run_id, exc_info=True)
        history = []
    tries = {_try_key(s): s for s in history}
    tries.update((_try_key(s), s) for s in live)
    return [tries[key] for key in sorted(tries)]


@st.cache_data(ttl=LIVE_TTL, show_spinner=False)
def checkpoints(run_id: str) -> list[CheckpointRecord]:
    """The run's checkpoints."""
    return store().checkpoints(run_id)


@st.cache_data(ttl=LIVE_TTL, show_spinner=False)
def events(run_id: str) -> list[EventRecord]:
    """The run's audit events."""
    return store().events(run_id)


@st.cache_data(ttl=30, show_spinner=False)
def analysis(run_id: str) -> dict[str, Any]:
    """What the pipelines derived for a run: each method's root cause (known ones first, the most
    confident first; an unknown one says so by its verdict), failure class and predicted risk (if built)."""
    wh = warehouse()
    causes = wh.query_rows(
        "SELECT agent, step_index, confidence, failure_class, evidence, method, model_version, verdict "
        "FROM omium_root_causes FINAL WHERE run_id = {run_id:String} "
        "ORDER BY verdict = 'unknown', confidence DESC, method",
        {"run_id": run_id},
    )
    risk = wh.query_rows(
        "SELECT k, argMax(risk, predicted_at) AS risk FROM omium_predictions FINAL "
        "WHERE run_id = {run_id:String} GROUP BY k ORDER BY k",
        {"run_id": run_id},
    )
    # An imported run's labels: shown beside the result as the annotation, never as a result.
    annotation = wh.query_rows(
        "SELECT mistake_agent, mistake_step, mistake_reason FROM omium_ground_truth FINAL "
        "WHERE run_id = {run_id:String} AND mistake_step >= 0",
        {"run_id": run_id},
    )
    # The run's failure label (its class and where it came from): beside each result's class,
    # which is the classifier's (out of fold for a labelled run), as its annotation.
    label = wh.query_rows(
        "SELECT failure_class, label_source FROM omium_failure_labels FINAL "
        "WHERE run_id = {run_id:String} AND failed",
        {"run_id": run_id},
    )
    if label:
        causes = [
            {**c, "annotated_class": label[0]["failure_class"], "annotated_by": label[0]["label_source"]}
            for c in causes
        ]
    return {
        "causes": causes,
        "risk": {int(r["k"]): float(r["risk"]) for r in risk},
        "annotation": annotation[0] if annotation else None,
    }


@st.cache_data(ttl=TTL, show_spinner=False)
def handoffs(run_id: str) -> pl.DataFrame:
    """The run's hand-offs (``depends_on`` as JSON text: tables cannot show maps)."""
    frame = queries.run_handoffs(warehouse(), run_id)
    texts = [json.dumps(dict(d or {}), sort_keys=True) for d in frame["depends_on"].to_list()]
    return frame.with_columns(pl.Series("depends_on", texts, dtype=pl.String))


@st.cache_data(ttl=300, show_spinner=False)
def value(digest: str) -> Any:
    """A stored value as JSON (values are content-addressed, so they never change)."""
    if not digest:
        return None
    return json.loads(store().get_blob(digest))


@st.cache_data(ttl=300, show_spinner=False)
def values(digests: tuple[str, ...]) -> dict[str, Any]:
    """Many stored values as JSON, in one read (one round trip instead of one per value)."""
    wanted = sorted({d for d in digests if d})
    if not wanted:
        return {}
    return {key: json.loads(data) for key, data in store().get_blobs(wanted).items()}


@st.cache_data(ttl=300, show_spinner=False)
def readable(digest: str) -> Any:
    """A stored value decoded (a model's answer becomes its text), for people to read."""
    if not digest:
        return None
    from omium.sdk import serde

    decoded = serde.loads(store().get_blob(digest))
    text = getattr(decoded, "text", None)
    return text if isinstance(text, str) else json.loads(store().get_blob(digest))


def steps_frame(records: list[StepRecord]) -> pl.DataFrame:
    """Recorded calls as a table."""
    rows = [
        {
            "position": s.position,
            "call_id": s.call_id,
            "agent": s.agent,
            "kind": s.kind,
            "name": s.name,
            "status": s.status,
            "attempt": s.attempt,
            "generation": s.generation,
            "started": datetime.fromtimestamp(s.started_at / 1e6, UTC),
            "ended": datetime.fromtimestamp(s.ended_at / 1e6, UTC),
            "ms": round((s.ended_at - s.started_at) / 1000, 2),
            "error": s.error,
        }
        for s in records
    ]
    return pl.DataFrame(rows) if rows else pl.DataFrame(schema={"position": pl.Int64})


# --- Every run and trace, a trace's spans, a session's traces (otel_traces, read as spans land).
@st.cache_data(ttl=300, show_spinner=False)
def price_table(since: datetime, until: datetime) -> prices.PriceTable:
    """USD rates of the models seen between ``since`` and ``until`` (genai-prices; changes rarely)."""
    return prices.table(queries.trace_models(warehouse(), since, until))


@st.cache_data(ttl=TTL, show_spinner=False)
def run_list(
    since: datetime,
    until: datetime,
    status: str,
    agent: str,
    source: str,
    name: str,
    text: str,
    errors_only: bool,
    limit: int,
    offset: int,
) -> tuple[pl.DataFrame, int]:
    """A page of runs and traces (see :func:`omium.warehouse.console_queries.run_list`) and the
    number matching."""
    return queries.run_list(
        warehouse(),
        since=since,
        until=until,
        price_table=price_table(since, until),
        status=status,
        agent=agent,
        source=source,
        name=name,
        text=text,
        errors_only=errors_only,
        limit=limit,
        offset=offset,
    )


@st.cache_data(ttl=TTL, show_spinner=False)
def trace_spans(trace: str = "", run: str = "", limit: int = 5000) -> pl.DataFrame:
    """The spans of a trace, or of every trace of an Omium run, in start order."""
    return queries.trace_spans(warehouse(), trace=trace, run=run, limit=limit)


@st.cache_data(ttl=TTL, show_spinner=False)
def session_traces(session: str, since: datetime, until: datetime) -> pl.DataFrame:
    """The traces of a session in the order they started."""
    return queries.session_traces(
        warehouse(), session, since=since, until=until, price_table=price_table(since, until)
    )


# --- actions, through the server's control API (authorised and audited there)
class ControlError(Exception):
    """The server refused or failed an action; the message is its reason."""


def _control(method: str, path: str, body: dict[str, Any] | None = None) -> Any:
    config = settings()
    headers = {"authorization": f"Bearer {config.api_token}"} if config.api_token else {}
    try:
        response = httpx.request(method, f"{config.server_url}{path}", json=body, headers=headers, timeout=30)
    except httpx.HTTPError as error:
        raise ControlError(f"the Omium server at {config.server_url} did not answer: {error}") from None
    payload = (
        response.json() if response.headers.get("content-type", "").startswith("application/json") else {}
    )
    if response.status_code >= 300:
        raise ControlError(payload.get("error") or f"HTTP {response.status_code}")
    st.cache_data.clear()  # what was read before the action is stale now
    return payload.get("result")


def review(run_id: str, decision: str, edits: dict[str, Any], reviewer: str, reason: str = "") -> Any:
    """Approve (queues the resume), edit or reject a paused run."""
    body = {"decision": decision, "edits": edits, "reviewer": reviewer, "reason": reason}
    return _control("POST", f"/v1/runs/{run_id}/review", body)


def run_action(run_id: str, action: str, actor: str, reason: str = "") -> dict[str, Any]:
    """Pause, resume or cancel a run (an operator's action, audited); its result: ``status``,
    ``effect`` (done, requested, queued) and a ``message``."""
    return dict(_control("POST", f"/v1/runs/{run_id}/{action}", {"actor": actor, "reason": reason}))


def command(run_id: str, kind: str, **payload: Any) -> dict[str, Any]:
    """Queue a command (test_fix, retry, replay, fork, resume) for a worker."""
    return dict(_control("POST", f"/v1/runs/{run_id}/commands", {"kind": kind, "payload": payload}))


def wait_for(run_id: str, command_id: str, timeout: float = 60.0) -> dict[str, Any]:
    """A command's result once a worker has finished it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for found in _control("GET", f"/v1/runs/{run_id}/commands") or []:
            if found["command_id"] == command_id and found["status"] in ("done", "failed"):
                result = json.loads(found["result"] or "{}")
                return {"status": found["status"], **result}
        time.sleep(0.3)
    raise ControlError(f"no worker finished the command within {timeout:.0f}s: is `omium worker` running?")


def since_choices() -> dict[str, datetime]:
    """The time ranges the pages offer."""
    now = datetime.now(UTC)
    return {
        "today": today(),
        "last hour": now - timedelta(hours=1),
        "last 24 hours": now - timedelta(days=1),
        "last 7 days": now - timedelta(days=7),
        "all time": datetime(2000, 1, 1, tzinfo=UTC),
    }
