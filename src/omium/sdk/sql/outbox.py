"""The control store's outbox: committed facts waiting for the warehouse's analytical copy.

Triggers (migration 0002) queue one row per written row of runs, steps, checkpoints, hand-offs,
shared state, events and commands, in the transaction that writes it. A shipper
(:mod:`omium.warehouse.shipper`) reads a batch, reads the facts back by key *as they are now*,
inserts them into ClickHouse (whose tables are keyed so that a fact shipped twice is one row),
and only then deletes the batch. A shipper killed anywhere in between ships the batch again:
nothing is lost, nothing counts twice. Rows are deleted by sequence number rather than read past
a cursor because PostgreSQL commits sequence numbers out of order: a cursor would skip a row
whose transaction committed after a later one.

One shipper runs per deployment: it holds the ``shipper`` lease in the ``meta`` table, taken by
compare-and-set on its version (and free at once when its holder died on this host).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Integer, delete, func, insert, select, tuple_, update
from sqlalchemy.sql.sqltypes import BigInteger

from omium.sdk.sql.engine import SQLITE_BEGIN
from omium.sdk.sql.store import SqlStore
from omium.sdk.sql.tables import meta, metadata, outbox
from omium.sdk.store import holder_gone, now_us

# What the triggers queue, with each table's primary key (the order the triggers write k1..k3).
KINDS: dict[str, tuple[str, ...]] = {
    "runs": ("run_id",),
    "steps": ("run_id", "position"),
    "checkpoints": ("run_id", "seq"),
    "handoffs": ("run_id", "channel", "seq"),
    "shared_state": ("namespace", "key", "version"),
    "events": ("event_id",),
    "commands": ("command_id",),
}
SHIPPER_LEASE = "shipper"
# Keys read back per query (well under SQLite's parameter limit).
_KEYS_PER_QUERY = 300


@dataclass(frozen=True)
class Queued:
    """One queued fact: which row of which table, and when its transaction queued it."""

    seq: int
    kind: str
    key: tuple[str, ...]
    queued_at: int


class Outbox:
    """The outbox of one control store."""

    def __init__(self, store: SqlStore) -> None:
        self._engine = store.engine  # engine.begin(): a write transaction (BEGIN IMMEDIATE on SQLite)
        self._reads = store.engine.execution_options(**{SQLITE_BEGIN: ""})  # no write lock to read

    def pending(self, limit: int = 5000) -> list[Queued]:
        """The oldest ``limit`` queued facts."""
        query = select(outbox).order_by(outbox.c.seq).limit(limit)
        with self._reads.connect() as connection:
            rows = connection.execute(query).all()
        return [
            Queued(r.seq, r.kind, (r.k1, r.k2, r.k3)[: len(KINDS.get(r.kind, ("",)))], r.queued_at)
            for r in rows
        ]

    def backlog(self) -> int:
        """How many facts wait to be shipped."""
        with self._reads.connect() as connection:
            return int(connection.execute(select(func.count()).select_from(outbox)).scalar() or 0)

    def facts(self, kind: str, keys: Sequence[tuple[str, ...]]) -> list[dict[str, Any]]:
        """The rows of table ``kind`` with these primary keys, as they are now."""
        table = metadata.tables[kind]
        columns = [table.c[name] for name in KINDS[kind]]
        numeric = [isinstance(c.type, (Integer, BigInteger)) for c in columns]
        wanted = list(
            dict.fromkeys(tuple(int(v) if n else v for v, n in zip(k, numeric, strict=True)) for k in keys)
        )
        found: list[dict[str, Any]] = []
        with self._reads.connect() as connection:
            for start in range(0, len(wanted), _KEYS_PER_QUERY):
                chunk = wanted[start : start + _KEYS_PER_QUERY]
                where = (
                    columns[0].in_([k[0] for k in chunk])
                    if len(columns) == 1
                    else tuple_(*columns).in_(chunk)
                )
                found.extend(dict(row._mapping) for row in connection.execute(select(table).where(where)))
        return found

    def done(self, seqs: Sequence[int]) -> None:
        """Forget shipped facts (after the warehouse acknowledged them)."""
        with self._engine.begin() as connection:
            for start in range(0, len(seqs), 500):
                connection.execute(delete(outbox).where(outbox.c.seq.in_(list(seqs[start : start + 500]))))

    def hold(self, holder: str, lease_seconds: float) -> bool:
        """Take or keep the deployment's shipper lease; False while another live shipper holds it."""
        now = now_us()
        mine = json.dumps({"holder": holder, "until": now + int(lease_seconds * 1e6)})
        with self._engine.begin() as connection:
            row = connection.execute(select(meta).where(meta.c.name == SHIPPER_LEASE)).first()
            if row is None:
                connection.execute(insert(meta).values(name=SHIPPER_LEASE, value=mine, version=1))
                return True
            current = json.loads(row.value or "{}")
            if current.get("holder") not in (holder, None) and current.get("until", 0) > now:
                if not holder_gone(current["holder"]):
                    return False
            won = connection.execute(
                update(meta)
                .where(meta.c.name == SHIPPER_LEASE, meta.c.version == row.version)
                .values(value=mine, version=row.version + 1)
            ).rowcount
        return bool(won)

    def let_go(self, holder: str) -> None:
        """Give the shipper lease up (if ``holder`` has it), so another shipper starts at once."""
        with self._engine.begin() as connection:
            row = connection.execute(select(meta).where(meta.c.name == SHIPPER_LEASE)).first()
            if row is not None and json.loads(row.value or "{}").get("holder") == holder:
                connection.execute(
                    update(meta)
                    .where(meta.c.name == SHIPPER_LEASE, meta.c.version == row.version)
                    .values(value="{}", version=row.version + 1)
                )

    def deployment(self) -> str:
        """The identity of this control database (made when it was created)."""
        with self._reads.connect() as connection:
            return str(
                connection.execute(select(meta.c.value).where(meta.c.name == "deployment")).scalar() or ""
            )


__all__ = ["KINDS", "SHIPPER_LEASE", "Outbox", "Queued"]
