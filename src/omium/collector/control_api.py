"""``POST /v1/store/{method}``: the checkpoint store over HTTP, for processes that cannot open
the warehouse themselves (in embedded mode, every process but the server).

The server serialises compare-and-set writes in its own store, so runs in many processes share
one consistent view. Every call needs the API token, checked before the route
(:mod:`omium.collector.access`).

Every body is checked against the store's types (:mod:`omium.collector.control_payloads`) before
the store sees it: a client's mistake is a 400 naming the fields, never an acknowledged record
that the warehouse refuses later, and never a 500.

Run leases are store methods too (``acquire_lease``, ``renew_lease``, ``release_lease``,
``lease``). A lost compare-and-set is a 409 whose body says which in ``code``: ``run_busy``
(another execution holds the run's lease: ``holder`` and ``lease_until`` say who and until when),
``fenced_out`` (the write's fencing token was superseded) or ``conflict``.

An operator acts on a run with ``POST /v1/runs/{run_id}/pause`` (``resume``, ``cancel``)
``{"actor", "reason"}`` (:mod:`omium.recovery.actions`): 200 when it took effect, 202 when it
takes effect at the run's next recorded call (pause, cancel of a running run) or a worker resumes
it; 404 for an unknown run, 409 naming the run's status when the action does not apply to it.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse

from omium.collector.control_payloads import (
    ActionBody,
    ArgumentsModel,
    CommandBody,
    ReviewBody,
    StoreBody,
    arguments_model,
    parse,
)
from omium.collector.jsonbody import load_json
from omium.collector.state import ServerState
from omium.errors import (
    ConflictError,
    DecodeError,
    FencedOut,
    NotFoundError,
    OmiumError,
    RunBusy,
    WarehouseError,
)
from omium.recovery.actions import ACTIONS, act
from omium.recovery.audit import incidents
from omium.recovery.review import review
from omium.recovery.worker import enqueue
from omium.sdk.store import CheckpointStore

READS = frozenset(
    {"get_blob", "get_blobs", "get_run", "list_runs", "steps", "checkpoints", "handoffs", "read_state"}
    | {"events", "commands", "lease"}
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
        "acquire_lease",
        "renew_lease",
        "release_lease",
        "request_stop",
    }
)
# Built at import: a store signature the payload models cannot express fails here, not per request.
ARGUMENTS: dict[str, type[ArgumentsModel]] = {method: arguments_model(method) for method in READS | WRITES}


class Answer(JSONResponse):
    """A JSON answer escaped to ASCII: a lone surrogate in a stored string or an error message
    becomes ``\\udXXX`` instead of failing to encode (a 500)."""

    def render(self, content: Any) -> bytes:
        return json.dumps(content, ensure_ascii=True, allow_nan=False, separators=(",", ":")).encode()


def _error(message: str, status: int, kind: str = "", **extra: Any) -> Answer:
    return Answer({"error": message} | ({"type": kind} if kind else {}) | extra, status_code=status)


def _conflict(exc: ConflictError) -> Answer:
    """A 409 with a machine-readable ``code`` (clients raise the same error again)."""
    if isinstance(exc, RunBusy):
        return _error(
            str(exc), 409, "RunBusy", code="run_busy", holder=exc.holder, lease_until=exc.lease_until
        )
    if isinstance(exc, FencedOut):
        return _error(str(exc), 409, "FencedOut", code="fenced_out")
    return _error(str(exc), 409, "ConflictError", code="conflict")


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


def call(store: CheckpointStore, method: str, args: ArgumentsModel) -> Any:
    """Run one store method with validated arguments; returns a JSON-ready result."""
    result = getattr(store, method)(**args.arguments())
    return None if result is None else _plain(result)


async def _body(request: Request) -> Any:
    """The request's JSON (:class:`DecodeError` for anything that is not sound JSON)."""
    return load_json(await request.body())


async def store_method(request: Request) -> JSONResponse:
    """Dispatch ``/v1/store/{method}``: the arguments are validated before the store sees them."""
    state: ServerState = request.app.state.omium
    method = request.path_params["method"]
    if method not in READS | WRITES:
        return _error(f"no store method {method[:80]!r}", 404)
    try:
        body = parse(StoreBody, await _body(request), 'body (expected {"args": {...}})')
        args = parse(ARGUMENTS[method], body.args, f"arguments for {method}")
    except DecodeError as exc:
        return _error(f"bad request: {exc}", 400)
    return await _run_action(lambda: call(state.store, method, args))


async def _run_action(action: Callable[[], Any]) -> Answer:
    try:
        result = await run_in_threadpool(action)
    except NotFoundError as exc:
        return _error(str(exc), 404, "NotFoundError")
    except ConflictError as exc:
        return _conflict(exc)
    except WarehouseError as exc:  # the arguments were valid: the server's side failed
        return _error(f"the warehouse failed: {exc}", 503, "WarehouseError")
    except OmiumError as exc:  # EditRefused, ConfigError: the reason is the answer
        return _error(str(exc), 422, type(exc).__name__)
    except (ValueError, TypeError, KeyError) as exc:
        return _error(f"bad request: {exc}", 400)
    return Answer({"result": _plain(result)})


async def review_run(request: Request) -> JSONResponse:
    """``POST /v1/runs/{run_id}/review`` ``{"decision", "edits", "reviewer", "reason"}``; an approval
    also queues the run to resume (a worker picks it up)."""
    state: ServerState = request.app.state.omium
    run_id = request.path_params["run_id"]
    try:
        body = parse(ReviewBody, await _body(request), "review")
    except DecodeError as exc:
        return _error(f"bad request: {exc}", 400)

    def act() -> Any:
        record = review(
            run_id,
            body.decision,
            edits=body.edits or {},
            reviewer=body.reviewer,
            reason=body.reason,
            store=state.store,
        )
        if record.status == "queued":  # approved, or rejected with the run carrying on
            enqueue(state.store, run_id, "resume")
        return record

    return await _run_action(act)


async def run_commands(request: Request) -> JSONResponse:
    """``GET /v1/runs/{run_id}/commands`` lists them; ``POST`` ``{"kind", "payload"}`` queues one
    (resume, retry, replay, fork, test_fix) for a worker."""
    state: ServerState = request.app.state.omium
    run_id = request.path_params["run_id"]
    if request.method == "GET":
        return await _run_action(lambda: state.store.commands(run_id))
    try:
        body = parse(CommandBody, await _body(request), "command")
    except DecodeError as exc:
        return _error(f"bad request: {exc}", 400)
    return await _run_action(lambda: enqueue(state.store, run_id, body.kind, **body.payload_arguments()))


async def run_incidents(request: Request) -> JSONResponse:
    """``GET /v1/runs/{run_id}/incidents``: each incident with its timeline of audit events."""
    state: ServerState = request.app.state.omium
    run_id = request.path_params["run_id"]

    def act() -> Any:
        state.store.get_run(run_id)
        return [
            {"incident": i.incident_id, "trigger": i.trigger, "stages": i.stages, "events": list(i.events)}
            for i in incidents(state.store, run_id)
        ]

    return await _run_action(act)


async def run_action(request: Request) -> JSONResponse:
    """``POST /v1/runs/{run_id}/{pause|resume|cancel}`` ``{"actor", "reason"}``: an operator's
    action, audited; the answer is the action's result (see :class:`~omium.recovery.actions.ActionResult`)."""
    state: ServerState = request.app.state.omium
    run_id, action = request.path_params["run_id"], request.path_params["action"]
    if action not in ACTIONS:
        return _error(f"no run action {action[:80]!r} (one of {', '.join(ACTIONS)})", 404)
    try:
        body = parse(ActionBody, await _body(request), f"{action} body")
    except DecodeError as exc:
        return _error(f"bad request: {exc}", 400)
    answer = await _run_action(
        lambda: act(run_id, action, store=state.store, actor=body.actor, reason=body.reason)
    )
    if answer.status_code == 200 and json.loads(bytes(answer.body))["result"]["effect"] != "done":
        answer.status_code = 202  # accepted: it takes effect at the run's next call, or in a worker
    return answer
