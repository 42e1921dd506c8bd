"""The warehouse through the Omium server's SQL API (``POST /v1/sql``, ``POST /v1/insert``).

In embedded mode the server process alone opens the chdb data directory; every other process
(console, Dagster, notebooks, CLI) reads through here. Reads need no token on a loopback server;
writes always need the server's API token.
"""

from __future__ import annotations

import socket
from collections.abc import Mapping, Sequence
from typing import Any

import httpx

from omium.errors import (
    AuthError,
    QueryLimitExceeded,
    ReadOnlyError,
    ServerError,
    ServerUnavailable,
    WarehouseError,
)
from omium.warehouse.connection import Parameters, Warehouse

ARROW_STREAM = "application/vnd.apache.arrow.stream"


def server_answers(server_url: str, timeout: float = 0.5) -> bool:
    """True when an Omium server answers ``/v1/health`` at ``server_url``."""
    try:
        response = httpx.get(f"{server_url}/v1/health", timeout=timeout)
    except httpx.HTTPError:
        return False
    return response.status_code == 200 and response.headers.get("x-omium-server") is not None


def _jsonable(value: Any) -> Any:
    """Parameters travel as JSON; the server binds them server-side by name."""
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return value


class RemoteWarehouse(Warehouse):
    """A :class:`Warehouse` that sends SQL to an Omium server."""

    def __init__(
        self, server_url: str, *, token: str | None = None, database: str = "", timeout: float = 60.0
    ) -> None:
        self.mode = "remote"
        self.database = database
        self._url = server_url.rstrip("/")
        headers = {"x-omium-client": "warehouse"}
        if token:
            headers["authorization"] = f"Bearer {token}"
        # Without TCP_NODELAY a request whose body goes out in a second segment waits ~40 ms for
        # the server's delayed ACK: every query would pay it.
        transport = httpx.HTTPTransport(socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)])
        self._http = httpx.Client(base_url=self._url, headers=headers, timeout=timeout, transport=transport)

    def _post(self, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self._http.post(path, **kwargs)
        except httpx.TransportError as exc:
            raise ServerUnavailable(f"no Omium server answered at {self._url}: {exc}") from exc
        if response.status_code == 200:
            return response
        try:
            answer = response.json()
            message = answer.get("error", response.text)
        except (ValueError, AttributeError):
            answer, message = {}, response.text
        if response.status_code == 401:
            raise AuthError(message, response.status_code)
        if response.status_code == 403:
            raise ReadOnlyError(message)
        if response.status_code == 400:
            raise WarehouseError(message)
        if response.status_code == 422 and "limit" in answer:  # past one of the SQL door's limits
            raise QueryLimitExceeded(message, str(answer["limit"]))
        raise ServerError(f"{response.status_code}: {message}", response.status_code)

    def arrow_bytes(self, sql: str, parameters: Parameters = None, *, readonly: bool = True) -> bytes:
        body = {
            "query": sql,
            "parameters": {k: _jsonable(v) for k, v in (parameters or {}).items()},
            "readonly": readonly,
        }
        return self._post("/v1/sql", json=body, headers={"accept": ARROW_STREAM}).content

    def command(
        self, sql: str, parameters: Parameters = None, settings: Mapping[str, int] | None = None
    ) -> None:
        # ``settings`` stay here: the server's door sets what the product's statements need.
        self.arrow_bytes(sql, parameters, readonly=False)

    def insert(self, table: str, columns: Sequence[Sequence[Any]], column_names: Sequence[str]) -> None:
        import pyarrow as pa

        def array(values: Sequence[Any]) -> Any:
            if values and isinstance(values[0], dict):  # a Map column, not a struct
                # Maps of numbers (feature maps) stay numbers; anything else travels as strings.
                numeric = all(
                    isinstance(x, (int, float)) and not isinstance(x, bool)
                    for v in values
                    for x in v.values()
                )
                value_type = pa.float64() if numeric and any(values) else pa.string()
                return pa.array([list(v.items()) for v in values], type=pa.map_(pa.string(), value_type))
            return pa.array(list(values))

        batch = pa.table({name: array(col) for name, col in zip(column_names, columns, strict=True)})
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, batch.schema) as writer:
            writer.write_table(batch)
        self._post(
            "/v1/insert",
            params={"table": table},
            content=sink.getvalue().to_pybytes(),
            headers={"content-type": ARROW_STREAM},
        )

    def close(self) -> None:
        self._http.close()


__all__ = ["RemoteWarehouse", "server_answers"]
