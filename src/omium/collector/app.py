"""The Omium server's HTTP application: OTLP ingest, control API and SQL API on one port."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from omium._version import __version__
from omium.collector import control_api, otlp_http, sql_api
from omium.collector.access import AccessControl
from omium.collector.state import ServerState

SERVER_HEADER = "x-omium-server"


async def health(request: Request) -> JSONResponse:
    """Liveness and what this server is: version, warehouse mode, database, queue depth."""
    state: ServerState = request.app.state.omium
    return JSONResponse(
        {
            "status": "ok",
            "version": __version__,
            "warehouse": state.warehouse.mode,
            "database": state.warehouse.database,
            "pending_spans": state.writer.pending_spans,
        },
        headers={SERVER_HEADER: __version__},
    )


async def version(request: Request) -> JSONResponse:
    """The server's version."""
    return JSONResponse({"version": __version__}, headers={SERVER_HEADER: __version__})


async def stats(request: Request) -> JSONResponse:
    """The span writer's counters, requests refused at the door, control facts shipped and waiting."""
    state: ServerState = request.app.state.omium
    body = vars(state.writer.stats) | {"pending_spans": state.writer.pending_spans}
    # Logs and metrics writers count records in the same counters (spans_written: records).
    body["logs"] = vars(state.log_writer.stats) | {"pending": state.log_writer.pending_spans}
    body["metrics"] = vars(state.metric_writer.stats) | {"pending": state.metric_writer.pending_spans}
    if state.shipper is not None:
        body["facts_shipped"] = state.shipper.shipped
        body["facts_waiting"] = state.shipper.outbox.backlog()
    body["refused_requests"] = dict(state.access.refused) if state.access is not None else {}
    return JSONResponse(body)


async def deployment(request: Request) -> JSONResponse:
    """The identity of the control database this server runs on: a client that can open a
    database with the same identity writes to it directly instead of through this API."""
    state: ServerState = request.app.state.omium
    found = ""
    if state.shipper is not None:
        found = await run_in_threadpool(state.shipper.outbox.deployment)
    return JSONResponse({"deployment": found})


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return JSONResponse({"error": exc.detail}, status_code=exc.status_code, headers=exc.headers)


async def _client_gone(request: Request, exc: Exception) -> Response:
    # The client hung up mid-body: nothing was acknowledged and nobody reads this answer.
    return Response(status_code=400)


def create_app(state: ServerState) -> Starlette:
    """Build the ASGI application around ``state``, behind :class:`AccessControl`."""

    def access(app: object) -> AccessControl:
        state.access = AccessControl(app, state.settings)  # type: ignore[arg-type]
        return state.access

    app = Starlette(
        middleware=[Middleware(access)],
        exception_handlers={HTTPException: _http_error, ClientDisconnect: _client_gone},
        routes=[
            Route("/v1/traces", otlp_http.export_traces, methods=["POST"]),
            Route("/v1/logs", otlp_http.export_logs, methods=["POST"]),
            Route("/v1/metrics", otlp_http.export_metrics, methods=["POST"]),
            Route("/v1/health", health, methods=["GET"]),
            Route("/v1/version", version, methods=["GET"]),
            Route("/v1/stats", stats, methods=["GET"]),
            Route("/v1/deployment", deployment, methods=["GET"]),
            Route("/v1/sql", sql_api.sql, methods=["POST"]),
            Route("/v1/insert", sql_api.insert, methods=["POST"]),
            Route("/v1/store/{method}", control_api.store_method, methods=["POST"]),
            Route("/v1/runs/{run_id}/review", control_api.review_run, methods=["POST"]),
            Route("/v1/runs/{run_id}/commands", control_api.run_commands, methods=["GET", "POST"]),
            Route("/v1/runs/{run_id}/incidents", control_api.run_incidents, methods=["GET"]),
            Route("/v1/runs/{run_id}/{action}", control_api.run_action, methods=["POST"]),
        ],
    )
    app.state.omium = state
    return app
