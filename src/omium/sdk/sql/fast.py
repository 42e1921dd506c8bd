"""The recorder's write on SQLite, without the layers: one transaction per recorded call.

A recorded call is the hot path (every step, tool and model call of every run): its values and
its record are one ``BEGIN IMMEDIATE ... COMMIT`` on a connection of the calling thread's own,
with statements compiled once from the same SQLAlchemy statements the store runs elsewhere. One
commit instead of three, and no per-statement layers: a call costs tens of microseconds, not
hundreds. The fence is checked under the write lock the transaction holds, as every other fenced
write of the store is.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Mapping
from typing import Any

from sqlalchemy.dialects import sqlite

from omium.sdk.sql.engine import BUSY_TIMEOUT_SECONDS
from omium.sdk.sql.statements import Statements
from omium.sdk.store import RunLease, StepRecord, _fenced_out

_LEASE = (
    "SELECT run_id, holder, fence, lease_until, acquired_at, version, stop, stop_by "
    "FROM run_leases WHERE run_id = ?"
)


def _compiled(statement: Any) -> tuple[str, tuple[str, ...]]:
    compiled = statement.compile(dialect=sqlite.dialect())
    return str(compiled), tuple(compiled.positiontup or ())


class SqliteCalls:
    """Writes recorded calls to one SQLite file, a connection per thread.

    Args:
        path: the database file (already migrated).
        statements: the store's statements, compiled here to SQLite's text once.
        synchronous: ``NORMAL`` or ``FULL`` (fsync each commit), as the store's engine has it.
    """

    def __init__(self, path: str, statements: Statements, synchronous: str) -> None:
        self._path = path
        self._synchronous = synchronous
        self._blob_sql, self._blob_names = _compiled(statements.put_blob)
        self._step_sql, self._step_names = _compiled(statements.put_step)
        self._local = threading.local()
        self._lock = threading.Lock()
        self._open: list[sqlite3.Connection] = []

    def _connection(self) -> sqlite3.Connection:
        connection: sqlite3.Connection | None = getattr(self._local, "connection", None)
        if connection is None:
            connection = sqlite3.connect(
                self._path, timeout=BUSY_TIMEOUT_SECONDS, isolation_level=None, check_same_thread=False
            )
            connection.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT_SECONDS * 1000)}")
            connection.execute(f"PRAGMA synchronous={self._synchronous}")
            self._local.connection = connection
            with self._lock:
                self._open.append(connection)
        return connection

    def record_call(self, step: StepRecord, values: Mapping[str, bytes]) -> tuple[str, str] | None:
        """Store ``values`` and ``step`` in one transaction; :class:`FencedOut` (nothing stored)
        if ``step.fence`` is set and not the run's current one. Returns the operator's stop
        request on the lease (``(request, by)``), read with the fence, or None."""
        connection = self._connection()
        connection.execute("BEGIN IMMEDIATE")
        stop: tuple[str, str] | None = None
        try:
            if step.fence:
                row = connection.execute(_LEASE, (step.run_id,)).fetchone()
                if row is None or row[2] != step.fence:
                    raise _fenced_out(step.run_id, step.fence, RunLease(*row) if row else None)
                if row[6]:
                    stop = (row[6], row[7])
            if values:
                rows = ({"hash": k, "data": v, "size": len(v)} for k, v in values.items())
                connection.executemany(self._blob_sql, [tuple(r[n] for n in self._blob_names) for r in rows])
            fields = step.__dict__
            connection.execute(self._step_sql, tuple(fields[name] for name in self._step_names))
            connection.execute("COMMIT")
        except BaseException:
            connection.execute("ROLLBACK")
            raise
        return stop

    def close(self) -> None:
        """Close every thread's connection."""
        with self._lock:
            for connection in self._open:
                connection.close()
            self._open.clear()
        self._local = threading.local()


__all__ = ["SqliteCalls"]
