"""``POST /v1/sql`` and ``POST /v1/insert``: the warehouse for processes that cannot open it.

Statements go through the SQL door (:class:`omium.warehouse.door.SqlDoor`): ClickHouse parses
the statement, :mod:`omium.warehouse.sql_guard` checks its syntax tree (refused with 403 naming
what) and the checked tree is what runs. A read (the default) is one SELECT, EXPLAIN or SHOW of
allowed functions and tables, run under per-query limits
(:class:`~omium.warehouse.sql_guard.QueryLimits`, ``OMIUM_SQL_*``: past one, 422 naming it); a
client that goes away cancels its query. A write (``"readonly": false``) is one INSERT, CREATE
TABLE/VIEW, ALTER TABLE, DELETE, TRUNCATE, DROP TABLE or OPTIMIZE of the server's database
(:func:`~omium.warehouse.sql_guard.check_write`); it answers no rows. ``/v1/insert`` takes Arrow
into an existing table. Every call needs the server's API token, checked before the route
(:mod:`omium.collector.access`). Parameters are bound server-side by name. A server on a
ClickHouse server (``OMIUM_CLICKHOUSE_URL``) has no door: its ``/v1/sql`` answers 501, and
clients query that ClickHouse, with a user of their own.

The answer is an Arrow IPC stream, or with ``Accept: application/json``
``{"columns": [...], "types": [...], "rows": [[...], ...]}`` as ClickHouse renders each type in
JSON: Date and DateTime as ISO 8601 strings (UTC ``Z``), Decimal as a string, 64-bit integers as
numbers, UUID / IPv4 / IPv6 / Enum as their text, Map as an object, Tuple as an array (named:
an object), Nullable as null, LowCardinality as its value, NaN and ±inf as null, and String /
FixedString bytes that are not UTF-8 with U+FFFD in place of each bad sequence.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import re
from contextlib import suppress
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from omium.collector.jsonbody import load_json
from omium.collector.state import ServerState
from omium.errors import (
    ConfigError,
    DecodeError,
    OverloadedError,
    QueryLimitExceeded,
    QueryRefused,
    ReadOnlyError,
    WarehouseError,
)
from omium.warehouse.door import DoorCall, SqlDoor
from omium.warehouse.sql_guard import QueryLimits

ARROW_STREAM = "application/vnd.apache.arrow.stream"
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
MAX_SQL_BODY = 4 * 1024 * 1024
# How often a running read looks whether its client is still there.
DISCONNECT_POLL_SECONDS = 0.1
CLIENT_GONE = 499  # nginx's "client closed request": nobody reads it, the log does


def _render(content: Any) -> bytes:
    """JSON that never fails: non-finite floats become null, text that is not Unicode is replaced."""

    def finite(value: Any) -> Any:
        if isinstance(value, float) and not math.isfinite(value):
            return None
        if isinstance(value, dict):
            return {str(k): finite(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [finite(v) for v in value]
        if isinstance(value, bytes | bytearray):
            return bytes(value).decode("utf-8", "replace")
        return value

    safe = finite(content)
    text = json.dumps(safe, ensure_ascii=False, allow_nan=False, default=str, separators=(",", ":"))
    return text.encode("utf-8", "replace")


def _json(content: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(_render(content), status_code=status, media_type="application/json", headers=headers)


def _error(status: int, message: str, **extra: Any) -> Response:
    return _json({"error": message, **extra}, status)


def _door(request: Request) -> SqlDoor | Response:
    """The server's SQL door, with limits read from ``OMIUM_SQL_*`` on first use (or the error)."""
    state: ServerState = request.app.state.omium
    try:
        limits = getattr(request.app.state, "sql_limits", None)
        if limits is None:
            limits = request.app.state.sql_limits = QueryLimits.from_env(os.environ)
        return state.warehouse.sql_door(limits)
    except ConfigError as exc:
        return _error(500, f"the server's SQL limits are misconfigured: {exc}")
    except WarehouseError as exc:
        return _error(501, str(exc))


async def sql(request: Request) -> Response:
    """Run one SQL statement; answer Arrow IPC (default) or JSON rows (``Accept: application/json``)."""
    raw = await request.body()
    if len(raw) > MAX_SQL_BODY:
        return _error(413, f"request larger than {MAX_SQL_BODY} bytes")
    try:
        payload = load_json(raw)
    except DecodeError as exc:
        return _error(400, f'{exc}; body must be JSON: {{"query": "...", "parameters": {{...}}}}')
    if not isinstance(payload, dict) or not isinstance(payload.get("query"), str):
        return _error(400, 'body must be a JSON object with a "query" string')
    parameters = payload.get("parameters") or {}
    if not isinstance(parameters, dict):
        return _error(400, '"parameters" must be an object of name -> value')
    as_json = "application/json" in request.headers.get("accept", "")
    if payload.get("readonly", True) is not False:
        return await _read(request, payload["query"], parameters, as_json)
    return await _write(request, payload["query"], parameters, as_json)


async def _write(request: Request, query: str, parameters: dict[str, Any], as_json: bool) -> Response:
    door = _door(request)
    if isinstance(door, Response):
        return door
    try:
        await run_in_threadpool(door.write, query, parameters)
    except QueryRefused as exc:
        return _error(403, f"refused: {exc}")
    except WarehouseError as exc:
        return _error(400, str(exc))
    if as_json:
        return _json({"columns": [], "types": [], "rows": []})
    return Response(b"", media_type=ARROW_STREAM)


async def _read(request: Request, query: str, parameters: dict[str, Any], as_json: bool) -> Response:
    door = _door(request)
    if isinstance(door, Response):
        return door
    call = DoorCall()
    fmt = "JSONCompactEachRowWithNamesAndTypes" if as_json else "ArrowStream"
    task = asyncio.ensure_future(run_in_threadpool(door.read, query, parameters, fmt=fmt, call=call))
    try:
        while not task.done():
            await asyncio.wait({task}, timeout=DISCONNECT_POLL_SECONDS)
            if not task.done() and await request.is_disconnected():
                await _cancel(door, call, task)
                return Response(status_code=CLIENT_GONE)
        data = task.result()
    except asyncio.CancelledError:  # the server is stopping: do not leave the query running
        door.cancel(call)
        raise
    except QueryRefused as exc:
        return _error(403, f"refused: {exc}")
    except QueryLimitExceeded as exc:
        return _error(422, str(exc), limit=exc.limit)
    except OverloadedError as exc:
        return _json({"error": str(exc)}, 503, {"retry-after": f"{exc.retry_after:g}"})
    except ReadOnlyError as exc:
        return _error(403, f"refused: {exc}")
    except WarehouseError as exc:
        return _error(400, str(exc))
    if as_json:
        return Response(_clickhouse_rows(data), media_type="application/json")
    return Response(data, media_type=ARROW_STREAM)


async def _cancel(door: SqlDoor, call: DoorCall, task: asyncio.Future[bytes]) -> None:
    """Kill the read until its thread returns (a KILL that lands between two of its steps misses)."""
    while not task.done():
        await run_in_threadpool(door.cancel, call)
        await asyncio.wait({task}, timeout=0.5)
    with suppress(Exception):
        task.result()


def _clickhouse_rows(data: bytes) -> bytes:
    """ClickHouse's ``JSONCompactEachRowWithNamesAndTypes`` answer as ``{"columns", "types", "rows"}``.

    Spliced, not parsed: an answer of a million rows is not a million Python lists. Each line is a
    JSON array (ClickHouse escapes every newline inside a value), the bytes are UTF-8.
    """
    lines = data.decode("utf-8", "replace").encode("utf-8").split(b"\n")
    if len(lines) < 2:
        return b'{"columns":[],"types":[],"rows":[]}'
    rows = b",".join(line for line in lines[2:] if line)
    return b'{"columns":' + lines[0] + b',"types":' + lines[1] + b',"rows":[' + rows + b"]}"


def _python(column: Any) -> list[Any]:
    """An Arrow column as Python values; a map becomes a dict (Arrow gives lists of pairs)."""
    import pyarrow as pa

    values = column.to_pylist()
    if pa.types.is_map(column.type):
        return [dict(v) if v is not None else {} for v in values]
    return values


async def insert(request: Request) -> Response:
    """Insert an Arrow IPC stream into an existing table of the server's database."""
    import pyarrow as pa

    state: ServerState = request.app.state.omium
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
