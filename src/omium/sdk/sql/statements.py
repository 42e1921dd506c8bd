"""The control store's SQL, built once per dialect from the tables (server-side parameters only).

Each compare-and-set is a statement whose condition the database checks as it writes:

- creations insert on a primary key with ``ON CONFLICT DO NOTHING`` (a row count of 0: it exists);
- a version CAS is ``UPDATE ... WHERE version = :expected`` (0 rows: someone moved it first);
- a shared-state write inserts version N+1, whose primary key exists at most once;
- a fenced insert is ``INSERT ... SELECT ... FROM run_leases WHERE fence = :fence``: the row is
  written only if the presented fence is the run's current one, in the same statement, and on
  PostgreSQL the lease row is locked ``FOR SHARE`` until the commit, so a take-over (an UPDATE of
  that row) waits for the write instead of slipping in between the check and the write.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import (
    BigInteger,
    BindParameter,
    ColumnElement,
    Insert,
    Select,
    Table,
    Update,
    and_,
    bindparam,
    exists,
    func,
    literal_column,
    or_,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite

from omium.sdk.sql.tables import (
    blobs,
    checkpoints,
    commands,
    events,
    handoffs,
    run_leases,
    runs,
    shared_state,
    steps,
)


def p(params: dict[str, Any]) -> dict[str, Any]:
    """``params`` named as an UPDATE statement's parameters are (``p_<name>``)."""
    return {f"p_{k}": v for k, v in params.items()}


def _params(table: Table) -> dict[str, BindParameter[Any]]:
    return {c.name: bindparam(c.name, type_=c.type) for c in table.c}


class Statements:
    """Every statement the store runs, for one dialect (``"sqlite"`` or ``"postgresql"``).

    The parameters of an UPDATE are named ``p_<name>`` (SQLAlchemy keeps a column's own name for
    the values it sets); :func:`p` renames a dict of parameters so.
    """

    def __init__(self, dialect: str) -> None:
        self.dialect = dialect
        insert: Callable[[Table], Any] = postgresql.insert if dialect == "postgresql" else sqlite.insert
        self._insert = insert

        # --- runs
        self.create_run = insert(runs).on_conflict_do_nothing(index_elements=[runs.c.run_id])
        self.get_run = select(runs).where(runs.c.run_id == bindparam("run_id"))
        self.update_run: Update = (
            update(runs)
            .where(runs.c.run_id == bindparam("p_run_id"), runs.c.version == bindparam("p_expected"))
            .values(
                status=bindparam("p_status"),
                error=bindparam("p_error"),
                version=bindparam("p_version"),
                updated_at=bindparam("p_updated_at"),
                attributes=bindparam("p_attributes"),
            )
        )

        # --- recorded calls: the latest record of a position wins (by time, then attempt)
        def newer(stmt: Any) -> ColumnElement[bool]:
            new = stmt.excluded
            return or_(
                new.ended_at > steps.c.ended_at,
                and_(new.ended_at == steps.c.ended_at, new.attempt >= steps.c.attempt),
            )

        self.put_step = self._upsert(insert(steps), steps, newer)
        self.put_fenced_step = self._upsert(self._fenced(steps), steps, newer)

        # The recorder's fenced insert, answering with the operator's stop request on the lease it
        # checked (its stop and stop_by), in the same statement: no second round trip per call.
        # (The inserted row's run_id, named as RETURNING sees it: a column object would put the
        # steps table in the subquery's FROM.)
        inserted_run: ColumnElement[Any] = literal_column("steps.run_id")

        def on_lease(column: Any) -> Any:
            return select(column).where(run_leases.c.run_id == inserted_run).scalar_subquery()

        self.put_fenced_step_stop = self.put_fenced_step.returning(
            on_lease(run_leases.c.stop).label("stop"), on_lease(run_leases.c.stop_by).label("stop_by")
        )
        self.steps = select(steps).where(steps.c.run_id == bindparam("run_id")).order_by(steps.c.position)

        # --- checkpoints: idempotent on their sequence number (the latest record wins)
        self.put_checkpoint = self._upsert(insert(checkpoints), checkpoints, None)
        self.put_fenced_checkpoint = self._upsert(self._fenced(checkpoints), checkpoints, None)
        self.checkpoints = (
            select(checkpoints).where(checkpoints.c.run_id == bindparam("run_id")).order_by(checkpoints.c.seq)
        )

        # --- blobs
        self.put_blob = insert(blobs).on_conflict_do_nothing(index_elements=[blobs.c.hash])
        self.get_blobs = select(blobs.c.hash, blobs.c.data).where(
            blobs.c.hash.in_(bindparam("hashes", expanding=True))
        )

        # --- hand-offs
        handoff_key = [handoffs.c.run_id, handoffs.c.channel, handoffs.c.seq]
        self.append_handoff = insert(handoffs).on_conflict_do_nothing(index_elements=handoff_key)
        self.append_fenced_handoff = self._fenced(handoffs).on_conflict_do_nothing(index_elements=handoff_key)
        self.handoffs = (
            select(handoffs)
            .where(handoffs.c.run_id == bindparam("run_id"), handoffs.c.channel == bindparam("channel"))
            .order_by(handoffs.c.seq)
        )
        self.set_handoff_status = (
            update(handoffs)
            .where(
                handoffs.c.run_id == bindparam("p_run_id"),
                handoffs.c.channel == bindparam("p_channel"),
                handoffs.c.seq == bindparam("p_seq"),
            )
            .values(
                status=bindparam("p_status"),
                reason=bindparam("p_reason"),
                receive_key=bindparam("p_receive_key"),
                fence=bindparam("p_fence"),
                version=handoffs.c.version + 1,
            )
            .returning(*handoffs.c)
        )

        # --- shared state: version N+1 is a primary key, inserted once
        self.read_state = (
            select(shared_state)
            .where(shared_state.c.namespace == bindparam("namespace"), shared_state.c.key == bindparam("key"))
            .order_by(shared_state.c.version.desc())
            .limit(1)
        )
        self.put_state = insert(shared_state).on_conflict_do_nothing(
            index_elements=[shared_state.c.namespace, shared_state.c.key, shared_state.c.version]
        )

        # --- run leases
        self.lease = select(run_leases).where(run_leases.c.run_id == bindparam("run_id"))
        # Held until the commit on PostgreSQL: a take-over waits for the fenced write it would race.
        self.hold_lease = self.lease.with_for_update(read=True)
        self.run_exists = select(runs.c.run_id).where(runs.c.run_id == bindparam("run_id"))
        self.insert_lease = insert(run_leases).on_conflict_do_nothing(index_elements=[run_leases.c.run_id])
        self.replace_lease = (
            update(run_leases)
            .where(
                run_leases.c.run_id == bindparam("p_run_id"), run_leases.c.version == bindparam("p_expected")
            )
            .values(
                holder=bindparam("p_holder"),
                fence=bindparam("p_fence"),
                lease_until=bindparam("p_lease_until"),
                acquired_at=bindparam("p_acquired_at"),
                version=bindparam("p_version"),
                # A new execution starts without the stop request its predecessor got.
                stop=bindparam("p_stop"),
                stop_by=bindparam("p_stop_by"),
            )
        )
        mine = (
            run_leases.c.run_id == bindparam("p_run_id"),
            run_leases.c.holder == bindparam("p_holder"),
            run_leases.c.fence == bindparam("p_fence"),
            run_leases.c.lease_until != 0,  # a released lease is ended: not renewed, not released again
        )
        self.renew_lease = (
            update(run_leases)
            .where(*mine)
            .values(lease_until=bindparam("p_lease_until"), version=run_leases.c.version + 1)
            .returning(*run_leases.c)
        )
        self.release_lease = (
            update(run_leases).where(*mine).values(lease_until=0, version=run_leases.c.version + 1)
        )
        # An operator's stop request, to the live lease of one fence (a compare-and-set on it).
        self.request_stop = (
            update(run_leases)
            .where(
                run_leases.c.run_id == bindparam("p_run_id"),
                run_leases.c.fence == bindparam("p_fence"),
                run_leases.c.lease_until > bindparam("p_now"),
            )
            .values(
                stop=bindparam("p_stop"), stop_by=bindparam("p_stop_by"), version=run_leases.c.version + 1
            )
            .returning(*run_leases.c)
        )

        # --- audit events
        self.record_event = insert(events).on_conflict_do_nothing(index_elements=[events.c.event_id])

        # --- commands
        self.enqueue_command = insert(commands).on_conflict_do_nothing(index_elements=[commands.c.command_id])
        self.get_command = select(commands).where(commands.c.command_id == bindparam("command_id"))
        held = (
            commands.c.command_id == bindparam("p_command_id"),
            commands.c.status == "claimed",
            commands.c.worker == bindparam("p_worker"),
        )
        self.renew_command = (
            update(commands)
            .where(*held)
            .values(
                lease_until=bindparam("p_lease_until"),
                updated_at=bindparam("p_updated_at"),
                version=commands.c.version + 1,
            )
            .returning(*commands.c)
        )
        self.finish_command = (
            update(commands)
            .where(*held)
            .values(
                status=bindparam("p_status"),
                result=bindparam("p_result"),
                updated_at=bindparam("p_updated_at"),
                version=commands.c.version + 1,
            )
            .returning(*commands.c)
        )
        self.claim = (
            update(commands)
            .values(
                status="claimed",
                worker=bindparam("p_worker"),
                lease_until=bindparam("p_lease_until"),
                updated_at=bindparam("p_now"),
                version=commands.c.version + 1,
                attempts=commands.c.attempts + 1,
            )
            .returning(*commands.c)
        )
        # PostgreSQL only: one transaction at a time decides for a run's commands.
        self.try_lock_run = select(
            func.pg_try_advisory_xact_lock(func.hashtextextended(bindparam("run_id"), 0))
        )

    def _fenced(self, table: Table) -> Any:
        """``INSERT INTO table SELECT :columns FROM run_leases WHERE run_id = :run_id AND fence =
        :fence [FOR SHARE]``: nothing is written unless ``fence`` is the run's current one."""
        params = _params(table)
        source = (
            select(*params.values())
            .where(run_leases.c.run_id == params["run_id"], run_leases.c.fence == params["fence"])
            .with_for_update(read=True)
        )
        return self._insert(table).from_select(list(params), source)

    @staticmethod
    def _upsert(stmt: Any, table: Table, where: Callable[[Any], ColumnElement[bool]] | None) -> Insert:
        keys = [c for c in table.c if c.primary_key]
        changes = {c.name: stmt.excluded[c.name] for c in table.c if not c.primary_key}
        condition = where(stmt) if where is not None else None
        upsert: Insert = stmt.on_conflict_do_update(index_elements=keys, set_=changes, where=condition)
        return upsert

    def runs(self, status: str | None, limit: int) -> Select[Any]:
        """Runs, newest first, optionally of one status."""
        query = select(runs)
        if status is not None:
            query = query.where(runs.c.status == status)
        return query.order_by(runs.c.started_at.desc(), runs.c.run_id.desc()).limit(limit)

    def events(self, run_id: str, limit: int) -> Select[Any]:
        """Events, oldest first, of one run or all."""
        query = select(events)
        if run_id:
            query = query.where(events.c.run_id == run_id)
        return query.order_by(events.c.ts, events.c.event_id).limit(limit)

    def commands(self, run_id: str, status: str) -> Select[Any]:
        """Commands, oldest first, optionally of one run and one status."""
        query = select(commands)
        if run_id:
            query = query.where(commands.c.run_id == run_id)
        if status:
            query = query.where(commands.c.status == status)
        return query.order_by(commands.c.created_at, commands.c.command_id)

    def runnable(
        self,
        kinds: list[str] | None,
        *,
        run_id: bool = False,
        skip_runs: bool = False,
        only_id: bool = False,
    ) -> Select[Any]:
        """The oldest runnable command: queued, or claimed by a lease that ran out; of a run no live
        claim holds; of one of ``kinds``; of ``:run_id`` and not of ``:skip_runs`` if asked. Its
        ``command_id``, ``run_id`` and ``version`` (``command_id`` alone if ``only_id``)."""
        c = commands.alias("c")
        h = commands.alias("h")
        now: BindParameter[int] = bindparam("now", type_=BigInteger)
        live = exists().where(h.c.run_id == c.c.run_id, h.c.status == "claimed", h.c.lease_until > now)
        conditions: list[ColumnElement[bool]] = [
            or_(c.c.status == "queued", and_(c.c.status == "claimed", c.c.lease_until <= now)),
            ~live,
        ]
        if kinds is not None:
            conditions.append(c.c.kind.in_(kinds))
        if run_id:
            conditions.append(c.c.run_id == bindparam("run_id"))
        if skip_runs:
            conditions.append(c.c.run_id.not_in(bindparam("skip_runs", expanding=True)))
        columns = [c.c.command_id] if only_id else [c.c.command_id, c.c.run_id, c.c.version]
        return select(*columns).where(*conditions).order_by(c.c.created_at, c.c.command_id).limit(1)


__all__ = ["Statements", "p"]
