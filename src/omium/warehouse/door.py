"""The SQL door's engine side: chdb sessions that run only checked reads, under limits, cancellable.

:class:`SqlDoor` is what ``POST /v1/sql`` reads through (see :mod:`omium.collector.sql_api`):
every statement is checked by :mod:`omium.warehouse.sql_guard`, the checked syntax tree itself is
run (ClickHouse's ``clickhouse_json`` dialect) on sessions fixed at
:class:`~omium.warehouse.sql_guard.QueryLimits`, and another thread can cancel a read (``KILL
QUERY`` by the session's own ``log_comment``) when its client goes away.
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


__all__ = ["DoorCall", "SqlDoor"]
