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
    {"get_blob", "get_run", "list_runs", "steps", "checkpoints", "handoffs", "read_state", "events"}
    | {"commands"}
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
