"""The checkpoint store on a transactional SQL database: SQLite (a file) or PostgreSQL.

Every decision the contract asks for (does this run exist, which version comes next, who holds
the lease, is this fence current, which command does this worker get) is made by the database as
it writes, never by a lock in this process, so any number of store objects in any number of
processes share one database safely. How, per operation:

=====================  ==========================================================================
create a run/command   INSERT ... ON CONFLICT DO NOTHING: the primary key decides, 0 rows = exists
update_run             UPDATE ... WHERE version = :expected (0 rows: the version moved on)
write_state            INSERT version N+1 (a primary key) after reading N as the latest, in one
                       transaction; two writers of N+1 cannot both insert it
fenced insert          INSERT ... SELECT ... FROM run_leases WHERE fence = :fence (FOR SHARE on
                       PostgreSQL): the fence is checked in the statement that writes
other fenced writes    the lease row read FOR SHARE (PostgreSQL) or under the write lock (SQLite's
                       BEGIN IMMEDIATE) in the transaction of the write
acquire_lease          read the lease, then INSERT ON CONFLICT DO NOTHING / UPDATE WHERE version =
                       the one read; a lost race reads again (and finds the run busy)
claim_command          SQLite: one UPDATE ... WHERE command_id = (the oldest runnable) under the
                       write lock; PostgreSQL: SELECT ... FOR UPDATE SKIP LOCKED, then a
                       transaction-scoped advisory lock on the command's run, so two workers never
                       claim two commands of one run at once
=====================  ==========================================================================

A single-statement write runs in autocommit (one round trip on PostgreSQL; on SQLite the statement
takes the write lock before it reads); a write of several statements is one transaction (BEGIN
IMMEDIATE on SQLite).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, Row

from omium.errors import ConflictError, FencedOut, NotFoundError
from omium.sdk.serde import digest
from omium.sdk.sql.engine import SQLITE_BEGIN, create_control_engine, migrate
from omium.sdk.sql.statements import Statements, p
from omium.sdk.sql.tables import commands
from omium.sdk.stop import REQUESTS
from omium.sdk.store import (
    CheckpointRecord,
    CheckpointStore,
    CommandRecord,
    EventRecord,
    HandoffRecord,
    RunLease,
    RunRecord,
    StateVersion,
    StepRecord,
    _busy,
    _check_lease_request,
    _fenced_out,
    holder_gone,
    next_run_version,
    next_state_version,
    now_us,
)

# Blobs read per query (SQLite allows a few thousand parameters a statement; stay well below).
_BLOBS_PER_QUERY = 500
# A lost race for a lease or a command is read again; this many losses in a row is a bug.
_MAX_RACES = 1000
_STATEMENTS: dict[str, Statements] = {}


def _statements(dialect: str) -> Statements:
    found = _STATEMENTS.get(dialect)
    if found is None:
        found = _STATEMENTS[dialect] = Statements(dialect)
    return found


def _run(row: Row[Any]) -> RunRecord:
    values = dict(row._mapping)
    values["attributes"] = json.loads(values["attributes"] or "{}")
    return RunRecord(**values)


def _handoff(row: Row[Any]) -> HandoffRecord:
    values = dict(row._mapping)
    values["depends_on"] = json.loads(values["depends_on"] or "{}")
    return HandoffRecord(**values)


def _event(row: Row[Any]) -> EventRecord:
    values = dict(row._mapping)
    values["attributes"] = json.loads(values["attributes"] or "{}")
    return EventRecord(**values)


def _lease(row: Row[Any] | None) -> RunLease | None:
    return None if row is None else RunLease(**row._mapping)


class SqlStore(CheckpointStore):
    """A :class:`CheckpointStore` on a SQLite file or a PostgreSQL database.

    Args:
        url: ``sqlite:///path/to/control.db`` (or a plain path), or ``postgresql://...``.
        fsync: SQLite only: each commit survives power loss too, not only a crash of the process.

    The schema is migrated to the newest revision on open.
    """

    #: The Omium server this process's spans go to, when the store was found through one
    #: (:func:`omium.sdk.sql.connect.connect_control`); empty otherwise.
    server_url: str = ""

    def __init__(self, url: str | Path, *, fsync: bool = False) -> None:
        self._engine = create_control_engine(url, fsync=fsync)
        self._autocommit: Engine | None = None
        self._calls: Any = None  # SQLite: the recorder's one-transaction write (sql/fast.py)
        try:
            migrate(self._engine)
        except BaseException:
            self.close()
            raise
        self._postgres = self._engine.dialect.name == "postgresql"
        self._s = _statements(self._engine.dialect.name)
        # Row counts are how conditional writes answer: keep them for INSERTs too.
        counted = self._engine.execution_options(preserve_rowcount=True)
        if self._postgres:
            self._autocommit = create_control_engine(url, autocommit=True)
            self._tx = counted
            self._one = self._autocommit.execution_options(preserve_rowcount=True)
        else:
            self._tx = counted.execution_options(**{SQLITE_BEGIN: "BEGIN IMMEDIATE"})
            self._one = counted.execution_options(**{SQLITE_BEGIN: ""})
            from omium.sdk.sql.fast import SqliteCalls

            assert self._engine.url.database is not None
            self._calls = SqliteCalls(self._engine.url.database, self._s, "FULL" if fsync else "NORMAL")

    @property
    def engine(self) -> Engine:
        """The SQLAlchemy engine the store runs on."""
        return self._engine

    def close(self) -> None:
        """Close the store's connections."""
        if self._calls is not None:
            self._calls.close()
        self._engine.dispose()
        if self._autocommit is not None:
            self._autocommit.dispose()

    @contextmanager
    def _transaction(self) -> Iterator[Connection]:
        """One write transaction (BEGIN IMMEDIATE on SQLite), committed at the end."""
        with self._tx.begin() as connection:
            yield connection

    @contextmanager
    def _statement(self) -> Iterator[Connection]:
        """A connection in autocommit: each statement is its own transaction."""
        with self._one.connect() as connection:
            yield connection
            connection.commit()

    def _read(self, statement: Any, params: dict[str, Any] | None = None) -> list[Row[Any]]:
        with self._one.connect() as connection:
            return list(connection.execute(statement, params or {}))

    # --- fences
    def _hold_fence(self, connection: Connection, run_id: str, fence: int) -> None:
        """:class:`FencedOut` unless ``fence`` is 0 or the run's current one; the lease row stays
        as it is until the transaction ends (FOR SHARE; SQLite's write lock)."""
        if not fence:
            return
        current = _lease(connection.execute(self._s.hold_lease, {"run_id": run_id}).first())
        if current is None or current.fence != fence:
            raise _fenced_out(run_id, fence, current)

    def _refused(self, connection: Connection, run_id: str, fence: int) -> None:
        """After a fenced insert wrote nothing: :class:`FencedOut` if the fence is not current
        (else the insert was a harmless repeat)."""
        current = _lease(connection.execute(self._s.lease, {"run_id": run_id}).first())
        if current is None or current.fence != fence:
            raise _fenced_out(run_id, fence, current)

    # --- content-addressed values
    def put_blob(self, data: bytes) -> str:
        key = digest(data)
        with self._statement() as connection:
            connection.execute(self._s.put_blob, {"hash": key, "data": bytes(data), "size": len(data)})
        return key

    def get_blob(self, digest: str) -> bytes:
        return self.get_blobs([digest])[digest]

    def get_blobs(self, digests: Sequence[str]) -> dict[str, bytes]:
        wanted = list(dict.fromkeys(digests))
        found: dict[str, bytes] = {}
        with self._one.connect() as connection:
            for start in range(0, len(wanted), _BLOBS_PER_QUERY):
                chunk = wanted[start : start + _BLOBS_PER_QUERY]
                for key, data in connection.execute(self._s.get_blobs, {"hashes": chunk}):
                    found[key] = bytes(data)
        missing = [d for d in wanted if d not in found]
        if missing:
            raise NotFoundError(f"no stored value {missing[0]!r} ({len(missing)} of {len(wanted)} unknown)")
        return {d: found[d] for d in wanted}

    # --- runs
    def create_run(self, run: RunRecord) -> RunRecord:
        params = dict(run.__dict__, attributes=json.dumps(run.attributes))
        with self._statement() as connection:
            if not connection.execute(self._s.create_run, params).rowcount:
                raise ConflictError(f"run {run.run_id!r} exists")
        return run

    def get_run(self, run_id: str) -> RunRecord:
        rows = self._read(self._s.get_run, {"run_id": run_id})
        if not rows:
            raise NotFoundError(f"no run {run_id!r}")
        return _run(rows[0])

    def update_run(
        self,
        run_id: str,
        expected_version: int,
        *,
        status: str,
        error: str = "",
        attributes: dict[str, str] | None = None,
        fence: int = 0,
    ) -> RunRecord:
        with self._transaction() as connection:
            self._hold_fence(connection, run_id, fence)
            row = connection.execute(self._s.get_run, {"run_id": run_id}).first()
            if row is None:
                raise NotFoundError(f"no run {run_id!r}")
            updated = next_run_version(
                _run(row), expected_version, status=status, error=error, attributes=attributes
            )
            params = {
                "run_id": run_id,
                "expected": expected_version,
                "status": updated.status,
                "error": updated.error,
                "version": updated.version,
                "updated_at": updated.updated_at,
                "attributes": json.dumps(updated.attributes),
            }
            if connection.execute(self._s.update_run, p(params)).rowcount != 1:
                raise ConflictError(f"run {run_id!r} moved past version {expected_version} meanwhile")
        return updated

    def list_runs(self, status: str | None = None, limit: int = 100) -> list[RunRecord]:
        return [_run(row) for row in self._read(self._s.runs(status, limit))]

    # --- recorded calls
    def record_step(self, step: StepRecord) -> None:
        with self._statement() as connection:
            self._put_step(connection, step)

    def _put_step(self, connection: Connection, step: StepRecord) -> None:
        """Write ``step`` on ``connection``; :class:`FencedOut` if its fence is not current."""
        if not step.fence:
            connection.execute(self._s.put_step, step.__dict__)
        elif not connection.execute(self._s.put_fenced_step, step.__dict__).rowcount:
            self._refused(connection, step.run_id, step.fence)

    def record_call(self, step: StepRecord, values: Mapping[str, bytes]) -> tuple[str, str] | None:
        if self._calls is not None:
            return self._calls.record_call(step, values)
        with self._transaction() as connection:  # one commit for the values and the record
            if values:
                rows = [{"hash": k, "data": bytes(v), "size": len(v)} for k, v in values.items()]
                connection.execute(self._s.put_blob, rows)
            if not step.fence:
                connection.execute(self._s.put_step, step.__dict__)
                return None
            # The fenced insert answers with the stop request on the lease row it checked.
            row = connection.execute(self._s.put_fenced_step_stop, step.__dict__).first()
            if row is None:  # nothing written: a stale fence (FencedOut), or an older repeat
                self._refused(connection, step.run_id, step.fence)
                return None
        return (row.stop, row.stop_by) if row.stop else None

    def steps(self, run_id: str) -> list[StepRecord]:
        return [StepRecord(**row._mapping) for row in self._read(self._s.steps, {"run_id": run_id})]

    # --- checkpoints
    def add_checkpoint(self, checkpoint: CheckpointRecord) -> None:
        with self._statement() as connection:
            if not checkpoint.fence:
                connection.execute(self._s.put_checkpoint, checkpoint.__dict__)
            elif not connection.execute(self._s.put_fenced_checkpoint, checkpoint.__dict__).rowcount:
                self._refused(connection, checkpoint.run_id, checkpoint.fence)

    def checkpoints(self, run_id: str) -> list[CheckpointRecord]:
        rows = self._read(self._s.checkpoints, {"run_id": run_id})
        return [CheckpointRecord(**row._mapping) for row in rows]

    # --- hand-offs
    def append_handoff(self, message: HandoffRecord) -> bool:
        params = dict(message.__dict__, depends_on=json.dumps(message.depends_on))
        with self._statement() as connection:
            if not message.fence:
                return bool(connection.execute(self._s.append_handoff, params).rowcount)
            if connection.execute(self._s.append_fenced_handoff, params).rowcount:
                return True
            self._refused(connection, message.run_id, message.fence)
            return False  # the fence is current: the message was there already

    def handoffs(self, run_id: str, channel: str) -> list[HandoffRecord]:
        return [_handoff(row) for row in self._read(self._s.handoffs, {"run_id": run_id, "channel": channel})]

    def set_handoff_status(
        self,
        run_id: str,
        channel: str,
        seq: int,
        status: str,
        reason: str = "",
        receive_key: str = "",
        *,
        fence: int = 0,
    ) -> HandoffRecord:
        params = {
            "run_id": run_id,
            "channel": channel,
            "seq": seq,
            "status": status,
            "reason": reason,
            "receive_key": receive_key,
            "fence": fence,
        }
        with self._transaction() as connection:
            self._hold_fence(connection, run_id, fence)
            row = connection.execute(self._s.set_handoff_status, p(params)).first()
        if row is None:
            raise NotFoundError(f"no hand-off {seq} on {channel!r} in run {run_id!r}")
        return _handoff(row)

    # --- shared state
    def read_state(self, namespace: str, key: str) -> StateVersion | None:
        rows = self._read(self._s.read_state, {"namespace": namespace, "key": key})
        return StateVersion(**rows[0]._mapping) if rows else None

    def write_state(
        self,
        namespace: str,
        key: str,
        expected_version: int,
        value_hash: str,
        *,
        writer: str = "",
        run_id: str = "",
        fence: int = 0,
    ) -> StateVersion:
        if fence and not run_id:
            raise ValueError("a fenced write_state needs the run_id whose lease the fence is")
        where = {"namespace": namespace, "key": key}
        with self._transaction() as connection:
            self._hold_fence(connection, run_id, fence)
            row = connection.execute(self._s.read_state, where).first()
            current = StateVersion(**row._mapping) if row is not None else None
            written = next_state_version(
                current, namespace, key, expected_version, value_hash, writer, run_id
            )
            if not connection.execute(self._s.put_state, written.__dict__).rowcount:
                # Another writer inserted this version since we read (PostgreSQL; SQLite's write
                # lock makes this impossible there).
                raise ConflictError(
                    f"{namespace}/{key} is past version {expected_version}: written meanwhile"
                )
        return written

    # --- run leases
    def lease(self, run_id: str) -> RunLease | None:
        rows = self._read(self._s.lease, {"run_id": run_id})
        return _lease(rows[0]) if rows else None

    def acquire_lease(self, run_id: str, holder: str, lease_seconds: float) -> RunLease:
        _check_lease_request(holder, lease_seconds)
        with self._transaction() as connection:
            if connection.execute(self._s.run_exists, {"run_id": run_id}).first() is None:
                raise NotFoundError(f"no run {run_id!r}")
            for _ in range(_MAX_RACES):
                current = _lease(connection.execute(self._s.lease, {"run_id": run_id}).first())
                now = now_us()
                live = current is not None and current.lease_until > now and not holder_gone(current.holder)
                if current is not None and current.holder != holder and live:
                    raise _busy(current, now)
                lease = RunLease(
                    run_id,
                    holder,
                    fence=(current.fence if current else 0) + 1,
                    lease_until=now + int(lease_seconds * 1e6),
                    acquired_at=now,
                    version=(current.version if current else 0) + 1,
                )
                if current is None:
                    won = connection.execute(self._s.insert_lease, lease.__dict__).rowcount
                else:
                    won = connection.execute(
                        self._s.replace_lease, p(dict(lease.__dict__, expected=current.version))
                    ).rowcount
                if won:
                    return lease
                # Another process changed the lease since we read it (PostgreSQL, READ COMMITTED:
                # the next read sees its commit).
        raise ConflictError(f"run {run_id!r}: lost the race for its lease {_MAX_RACES} times")

    def renew_lease(self, run_id: str, holder: str, fence: int, lease_seconds: float) -> RunLease:
        _check_lease_request(holder, lease_seconds)
        params = {
            "run_id": run_id,
            "holder": holder,
            "fence": fence,
            "lease_until": now_us() + int(lease_seconds * 1e6),
        }
        with self._statement() as connection:
            row = connection.execute(self._s.renew_lease, p(params)).first()
            if row is not None:
                renewed = _lease(row)
                assert renewed is not None
                return renewed
            current = _lease(connection.execute(self._s.lease, {"run_id": run_id}).first())
        if current is None or current.fence != fence or current.holder != holder:
            raise _fenced_out(run_id, fence, current)
        raise FencedOut(f"run {run_id!r}: the lease of fence {fence} was released; acquire a new one")

    def release_lease(self, run_id: str, holder: str, fence: int) -> None:
        with self._statement() as connection:
            connection.execute(self._s.release_lease, p({"run_id": run_id, "holder": holder, "fence": fence}))

    def request_stop(self, run_id: str, fence: int, request: str, by: str) -> RunLease | None:
        if request not in REQUESTS:
            raise ValueError(f"a stop request is one of {', '.join(REQUESTS)}, not {request!r}")
        params = {"run_id": run_id, "fence": fence, "now": now_us(), "stop": request, "stop_by": by}
        with self._statement() as connection:
            return _lease(connection.execute(self._s.request_stop, p(params)).first())

    # --- audit events
    def record_event(self, event: EventRecord) -> None:
        params = dict(event.__dict__, attributes=json.dumps(event.attributes))
        with self._statement() as connection:
            connection.execute(self._s.record_event, params)

    def events(self, run_id: str = "", limit: int = 10_000) -> list[EventRecord]:
        return [_event(row) for row in self._read(self._s.events(run_id, limit))]

    # --- commands
    def enqueue_command(self, command: CommandRecord) -> CommandRecord:
        with self._statement() as connection:
            if connection.execute(self._s.enqueue_command, command.__dict__).rowcount:
                return command
            row = connection.execute(self._s.get_command, {"command_id": command.command_id}).first()
        assert row is not None  # commands are never deleted
        return CommandRecord(**row._mapping)

    def commands(self, run_id: str = "", status: str = "") -> list[CommandRecord]:
        return [CommandRecord(**row._mapping) for row in self._read(self._s.commands(run_id, status))]

    def claim_command(
        self, worker: str, lease_seconds: float, kinds: list[str] | None = None
    ) -> CommandRecord | None:
        if self._postgres:
            return self._claim_skip_locked(worker, lease_seconds, kinds)
        now = now_us()
        params = p({"worker": worker, "now": now, "lease_until": now + int(lease_seconds * 1e6)}) | {
            "now": now
        }
        oldest = self._s.runnable(kinds, only_id=True)
        claim = self._s.claim.where(commands.c.command_id == oldest.scalar_subquery())
        # One statement: it takes SQLite's write lock before it reads, so it decides alone.
        with self._statement() as connection:
            row = connection.execute(claim, params).first()
        return None if row is None else CommandRecord(**row._mapping)

    def _claim_skip_locked(
        self, worker: str, lease_seconds: float, kinds: list[str] | None
    ) -> CommandRecord | None:
        """PostgreSQL: skip commands other workers are claiming; decide for a run alone."""
        skipped: list[str] = []
        for _ in range(_MAX_RACES):
            now = now_us()
            params = p({"worker": worker, "now": now, "lease_until": now + int(lease_seconds * 1e6)}) | {
                "now": now
            }
            with self._transaction() as connection:
                candidate = self._s.runnable(kinds, skip_runs=bool(skipped)).with_for_update(skip_locked=True)
                found = connection.execute(candidate, dict(params, skip_runs=skipped)).first()
                if found is None:
                    return None
                run_id = found.run_id
                # Another transaction deciding for this run holds the run's lock: leave the run to
                # it. Holding the lock, re-read the run's oldest runnable command with what every
                # transaction that decided for the run before has committed.
                if not connection.execute(self._s.try_lock_run, {"run_id": run_id}).scalar():
                    skipped.append(run_id)
                    continue
                oldest = self._s.runnable(kinds, run_id=True).with_for_update()
                chosen = connection.execute(oldest, dict(params, run_id=run_id)).first()
                if chosen is None:  # claimed meanwhile by another worker, which committed
                    skipped.append(run_id)
                    continue
                claim = self._s.claim.where(
                    commands.c.command_id == chosen.command_id, commands.c.version == chosen.version
                )
                row = connection.execute(claim, params).first()
                if row is not None:
                    return CommandRecord(**row._mapping)
        raise ConflictError(f"worker {worker}: lost the race for a command {_MAX_RACES} times")

    def renew_command(self, command_id: str, worker: str, lease_seconds: float) -> CommandRecord:
        now = now_us()
        params = {
            "command_id": command_id,
            "worker": worker,
            "lease_until": now + int(lease_seconds * 1e6),
            "updated_at": now,
        }
        return self._change_held(self._s.renew_command, params)

    def finish_command(self, command_id: str, worker: str, status: str, result: str = "") -> CommandRecord:
        if status not in ("done", "failed"):
            raise ValueError(f"a command finishes 'done' or 'failed', not {status!r}")
        params = {
            "command_id": command_id,
            "worker": worker,
            "status": status,
            "result": result,
            "updated_at": now_us(),
        }
        return self._change_held(self._s.finish_command, params)

    def _change_held(self, statement: Any, params: dict[str, Any]) -> CommandRecord:
        """Run an UPDATE that applies only to a command its worker holds, or say why not."""
        with self._statement() as connection:
            row = connection.execute(statement, p(params)).first()
            if row is not None:
                return CommandRecord(**row._mapping)
            current = connection.execute(self._s.get_command, {"command_id": params["command_id"]}).first()
        if current is None:
            raise NotFoundError(f"no command {params['command_id']!r}")
        raise ConflictError(
            f"command {current.command_id} is {current.status} by {current.worker or 'nobody'}, "
            f"not held by {params['worker']}"
        )


def open_control_store(url: str | Path, *, fsync: bool = False) -> SqlStore:
    """The control store at ``url`` (``sqlite:///...``, a file path, or ``postgresql://...``),
    its schema migrated to the newest revision."""
    return SqlStore(url, fsync=fsync)


__all__ = ["SqlStore", "open_control_store"]
