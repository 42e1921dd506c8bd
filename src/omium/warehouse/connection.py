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
sessions. The HTTP SQL door reads through :class:`SqlDoor` instead: every statement checked by
:mod:`omium.warehouse.sql_guard`, run under :class:`~omium.warehouse.sql_guard.QueryLimits`, and
cancellable from another thread.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import re
import threading
from abc import ABC, abstractmethod
from collections import OrderedDict
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlparse

from omium.config import Settings
from omium.errors import ConfigError, OverloadedError, ReadOnlyError, WarehouseError
from omium.warehouse import sql_guard
from omium.warehouse.sql_guard import CheckedQuery, QueryLimitExceeded, QueryLimits, QueryRefused

if TYPE_CHECKING:
    import polars as pl
    import pyarrow as pa
    from clickhouse_connect.driver.client import Client

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
    def command(self, sql: str, parameters: Parameters = None) -> None:
        """Run a statement that writes or changes schema."""

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

    def command(self, sql: str, parameters: Parameters = None) -> None:
        try:
            with self._writing() as writer:
                writer.command(sql, parameters=dict(parameters) if parameters else None)
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


# The door's sessions speak only the JSON syntax tree; these are its own statements, parsed once.
_PARSE_SQL = "SELECT parseQueryToJSON({sql:String})"
_DATABASES_SQL = "SELECT name FROM system.databases"
# A door session marks its queries with its own log_comment: KILL finds them by it.
_KILL_SQL = "KILL QUERY WHERE Settings['log_comment'] = {marker:String} ASYNC"
# How the JSON answer renders ClickHouse's types (see omium.collector.sql_api).
_JSON_OUTPUT: dict[str, int | float | str] = {
    "date_time_output_format": "iso",
    "output_format_json_quote_decimals": 1,
    "output_format_json_quote_64bit_integers": 0,
    "output_format_json_quote_denormals": 0,
    "output_format_json_validate_utf8": 1,
    "output_format_json_named_tuples_as_objects": 1,
}
_CODE = re.compile(r"Code: (\d+)\.")
_CANCELLED = 394  # QUERY_WAS_CANCELLED
_NO_JSON_FORM = 36  # BAD_ARGUMENTS: parseQueryToJSON has no JSON form for this statement


def _setting(value: float | str) -> str:
    if isinstance(value, str):
        if not re.fullmatch(r"[\w.-]*", value):
            raise ValueError(f"unexpected setting value {value!r}")
        return f"'{value}'"
    return repr(value)


def _bind(parameters: Mapping[str, Any], names: frozenset[str]) -> dict[str, str]:
    """Parameter values as the engine reads them (escaped text), for the names the query uses."""
    from clickhouse_connect.driver.binding import format_bind_value

    return {name: format_bind_value(parameters[name]) for name in names if name in parameters}


class DoorCall:
    """One read through a :class:`SqlDoor`: what another thread needs to cancel it."""

    def __init__(self) -> None:
        self.cancelled = False
        self.session: _DoorSession | None = None


class _DoorSession:
    """A chdb connection of the door's: the server's database, the limits, readonly, JSON trees only."""

    def __init__(self, location: str, database: str, limits: QueryLimits) -> None:
        import uuid

        import chdb
        from clickhouse_connect.driver.binding import quote_identifier

        self.marker = f"omium-sql-door-{uuid.uuid4()}"
        self.spoiled = False
        settings = limits.settings() | _JSON_OUTPUT | {"log_comment": self.marker}
        assignments = ", ".join(f"{name} = {_setting(value)}" for name, value in settings.items())
        self.conn = chdb.connect(location)
        try:
            self.conn.query(f"USE {quote_identifier(database)}", "TabSeparated")
            self.conn.query(f"SET {assignments}", "TabSeparated")
            # Last: after readonly = 1 nothing on this session changes a setting again.
            self.conn.query(
                "SET enable_json_ast_dialect = 1, dialect = 'clickhouse_json', readonly = 1", "TabSeparated"
            )
        except BaseException:
            self.conn.close()
            raise

    def run(
        self, tree: str, fmt: str, parameters: Mapping[str, str] | None = None, *, output: bool = True
    ) -> bytes:
        """Run a tree. chdb hands what a failed query had output to the *next* query on the same
        connection, as that one's answer: a failure of a query with ``output`` spoils the session."""
        try:
            return bytes(self.conn.query(tree, fmt, params=dict(parameters or {})).bytes())
        except BaseException:
            self.spoiled = self.spoiled or output
            raise


class SqlDoor:
    """Reads for the HTTP SQL door: checked, limited, cancellable.

    Each read is parsed by ClickHouse (``parseQueryToJSON``), checked by
    :mod:`omium.warehouse.sql_guard`, and the checked tree itself is what runs, on a session of the
    door's own whose settings are the :class:`QueryLimits` (then ``readonly = 1``, so nothing
    changes them). Checks are cached by query text (parsing needs no parameter values).

    A read can be cancelled from another thread (:meth:`cancel`): chdb runs queries in this process
    and releases the GIL meanwhile, so the door runs ``KILL QUERY`` on a connection of its own,
    naming the session's ``log_comment``. Measured: a ``count()`` over ``numbers(1e12)`` stops
    within ~0.1 s of the KILL, and its session answers the next query at once.
    """

    def __init__(
        self, location: str, database: str, limits: QueryLimits, *, sessions: int = 2, cache_size: int = 256
    ) -> None:
        import chdb
        from clickhouse_connect.driver.binding import format_bind_value, quote_identifier

        self.database = database
        self.limits = limits
        self._cache: OrderedDict[str, tuple[str, CheckedQuery]] = OrderedDict()
        self._cache_size = cache_size
        self._cache_lock = threading.Lock()
        # The control connection speaks SQL: it reads the catalog, parses the door's own
        # statements once, and kills. Its lock is also what keeps a KILL from outliving its read.
        self._control_lock = threading.Lock()
        try:
            self._control = chdb.connect(location)
        except Exception as exc:
            raise WarehouseError(f"cannot open the SQL door on {location!r}: {exc}") from exc
        try:
            self._control.query(f"USE {quote_identifier(database)}", "TabSeparated")
            self._control.query("SET readonly = 1", "TabSeparated")
            functions = self._control.query(sql_guard.FUNCTIONS_SQL, "JSONEachRow").bytes().splitlines()
            combinators = self._control.query(sql_guard.COMBINATORS_SQL, "JSONEachRow").bytes().splitlines()
            self.catalog = sql_guard.Catalog.from_rows(
                [json.loads(row) for row in functions], [json.loads(row)["name"] for row in combinators]
            )
            self._parse_tree, self._databases_tree = (
                self._control.query(_PARSE_SQL, "RawBLOB", params={"sql": format_bind_value(sql)})
                .bytes()
                .decode()
                for sql in (_PARSE_SQL, _DATABASES_SQL)
            )
        except Exception as exc:
            self._control.close()
            raise WarehouseError(f"cannot open the SQL door (it needs parseQueryToJSON): {exc}") from exc
        self._location = location
        self._sessions: queue.Queue[_DoorSession] = queue.Queue()
        self._missing = 0  # sessions lost and not yet reopened
        for _ in range(max(1, sessions)):
            self._sessions.put(_DoorSession(location, database, limits))

    def check(self, sql: str) -> CheckedQuery:
        """Parse and check ``sql`` without running it (raises as :meth:`read` would)."""
        session = self._acquire()
        try:
            return self._checked(session, sql)[1]
        except WarehouseError:
            raise
        except Exception as exc:
            raise self._error(exc) from exc
        finally:
            self._release(session)

    def read(
        self, sql: str, parameters: Mapping[str, Any] | None = None, *, fmt: str, call: DoorCall | None = None
    ) -> bytes:
        """Check and run one read; the answer in ClickHouse's format ``fmt`` (``ArrowStream``...).

        Raises:
            QueryRefused: the guard refused the statement.
            QueryLimitExceeded: the query ran past a limit.
            OverloadedError: every session stayed busy for a whole time limit.
            WarehouseError: the engine refused it (syntax, unknown table, a cancelled read...).
        """
        call = call or DoorCall()
        values = dict(parameters or {})
        session = self._acquire()
        try:
            with self._control_lock:
                if call.cancelled:
                    raise WarehouseError("cancelled before it ran")
                call.session = session
            try:
                tree, checked = self._checked(session, sql)
                sql_guard.check_values(
                    checked, values, database=self.database, databases=lambda: self._databases(session)
                )
                if call.cancelled:  # a KILL between two steps found nothing to kill
                    raise WarehouseError("cancelled before it ran")
                return session.run(tree, fmt, _bind(values, checked.parameters))
            except WarehouseError:
                raise
            except Exception as exc:
                raise self._error(exc) from exc
            finally:
                # Under the lock: a KILL in flight finishes before the session can run anything else.
                with self._control_lock:
                    call.session = None
        finally:
            self._release(session)

    def cancel(self, call: DoorCall) -> None:
        """Stop ``call``'s read (from any thread); a read not started yet will not start.

        Never raises: if the KILL fails, the time limit still ends the read.
        """
        with self._control_lock:
            call.cancelled = True
            if call.session is not None:
                try:
                    self._control.query(_KILL_SQL, "TabSeparated", params={"marker": call.session.marker})
                except Exception:
                    logger.exception("could not cancel a SQL door read; its time limit will end it")

    def close(self) -> None:
        """Close the door's connections (reads in flight keep theirs until they end)."""
        while not self._sessions.empty():
            self._sessions.get_nowait().conn.close()
        with self._control_lock:
            self._control.close()

    def _acquire(self) -> _DoorSession:
        with self._control_lock:
            reopen = self._missing > 0 and self._sessions.empty()
            if reopen:
                self._missing -= 1
        if reopen:
            try:
                return _DoorSession(self._location, self.database, self.limits)
            except Exception as exc:
                with self._control_lock:
                    self._missing += 1
                raise WarehouseError(f"cannot open a SQL door session: {exc}") from exc
        try:
            # A session frees within one time limit: waiting longer would queue without end.
            return self._sessions.get(timeout=self.limits.max_execution_seconds)
        except queue.Empty:
            raise OverloadedError("every SQL door session is busy; retry shortly") from None

    def _release(self, session: _DoorSession) -> None:
        if session.spoiled:
            session.conn.close()
            try:
                session = _DoorSession(self._location, self.database, self.limits)
            except Exception:
                logger.exception("cannot reopen a SQL door session; the next read that finds none tries")
                with self._control_lock:
                    self._missing += 1
                return
        self._sessions.put(session)

    def _checked(self, session: _DoorSession, sql: str) -> tuple[str, CheckedQuery]:
        with self._cache_lock:
            hit = self._cache.get(sql)
            if hit is not None:
                self._cache.move_to_end(sql)
                return hit
        from clickhouse_connect.driver.binding import format_bind_value

        try:
            # A failed parse has written nothing yet (one value, computed before its block).
            raw = session.run(self._parse_tree, "RawBLOB", {"sql": format_bind_value(sql)}, output=False)
        except Exception as exc:
            # "does not support JSON serialization", "INSERT with inline data is not supported"
            if _code(exc) == _NO_JSON_FORM and "support" in str(exc):
                raise QueryRefused(
                    "this statement is not allowed on this read-only door: it runs SELECT (WITH, "
                    "UNION...), EXPLAIN of a SELECT, SHOW TABLES and SHOW COLUMNS (for DESCRIBE, "
                    "read system.columns)"
                ) from None
            raise
        try:
            tree = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise WarehouseError(
                "string literals must be valid UTF-8 on this door (build bytes with unhex())"
            ) from None
        try:
            ast = json.loads(tree)
        except RecursionError:
            raise WarehouseError("the query is nested too deeply for this door") from None
        checked = sql_guard.check_statement(ast, database=self.database, catalog=self.catalog)
        with self._cache_lock:
            self._cache[sql] = (tree, checked)
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return tree, checked

    def _databases(self, session: _DoorSession) -> frozenset[str]:
        rows = json.loads(session.run(self._databases_tree, "JSONCompact"))["data"]
        return frozenset(str(row[0]) for row in rows)

    def _error(self, exc: Exception) -> WarehouseError:
        message = _first_line(str(exc))
        code = _code(exc)
        limits = self.limits
        if code == 159:  # TIMEOUT_EXCEEDED
            return QueryLimitExceeded(
                f"the query ran past this door's time limit ({limits.max_execution_seconds:g} s, "
                f"OMIUM_SQL_MAX_EXECUTION_SECONDS): {message}",
                "time",
            )
        if code == 241:  # MEMORY_LIMIT_EXCEEDED
            return QueryLimitExceeded(
                f"the query needed more memory than this door allows ({limits.max_memory_bytes} bytes, "
                f"OMIUM_SQL_MAX_MEMORY_BYTES): {message}",
                "memory",
            )
        if code == 396:  # TOO_MANY_ROWS_OR_BYTES
            return QueryLimitExceeded(
                f"the answer is larger than this door gives ({limits.max_result_rows} rows, "
                f"{limits.max_result_bytes} bytes: OMIUM_SQL_MAX_RESULT_ROWS/_BYTES); aggregate or "
                f"add a LIMIT: {message}",
                "result",
            )
        if code == _CANCELLED:
            return WarehouseError(f"the query was cancelled: {message}")
        if _is_readonly_error(exc):
            return QueryRefused(f"refused by the engine's read-only mode: {message}")
        return WarehouseError(message)


def _code(exc: BaseException) -> int | None:
    match = _CODE.search(str(exc))
    return int(match.group(1)) if match else None


def _first_line(message: str) -> str:
    """A ClickHouse error without the stack trace chdb may append."""
    start = message.find("Code: ")
    text = message[start:] if start >= 0 else message
    return text.strip().splitlines()[0] if text.strip() else "the engine refused the query"


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


__all__ = ["ClickHouseWarehouse", "DoorCall", "SqlDoor", "Warehouse", "connect"]
