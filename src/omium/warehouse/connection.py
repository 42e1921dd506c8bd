"""One ``connect()`` over the three ways to reach the warehouse.

* **embedded** — ClickHouse in-process through chdb (clickhouse-connect's ``chdb://`` DSN). chdb
  opens one data directory per process under a lock, so in embedded mode only the Omium server
  (or a lone script, notebook or test) opens it.
* **clickhouse** — a ClickHouse server over HTTP(S) (``OMIUM_CLICKHOUSE_URL``).
* **remote** — the Omium server's SQL API (``POST /v1/sql``, Arrow IPC); how every process other
  than the server reaches an embedded warehouse.

Callers write ClickHouse SQL with server-side parameters (``{run_id:String}``) and never format
values into SQL text.

Trusted code in the process reads through :meth:`Warehouse.query_arrow` and friends, on read-only
sessions. The HTTP SQL door reads through :class:`omium.warehouse.door.SqlDoor` instead: every
statement checked by :mod:`omium.warehouse.sql_guard`, run under
:class:`~omium.warehouse.sql_guard.QueryLimits`, and cancellable from another thread.
"""

from __future__ import annotations

import logging
import os
import queue
import re
import threading
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlparse

from omium.config import Settings
from omium.errors import ConfigError, ReadOnlyError, WarehouseError
from omium.warehouse.sql_guard import QueryLimits

if TYPE_CHECKING:
    import polars as pl
    import pyarrow as pa
    from clickhouse_connect.driver.client import Client

    from omium.warehouse.door import SqlDoor

logger = logging.getLogger(__name__)

Mode = Literal["auto", "embedded", "clickhouse", "remote"]
Parameters = Mapping[str, Any] | None

READONLY_CODE = 164  # ClickHouse's READONLY error code
# Statements that produce a result set; anything else runs as a command (which returns none).
_RESULT_STATEMENT = re.compile(
    r"^\s*(\(|SELECT\b|WITH\b|SHOW\b|DESC\b|DESCRIBE\b|EXPLAIN\b|EXISTS\b)", re.IGNORECASE
)


def _is_readonly_error(exc: BaseException) -> bool:
    text = str(exc)
    return f"Code: {READONLY_CODE}." in text or "(READONLY)" in text


class Warehouse(ABC):
    """A connection to Omium's warehouse, whatever carries it.

    Every method takes SQL with ``{name:Type}`` placeholders and a ``parameters`` mapping that
    the engine binds server-side.
    """

    database: str
    mode: str

    @abstractmethod
    def arrow_bytes(self, sql: str, parameters: Parameters = None, *, readonly: bool = True) -> bytes:
        """Run ``sql`` and return the result as an Arrow IPC stream.

        With ``readonly`` (the default) the engine itself refuses anything that writes, reads
        files or URLs, or changes settings; :class:`ReadOnlyError` is raised.
        """

    @abstractmethod
    def command(
        self, sql: str, parameters: Parameters = None, settings: Mapping[str, int] | None = None
    ) -> None:
        """Run a statement that writes or changes schema.

        ``settings``: what one of the product's own statements needs (the pipelines' MATERIALIZED
        CTE). Passed by the connection, never written in a statement, as the SQL door refuses a
        SETTINGS clause; through the door (a remote warehouse) the server's write session sets
        the same itself.
        """

    @abstractmethod
    def insert(self, table: str, columns: Sequence[Sequence[Any]], column_names: Sequence[str]) -> None:
        """Insert column-oriented data (one sequence per column) into ``table``."""

    def query_arrow(self, sql: str, parameters: Parameters = None) -> pa.Table:
        """Run a read-only query and return a ``pyarrow.Table``."""
        import pyarrow as pa

        data = self.arrow_bytes(sql, parameters, readonly=True)
        if not data:
            return pa.table({})
        return pa.ipc.open_stream(data).read_all()

    def query_df(self, sql: str, parameters: Parameters = None) -> pl.DataFrame:
        """Run a read-only query and return a ``polars.DataFrame``."""
        import polars as pl

        frame = pl.from_arrow(self.query_arrow(sql, parameters))
        assert isinstance(frame, pl.DataFrame)
        return frame

    def query_rows(self, sql: str, parameters: Parameters = None) -> list[dict[str, Any]]:
        """Run a read-only query and return its rows as dicts."""
        return self.query_arrow(sql, parameters).to_pylist()

    def scalar(self, sql: str, parameters: Parameters = None) -> Any:
        """Run a read-only query returning one value."""
        table = self.query_arrow(sql, parameters)
        if table.num_rows == 0 or table.num_columns == 0:
            return None
        return table.column(0)[0].as_py()

    def sql_door(self, limits: QueryLimits) -> SqlDoor:
        """The guarded, limited reads of the HTTP SQL door (see :class:`SqlDoor`).

        Raises:
            WarehouseError: this warehouse cannot serve the door.
        """
        raise WarehouseError(f"the SQL door needs the embedded warehouse, not {self.mode!r}")

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""

    def clone(self) -> Warehouse:
        """Another connection to the same warehouse and database, with sessions of its own."""
        raise NotImplementedError(f"{type(self).__name__} cannot be cloned")

    def __enter__(self) -> Warehouse:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class ClickHouseWarehouse(Warehouse):
    """The warehouse over clickhouse-connect: in-process chdb or a ClickHouse server.

    Writes go through one client. Read-only queries go through a small pool of clients whose
    session is fixed at ``readonly=1`` (a chdb session cannot leave read-only mode once set, so
    the pool never mixes with the writer).
    """

    def __init__(self, dsn: str, database: str, *, readers: int = 2, **client_kwargs: Any) -> None:
        import clickhouse_connect

        self.database = database
        self.mode = "embedded" if dsn.startswith("chdb:") else "clickhouse"
        self._dsn = dsn
        self._client_kwargs = client_kwargs
        self._write_lock = threading.Lock()
        try:
            bootstrap = clickhouse_connect.get_client(dsn=dsn, **client_kwargs)
        except Exception as exc:  # chdb raises plain errors for a locked or bad path
            raise WarehouseError(f"cannot open the warehouse at {dsn!r}: {exc}") from exc
        bootstrap.command("CREATE DATABASE IF NOT EXISTS {db:Identifier}", parameters={"db": database})
        bootstrap.database = database
        self._writer: Client = bootstrap
        self._readers: queue.Queue[Client] = queue.Queue()
        for _ in range(max(1, readers)):
            self._readers.put(self._new_reader())
        self._doors: dict[QueryLimits, SqlDoor] = {}
        self._doors_lock = threading.Lock()

    def clone(self) -> ClickHouseWarehouse:
        """Another connection with its own sessions (chdb: the same engine, new handles)."""
        return ClickHouseWarehouse(self._dsn, self.database, readers=1, **self._client_kwargs)

    def _new_reader(self) -> Client:
        import clickhouse_connect

        client = clickhouse_connect.get_client(dsn=self._dsn, database=self.database, **self._client_kwargs)
        if self.mode == "embedded":
            # Session-level: the engine refuses writes, file()/url() and setting changes.
            client.command("SET readonly = 1")
        return client

    @contextmanager
    def _reader(self) -> Iterator[Client]:
        client = self._readers.get()
        try:
            yield client
        except BaseException:
            # chdb hands the output a failed query had written to the next query on the same
            # connection: after a failure, a fresh connection (measured: ~20 ms).
            client.close()
            client = self._new_reader()
            raise
        finally:
            self._readers.put(client)

    def arrow_bytes(self, sql: str, parameters: Parameters = None, *, readonly: bool = True) -> bytes:
        params = dict(parameters) if parameters else None
        try:
            if readonly:
                # A ClickHouse server takes readonly per request; chdb readers hold it per session.
                settings = {"readonly": 1} if self.mode == "clickhouse" else None
                with self._reader() as client:
                    return bytes(
                        client.raw_query(sql, parameters=params, settings=settings, fmt="ArrowStream")
                    )
            with self._writing() as writer:
                if _RESULT_STATEMENT.match(sql):
                    return bytes(writer.raw_query(sql, parameters=params, fmt="ArrowStream"))
                writer.command(sql, parameters=params)
                return b""
        except Exception as exc:
            raise _translate(exc) from exc

    def command(
        self, sql: str, parameters: Parameters = None, settings: Mapping[str, int] | None = None
    ) -> None:
        try:
            with self._writing() as writer:
                writer.command(
                    sql,
                    parameters=dict(parameters) if parameters else None,
                    settings=dict(settings) if settings else None,
                )
        except Exception as exc:
            raise _translate(exc) from exc

    def insert(self, table: str, columns: Sequence[Sequence[Any]], column_names: Sequence[str]) -> None:
        try:
            with self._writing() as writer:
                writer.insert(table, columns, column_names=list(column_names), column_oriented=True)
        except Exception as exc:
            raise _translate(exc) from exc

    @contextmanager
    def _writing(self) -> Iterator[Client]:
        import clickhouse_connect

        with self._write_lock:
            try:
                yield self._writer
            except BaseException:
                if self.mode == "embedded":  # see _reader: a failed statement spoils its chdb connection
                    self._writer.close()
                    self._writer = clickhouse_connect.get_client(
                        dsn=self._dsn, database=self.database, **self._client_kwargs
                    )
                raise

    def sql_door(self, limits: QueryLimits) -> SqlDoor:
        if self.mode != "embedded":
            # A ClickHouse server has users, grants and settings profiles of its own: give clients
            # a ClickHouse user of their own rather than a door this process cannot fence.
            return super().sql_door(limits)
        with self._doors_lock:
            door = self._doors.get(limits)
            if door is None:
                from omium.warehouse.door import SqlDoor

                door = self._doors[limits] = SqlDoor(_chdb_location(self._dsn), self.database, limits)
            return door

    def close(self) -> None:
        with self._doors_lock:
            for door in self._doors.values():
                door.close()
            self._doors.clear()
        self._writer.close()
        while not self._readers.empty():
            self._readers.get_nowait().close()


def _translate(exc: Exception) -> WarehouseError:
    if isinstance(exc, WarehouseError):
        return exc
    message = str(exc).strip()
    if _is_readonly_error(exc):
        return ReadOnlyError(
            "this connection is read-only: the statement writes or reads outside the "
            f"warehouse ({message.splitlines()[0] if message else 'READONLY'})"
        )
    return WarehouseError(message)


def _chdb_location(dsn: str) -> str:
    """The chdb engine a ``chdb://`` DSN opens, spelled as clickhouse-connect spells it to chdb."""
    parsed = urlparse(dsn)
    location = parsed.netloc.rpartition("@")[2] if parsed.netloc else parsed.path
    if location in ("", "memory", ":memory:"):
        return ":memory:"
    return os.path.realpath(location)


def _clickhouse_dsn(url: str) -> tuple[str, dict[str, Any]]:
    """Split an ``OMIUM_CLICKHOUSE_URL`` into a clickhouse-connect DSN and keyword arguments."""
    if url.startswith("chdb:"):
        return url, {}
    parsed = urlparse(url)
    scheme = "https" if parsed.scheme == "https" else "http"
    netloc = parsed.netloc
    return f"{scheme}://{netloc}", {}


def connect(
    settings: Settings | None = None,
    *,
    mode: Mode = "auto",
    database: str | None = None,
    migrate: bool = True,
) -> Warehouse:
    """Open Omium's warehouse.

    Args:
        settings: Settings to use (default: read from ``OMIUM_*`` environment variables).
        mode: ``"auto"`` picks ``clickhouse`` when ``OMIUM_CLICKHOUSE_URL`` is set, else
            ``remote`` when an Omium server answers at ``OMIUM_SERVER_URL``, else ``embedded``.
        database: ClickHouse database (default ``settings.database``); tests use one each.
        migrate: bring the schema up to date (not for ``remote``: the server owns the schema).

    Returns:
        A :class:`Warehouse`.

    Example:
        >>> wh = connect(mode="embedded")                       # doctest: +SKIP
        >>> wh.query_df("SELECT count() AS n FROM otel_traces FINAL")   # doctest: +SKIP
    """
    settings = settings or Settings.from_env()
    database = database or settings.database
    if mode == "auto":
        if settings.clickhouse_url and not settings.clickhouse_url.startswith("chdb:"):
            mode = "clickhouse"
        else:
            from omium.warehouse.remote import server_answers

            mode = "remote" if server_answers(settings.server_url) else "embedded"
    warehouse: Warehouse
    if mode == "remote":
        from omium.warehouse.remote import RemoteWarehouse

        return RemoteWarehouse(settings.server_url, token=settings.api_token, database=database)
    if mode == "embedded":
        if settings.clickhouse_url and settings.clickhouse_url.startswith("chdb:"):
            dsn = settings.clickhouse_url
        else:
            path = settings.warehouse_path.resolve()
            path.mkdir(parents=True, exist_ok=True)
            dsn = f"chdb://{path}"
        warehouse = ClickHouseWarehouse(dsn, database)
    elif mode == "clickhouse":
        if not settings.clickhouse_url:
            raise ConfigError("mode='clickhouse' needs OMIUM_CLICKHOUSE_URL")
        dsn, kwargs = _clickhouse_dsn(settings.clickhouse_url)
        warehouse = ClickHouseWarehouse(dsn, database, **kwargs)
    else:
        raise ConfigError(f"unknown warehouse mode {mode!r}; use auto, embedded, clickhouse or remote")
    if migrate:
        from omium.warehouse.migrations import migrate as run_migrations

        run_migrations(warehouse)
    return warehouse


__all__ = ["ClickHouseWarehouse", "Warehouse", "connect"]
