"""``POST /v1/store/{method}``: the checkpoint store over HTTP, for processes that cannot open
the warehouse themselves (in embedded mode, every process but the server).

The server serialises compare-and-set writes in its own store, so runs in many processes share
one consistent view. Reads are open on a loopback server; writes need the API token.
"""

from __future__ import annotations

import base64
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse

from omium.collector.auth import read_allowed, token_matches
from omium.collector.state import ServerState
from omium.errors import ConflictError, NotFoundError, OmiumError
from omium.sdk.store import (
    CheckpointRecord,
    CheckpointStore,
    CommandRecord,
    EventRecord,
    HandoffRecord,
    RunRecord,
    StepRecord,
)

READS = frozenset(
    {"get_blob", "get_blobs", "get_run", "list_runs", "steps", "checkpoints", "handoffs", "read_state"}
    | {"events", "commands"}
)
WRITES = frozenset(
    {
        "put_blob",
        "create_run",
        "update_run",
        "record_step",
        "add_checkpoint",
        "append_handoff",
        "set_handoff_status",
        "write_state",
        "record_event",
        "enqueue_command",
        "claim_command",
        "renew_command",
        "finish_command",
    }
)
RECORDS = {
    "run": RunRecord,
    "step": StepRecord,
    "checkpoint": CheckpointRecord,
    "message": HandoffRecord,
    "event": EventRecord,
    "command": CommandRecord,
}


def _plain(value: Any) -> Any:
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if hasattr(value, "__dataclass_fields__"):
        return dict(value.__dict__)
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    return value


def call(store: CheckpointStore, method: str, args: dict[str, Any]) -> Any:
    """Run one store method with JSON arguments; returns a JSON-ready result."""
    for name, record_type in RECORDS.items():
        if isinstance(args.get(name), dict):
            args[name] = record_type(**args[name])
    if method == "put_blob":
        args["data"] = base64.b64decode(args["data"])
    result = getattr(store, method)(**args)
    return None if result is None else _plain(result)


async def store_method(request: Request) -> JSONResponse:
    """Dispatch ``/v1/store/{method}``."""
    state: ServerState = request.app.state.omium
    method = request.path_params["method"]
    if method not in READS | WRITES:
        return JSONResponse({"error": f"no store method {method!r}"}, status_code=404)
    if method in WRITES and not token_matches(state.settings, request):
        return JSONResponse(
            {"error": "writes need the server's API token ('Authorization: Bearer <token>')"}, status_code=401
        )
    if method in READS and not read_allowed(state.settings, request):
        return JSONResponse(
            {"error": "this server is bound beyond loopback: reads need its API token"}, status_code=401
        )
    try:
        body = await request.json()
        args = body.get("args", {}) if isinstance(body, dict) else None
        if not isinstance(args, dict):
            raise ValueError('body must be {"args": {...}}')
        result = await run_in_threadpool(call, state.store, method, args)
    except NotFoundError as exc:
        return JSONResponse({"error": str(exc), "type": "NotFoundError"}, status_code=404)
    except ConflictError as exc:
        return JSONResponse({"error": str(exc), "type": "ConflictError"}, status_code=409)
    except (OmiumError, ValueError, TypeError, KeyError) as exc:
        return JSONResponse({"error": f"bad request: {exc}"}, status_code=400)
    return JSONResponse({"result": result})


async def _guarded(request: Request, write: bool) -> JSONResponse | None:
    state: ServerState = request.app.state.omium
    if write and not token_matches(state.settings, request):
        return JSONResponse(
            {"error": "writes need the server's API token ('Authorization: Bearer <token>')"}, status_code=401
        )
    if not write and not read_allowed(state.settings, request):
        return JSONResponse({"error": "this server is bound beyond loopback: reads need its API token"}, 401)
    return None


async def _run_action(request: Request, action: Any) -> JSONResponse:
    try:
        result = await run_in_threadpool(action)
    except NotFoundError as exc:
        return JSONResponse({"error": str(exc), "type": "NotFoundError"}, status_code=404)
    except ConflictError as exc:
        return JSONResponse({"error": str(exc), "type": "ConflictError"}, status_code=409)
    except OmiumError as exc:  # EditRefused, ConfigError: the reason is the answer
        return JSONResponse({"error": str(exc), "type": type(exc).__name__}, status_code=422)
    except (ValueError, TypeError, KeyError) as exc:
        return JSONResponse({"error": f"bad request: {exc}"}, status_code=400)
    return JSONResponse({"result": _plain(result)})


async def review_run(request: Request) -> JSONResponse:
    """``POST /v1/runs/{run_id}/review`` ``{"decision", "edits", "reviewer", "reason"}``; an approval
    also queues the run to resume (a worker picks it up)."""
    from omium.recovery.review import review
    from omium.recovery.worker import enqueue

    if (refused := await _guarded(request, write=True)) is not None:
        return refused
    state: ServerState = request.app.state.omium
    run_id = request.path_params["run_id"]
    try:
        body = await request.json()
    except ValueError:
        return JSONResponse({"error": "bad request: body must be JSON"}, status_code=400)

    def act() -> Any:
        decision = body["decision"]
        record = review(
            run_id,
            decision,
            edits=body.get("edits") or {},
            reviewer=str(body.get("reviewer", "api")),
            reason=str(body.get("reason", "")),
            store=state.store,
        )
        if decision == "approve":
            enqueue(state.store, run_id, "resume")
        return record

    return await _run_action(request, act)


async def run_commands(request: Request) -> JSONResponse:
    """``GET /v1/runs/{run_id}/commands`` lists them; ``POST`` ``{"kind", "payload"}`` queues one
    (resume, retry, replay, fork, test_fix) for a worker."""
    from omium.recovery.worker import enqueue

    state: ServerState = request.app.state.omium
    run_id = request.path_params["run_id"]
    if request.method == "GET":
        if (refused := await _guarded(request, write=False)) is not None:
            return refused
        return await _run_action(request, lambda: state.store.commands(run_id))
    if (refused := await _guarded(request, write=True)) is not None:
        return refused
    try:
        body = await request.json()
    except ValueError:
        return JSONResponse({"error": "bad request: body must be JSON"}, status_code=400)
    return await _run_action(
        request, lambda: enqueue(state.store, run_id, body["kind"], **(body.get("payload") or {}))
    )


async def run_incidents(request: Request) -> JSONResponse:
    """``GET /v1/runs/{run_id}/incidents``: each incident with its timeline of audit events."""
    from omium.recovery.audit import incidents

    if (refused := await _guarded(request, write=False)) is not None:
        return refused
    state: ServerState = request.app.state.omium
    run_id = request.path_params["run_id"]

    def act() -> Any:
        state.store.get_run(run_id)
        return [
            {"incident": i.incident_id, "trigger": i.trigger, "stages": i.stages, "events": list(i.events)}
            for i in incidents(state.store, run_id)
        ]

    return await _run_action(request, act)
