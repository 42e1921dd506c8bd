"""The SQL door's engine side: chdb sessions that run only checked statements.

:class:`SqlDoor` is what ``POST /v1/sql`` runs through (see :mod:`omium.collector.sql_api`):
every statement is checked by :mod:`omium.warehouse.sql_guard`, and the checked syntax tree itself
is run (ClickHouse's ``clickhouse_json`` dialect). Reads run on sessions fixed at
:class:`~omium.warehouse.sql_guard.QueryLimits` and ``readonly``, and another thread can cancel a
read (``KILL QUERY`` by the session's own ``log_comment``) when its client goes away. Writes
(``"readonly": false``) run one at a time on a session of their own.
"""

from __future__ import annotations

import json
import logging
import queue
import re
import threading
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

from omium.errors import OverloadedError, QueryLimitExceeded, QueryRefused, WarehouseError
from omium.warehouse import sql_guard
from omium.warehouse.connection import _is_readonly_error
from omium.warehouse.sql_guard import CheckedQuery, QueryLimits

logger = logging.getLogger(__name__)

# The door's sessions speak only the JSON syntax tree; these are its own statements, parsed once.
_PARSE_SQL = "SELECT parseQueryToJSON({sql:String})"
_DATABASES_SQL = "SELECT name FROM system.databases"
_COLUMNS_SQL = (
    "SELECT name, type, default_kind FROM system.columns "
    "WHERE database = {db:String} AND table = {table:String} ORDER BY position"
)
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
# A write answers once it is done: ALTER ... UPDATE / DELETE wait for their mutation.
# The door's write session: mutations finish before the answer; what the product's own statements
# need (omium.pipelines.spans.NORMALISE_SETTINGS), which a client can never set itself.
_WRITES: dict[str, int | float | str] = {"mutations_sync": 1, "enable_materialized_cte": 1}
_CODE = re.compile(r"Code: (\d+)\.")
_CANCELLED = 394  # QUERY_WAS_CANCELLED
_NO_JSON_FORM = 36  # BAD_ARGUMENTS: parseQueryToJSON has no JSON form for this statement
# The keyword that ends an INSERT's head: tried in order, as it may also appear in a name or comment.
_VALUES = re.compile(r"\bVALUES\b", re.IGNORECASE)
_VALUES_TRIES = 16
_NOT_INSERTABLE = frozenset({"MATERIALIZED", "ALIAS", "EPHEMERAL"})
_CACHEABLE = 64 << 10  # longest statement text whose check is cached
_READ_REFUSAL = (
    "this statement is not allowed on this read-only door: it runs SELECT (WITH, UNION...), EXPLAIN of "
    "a SELECT, SHOW TABLES and SHOW COLUMNS (for DESCRIBE, read system.columns)"
)


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
    """A chdb connection of the door's: the server's database, its settings, JSON trees only.

    A read session ends ``readonly = 1`` (nothing on it changes a setting again); the write session
    does not, and runs only trees :func:`~omium.warehouse.sql_guard.check_write` let through, which
    hold no ``SET`` or ``SETTINGS``.
    """

    def __init__(
        self, location: str, database: str, settings: Mapping[str, float | str], *, readonly: bool = True
    ) -> None:
        import uuid

        import chdb
        from clickhouse_connect.driver.binding import quote_identifier

        self.marker = f"omium-sql-door-{uuid.uuid4()}"
        self.spoiled = False
        settings = {**settings, "log_comment": self.marker}
        assignments = ", ".join(f"{name} = {_setting(value)}" for name, value in settings.items())
        self.conn = chdb.connect(location)
        try:
            self.conn.query(f"USE {quote_identifier(database)}", "TabSeparated")
            self.conn.query(f"SET {assignments}", "TabSeparated")
            # Last: after readonly = 1 nothing on this session changes a setting again.
            self.conn.query(
                "SET enable_json_ast_dialect = 1, dialect = 'clickhouse_json'"
                + (", readonly = 1" if readonly else ""),
                "TabSeparated",
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
    """The HTTP SQL door: reads checked, limited and cancellable; writes checked.

    Each read is parsed by ClickHouse (``parseQueryToJSON``), checked by
    :mod:`omium.warehouse.sql_guard`, and the checked tree itself is what runs, on a session of the
    door's own whose settings are the :class:`QueryLimits` (then ``readonly = 1``, so nothing
    changes them). Checks are cached by query text (parsing needs no parameter values).

    Writes (:meth:`write`) are checked by :func:`~omium.warehouse.sql_guard.check_write` and run
    one at a time on a write session of the door's, without the read limits (as the server's own
    writes: a pipeline's ``INSERT ... SELECT`` may take long). ``INSERT ... VALUES`` has no JSON
    form (its rows are data the Values format would evaluate, unseen by a check): the door parses
    the head alone, reads its rows as the arguments of ``values('<the columns' types>', ...)`` and
    runs ``INSERT ... SELECT * FROM values(...)``, checked like any other. Each value is cast to
    its column's type as the Values format would; numbers are SQL literals, so one past 64 bits or
    a Decimal of more than 17 digits travels as a quoted string.

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
        self._read_settings = limits.settings() | _JSON_OUTPUT
        self._cache: OrderedDict[tuple[str, ...], Any] = OrderedDict()
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
            self._parse_tree, self._databases_tree, self._columns_tree = (
                self._control.query(_PARSE_SQL, "RawBLOB", params={"sql": format_bind_value(sql)})
                .bytes()
                .decode()
                for sql in (_PARSE_SQL, _DATABASES_SQL, _COLUMNS_SQL)
            )
        except Exception as exc:
            self._control.close()
            raise WarehouseError(f"cannot open the SQL door (it needs parseQueryToJSON): {exc}") from exc
        self._location = location
        self._sessions: queue.Queue[_DoorSession] = queue.Queue()
        self._missing = 0  # sessions lost and not yet reopened
        for _ in range(max(1, sessions)):
            self._sessions.put(self._read_session())
        self._write_lock = threading.Lock()
        self._writer: _DoorSession | None = None  # opened by the first write

    def check(
        self, sql: str, parameters: Mapping[str, Any] | None = None, *, write: bool = False
    ) -> CheckedQuery:
        """Parse and check ``sql`` without running it (raises as :meth:`read` or :meth:`write` would)."""
        session = self._acquire()
        try:
            if write:
                return self._checked_write(session, sql, dict(parameters or {}))[1]
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

    def write(self, sql: str, parameters: Mapping[str, Any] | None = None) -> None:
        """Check and run one write (``INSERT``, ``CREATE TABLE``... see
        :func:`~omium.warehouse.sql_guard.check_write`), after the writes before it.

        Raises:
            QueryRefused: the guard refused the statement.
            WarehouseError: the engine refused it (syntax, unknown table or column...).
        """
        values = dict(parameters or {})
        with self._write_lock:
            if self._writer is None:
                try:
                    self._writer = _DoorSession(self._location, self.database, _WRITES, readonly=False)
                except Exception as exc:
                    raise WarehouseError(f"cannot open the SQL door's write session: {exc}") from exc
            session = self._writer
            try:
                tree, checked = self._checked_write(session, sql, values)
                sql_guard.check_values(
                    checked, values, database=self.database, databases=lambda: self._databases(session)
                )
                session.run(tree, "TabSeparated", _bind(values, checked.parameters))
            except WarehouseError:
                raise
            except Exception as exc:
                raise self._error(exc) from exc
            finally:
                if session.spoiled:
                    session.conn.close()
                    self._writer = None

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
        with self._write_lock:
            if self._writer is not None:
                self._writer.conn.close()
                self._writer = None
        with self._control_lock:
            self._control.close()

    def _read_session(self) -> _DoorSession:
        return _DoorSession(self._location, self.database, self._read_settings)

    def _acquire(self) -> _DoorSession:
        with self._control_lock:
            reopen = self._missing > 0 and self._sessions.empty()
            if reopen:
                self._missing -= 1
        if reopen:
            try:
                return self._read_session()
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
                session = self._read_session()
            except Exception:
                logger.exception("cannot reopen a SQL door session; the next read that finds none tries")
                with self._control_lock:
                    self._missing += 1
                return
        self._sessions.put(session)

    def _cached(self, key: tuple[str, ...]) -> Any:
        with self._cache_lock:
            hit = self._cache.get(key)
            if hit is not None:
                self._cache.move_to_end(key)
            return hit

    def _remember(self, key: tuple[str, ...], value: Any) -> Any:
        if sum(map(len, key)) > _CACHEABLE:
            return value  # a one-off (rows inline, say): caching it would only hold memory
        with self._cache_lock:
            self._cache[key] = value
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return value

    def _parse(self, session: _DoorSession, sql: str) -> tuple[str, Any]:
        """ClickHouse's syntax tree of ``sql``: its JSON text, and that text read."""
        from clickhouse_connect.driver.binding import format_bind_value

        # A failed parse has written nothing yet (one value, computed before its block).
        raw = session.run(self._parse_tree, "RawBLOB", {"sql": format_bind_value(sql)}, output=False)
        try:
            tree = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise WarehouseError(
                "string literals must be valid UTF-8 on this door (build bytes with unhex())"
            ) from None
        try:
            return tree, json.loads(tree)
        except RecursionError:
            raise WarehouseError("the query is nested too deeply for this door") from None

    def _checked(self, session: _DoorSession, sql: str, *, write: bool = False) -> tuple[str, CheckedQuery]:
        key = ("write" if write else "read", sql)
        hit = self._cached(key)
        if hit is not None:
            return hit
        try:
            tree, ast = self._parse(session, sql)
        except WarehouseError:
            raise
        except Exception as exc:
            # "does not support JSON serialization", "INSERT with inline data is not supported"
            if _code(exc) == _NO_JSON_FORM and "support" in str(exc):
                if write and "inline data" in str(exc):
                    raise _InlineData from None
                if not write:
                    raise QueryRefused(_READ_REFUSAL) from None
                raise QueryRefused(
                    f"{_unsupported(str(exc))} is not allowed on this door: {sql_guard.WRITES_ALLOWED}"
                ) from None
            raise
        check = sql_guard.check_write if write else sql_guard.check_statement
        checked = check(ast, database=self.database, catalog=self.catalog)
        return self._remember(key, (tree, checked))

    def _checked_write(
        self, session: _DoorSession, sql: str, values: Mapping[str, Any]
    ) -> tuple[str, CheckedQuery]:
        try:
            return self._checked(session, sql, write=True)
        except _InlineData:
            pass
        from clickhouse_connect.driver.binding import format_query_value

        head, rows = self._values_head(session, sql)
        target = sql_guard.insert_target(head, database=self.database)
        if target.parameter is not None:
            table = sql_guard.check_identifier(target.parameter, values.get(target.parameter))
        else:
            table = str(target.table)
        structure = self._structure(session, table, target.columns)
        key = ("values", sql, structure)
        hit = self._cached(key)
        if hit is not None:
            return hit
        # The client's text, for the parser only: what runs is the tree checked below. Rows that
        # close the parenthesis early make some other SELECT, checked all the same.
        rows = rows.rstrip().removesuffix(";")
        select = f"SELECT * FROM values({format_query_value(structure)}, {rows}\n)"  # noqa: S608
        try:
            select_ast = self._parse(session, select)[1]
        except WarehouseError:
            raise
        except Exception as exc:
            raise WarehouseError(
                f"the rows after VALUES are not SQL expressions this door can read: {_first_line(str(exc))}"
            ) from None
        ast = {k: v for k, v in head.items() if k != "format"} | {"select": select_ast}
        checked = sql_guard.check_write(ast, database=self.database, catalog=self.catalog)
        return self._remember(key, (json.dumps(ast), checked))

    def _values_head(self, session: _DoorSession, sql: str) -> tuple[dict[str, Any], str]:
        """An ``INSERT ... VALUES`` cut after its ``VALUES``: the head's tree, and the rows' text."""
        hit = self._cached(("head", sql))
        if hit is not None:
            return hit
        for tried, match in enumerate(_VALUES.finditer(sql)):
            if tried == _VALUES_TRIES:
                break
            try:
                head = self._parse(session, sql[: match.end()])[1]
            except Exception:
                continue  # "VALUES" inside a name or a comment: the head is not over
            if (
                isinstance(head, dict)
                and head.get("type") == "InsertQuery"
                and head.get("format") == "Values"
            ):
                return self._remember(("head", sql), (head, sql[match.end() :]))
        raise QueryRefused(
            "an INSERT carries its rows on this door as VALUES (SQL expressions); send other formats "
            "as Arrow to /v1/insert"
        )

    def _structure(self, session: _DoorSession, table: str, columns: tuple[str, ...] | None) -> str:
        """``values()``'s structure for ``table``'s columns (all it takes without a list)."""
        from clickhouse_connect.driver.binding import format_bind_value, quote_identifier

        bound = {"db": format_bind_value(self.database), "table": format_bind_value(table)}
        rows = json.loads(session.run(self._columns_tree, "JSONCompact", bound))["data"]
        types = {str(name): str(kind) for name, kind, _ in rows}
        if not types:
            raise WarehouseError(f"no table {table!r} in database {self.database!r}")
        names = columns or [str(name) for name, _, default in rows if default not in _NOT_INSERTABLE]
        for name in names:
            if name not in types:
                raise WarehouseError(f"no column {name!r} in table {table!r}")
        return ", ".join(f"{quote_identifier(name)} {types[name]}" for name in names)

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


class _InlineData(Exception):
    """An INSERT whose rows follow it as data (no JSON form): the door reads them as VALUES."""


def _unsupported(message: str) -> str:
    """The statement a "does not support JSON serialization" error names (``GRANT``...)."""
    match = re.search(r"AST node of type '([^']+)'", message)
    if match is None:
        return "this statement"
    name = match.group(1).split("__")[0]
    return name.removesuffix(" query").upper() if " " in name else sql_guard.statement_name(name)


def _code(exc: BaseException) -> int | None:
    match = _CODE.search(str(exc))
    return int(match.group(1)) if match else None


def _first_line(message: str) -> str:
    """A ClickHouse error without the stack trace chdb may append."""
    start = message.find("Code: ")
    text = message[start:] if start >= 0 else message
    return text.strip().splitlines()[0] if text.strip() else "the engine refused the query"


__all__ = ["DoorCall", "SqlDoor"]
