"""``POST /v1/sql`` and ``POST /v1/insert``: the warehouse for processes that cannot open it.

Reads run on the engine's read-only sessions, so a statement that writes, reads a file or URL,
or changes a setting is refused by ClickHouse itself (answered 403), never by pattern matching.
Writes need the server's API token. Parameters are bound server-side by name.
"""

from __future__ import annotations

import json
import re
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from omium.collector.auth import read_allowed, token_matches
from omium.collector.state import ServerState
from omium.errors import ReadOnlyError, WarehouseError

ARROW_STREAM = "application/vnd.apache.arrow.stream"
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
MAX_SQL_BODY = 4 * 1024 * 1024


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def _write_denied(state: ServerState) -> JSONResponse:
    if not state.settings.api_token:
        return _error(
            403,
            "writes through the SQL API need OMIUM_API_TOKEN set on the server "
            "and sent as 'Authorization: Bearer <token>'",
        )
    return _error(401, "writes need the server's API token ('Authorization: Bearer <token>')")


async def sql(request: Request) -> Response:
    """Run one SQL statement; answer Arrow IPC (default) or JSON rows (``Accept: application/json``)."""
    state: ServerState = request.app.state.omium
    raw = await request.body()
    if len(raw) > MAX_SQL_BODY:
        return _error(413, f"request larger than {MAX_SQL_BODY} bytes")
    try:
        payload = json.loads(raw)
    except ValueError:
        return _error(400, 'body must be JSON: {"query": "...", "parameters": {...}, "readonly": true}')
    if not isinstance(payload, dict) or not isinstance(payload.get("query"), str):
        return _error(400, 'body must be a JSON object with a "query" string')
    parameters = payload.get("parameters") or {}
    if not isinstance(parameters, dict):
        return _error(400, '"parameters" must be an object of name -> value')
    readonly = payload.get("readonly", True) is not False
    if readonly and not read_allowed(state.settings, request):
        return _error(401, "this server is bound beyond loopback: queries need its API token")
    if not readonly and not token_matches(state.settings, request):
        return _write_denied(state)
    try:
        data = await _run_in_thread(state, payload["query"], parameters, readonly)
    except ReadOnlyError as exc:
        return _error(
            403,
            f'refused: this door is read-only ({exc}). Send the write token and "readonly": false to write.',
        )
    except WarehouseError as exc:
        return _error(400, str(exc))
    if "application/json" in request.headers.get("accept", ""):
        return JSONResponse(_arrow_to_rows(data))
    return Response(data, media_type=ARROW_STREAM)


async def _run_in_thread(state: ServerState, query: str, parameters: dict[str, Any], readonly: bool) -> bytes:
    from starlette.concurrency import run_in_threadpool

    return await run_in_threadpool(state.warehouse.arrow_bytes, query, parameters, readonly=readonly)


def _arrow_to_rows(data: bytes) -> dict[str, Any]:
    import pyarrow as pa

    if not data:
        return {"columns": [], "rows": []}
    table = pa.ipc.open_stream(data).read_all()
    return {"columns": table.column_names, "rows": [list(r.values()) for r in table.to_pylist()]}


def _python(column: Any) -> list[Any]:
    """An Arrow column as Python values; a map becomes a dict (Arrow gives lists of pairs)."""
    import pyarrow as pa

    values = column.to_pylist()
    if pa.types.is_map(column.type):
        return [dict(v) if v is not None else {} for v in values]
    return values


async def insert(request: Request) -> Response:
    """Insert an Arrow IPC stream into an existing table of the server's database (token needed)."""
    import pyarrow as pa
    from starlette.concurrency import run_in_threadpool

    state: ServerState = request.app.state.omium
    if not token_matches(state.settings, request):
        return _write_denied(state)
    table = request.query_params.get("table", "")
    if not _IDENTIFIER.match(table):
        return _error(400, f"table must be a plain identifier, got {table!r}")
    exists = await run_in_threadpool(
        state.warehouse.scalar,
        "SELECT count() FROM system.tables WHERE database = {db:String} AND name = {t:String}",
        {"db": state.warehouse.database, "t": table},
    )
    if not exists:
        return _error(404, f"no table {table!r} in database {state.warehouse.database!r}")
    try:
        arrow = pa.ipc.open_stream(await request.body()).read_all()
    except (pa.ArrowInvalid, OSError) as exc:
        return _error(400, f"body must be an Arrow IPC stream: {exc}")
    columns = [_python(arrow.column(i)) for i in range(arrow.num_columns)]
    try:
        await run_in_threadpool(state.warehouse.insert, table, columns, arrow.column_names)
    except WarehouseError as exc:
        return _error(400, str(exc))
    return JSONResponse({"inserted": arrow.num_rows})
