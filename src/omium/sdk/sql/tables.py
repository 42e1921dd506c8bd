"""The control plane's tables, as SQLAlchemy Core objects the store builds its statements from.

The schema itself is made by the Alembic migrations in ``migrations/versions`` (which, as
migrations should, spell their tables out rather than import these); a test checks that the two
agree. Types are the portable ones (text, integers, bytes) so that one schema serves SQLite and
PostgreSQL; times are microseconds since the epoch, as the records carry them; maps are JSON text.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Index, Integer, LargeBinary, MetaData, Table, Text

metadata = MetaData()


def _text(name: str, *, key: bool = False) -> Column[str]:
    if key:
        return Column(name, Text, primary_key=True)
    return Column(name, Text, nullable=False, server_default="")


def _int(name: str, *, key: bool = False, big: bool = False) -> Column[int]:
    kind = BigInteger if big else Integer
    if key:
        return Column(name, kind, primary_key=True, autoincrement=False)
    return Column(name, kind, nullable=False, server_default="0")


runs = Table(
    "runs",
    metadata,
    _text("run_id", key=True),
    _text("workflow"),
    _text("status"),
    _int("version"),  # grows by one at each status change: the compare-and-set is on it
    _text("parent_run_id"),
    _text("forked_from"),
    _text("error"),
    _int("started_at", big=True),
    _int("updated_at", big=True),
    _text("attributes"),  # JSON object of strings
    Index("runs_by_start", "started_at", "run_id"),
    Index("runs_by_status", "status", "started_at"),
)

# One row per run ever leased: who executes it until when, under which fencing token.
run_leases = Table(
    "run_leases",
    metadata,
    _text("run_id", key=True),
    _text("holder"),
    _int("fence", big=True),
    _int("lease_until", big=True),  # 0: released
    _int("acquired_at", big=True),
    _int("version"),
    # An operator's request to the execution holding the lease: '', 'pause' or 'cancel' (migration
    # 0003); and who asked. Read with the fence by each recorded call's write.
    _text("stop"),
    _text("stop_by"),
)

# One row per recorded call, by its position in the run (the latest record of it).
steps = Table(
    "steps",
    metadata,
    _text("run_id", key=True),
    _int("position", key=True),
    _int("attempt"),
    _text("kind"),
    _text("name"),
    _text("agent"),
    _text("status"),
    _text("input_hash"),
    _text("output_hash"),
    _text("error"),
    _text("idempotency_key"),
    _int("started_at", big=True),
    _int("ended_at", big=True),
    _text("call_id"),
    _int("generation"),
    _int("fence", big=True),
)

checkpoints = Table(
    "checkpoints",
    metadata,
    _text("run_id", key=True),
    _int("seq", key=True),
    _text("checkpoint_id"),
    _text("name"),
    _text("agent"),
    _int("step_index"),
    _text("state_hash"),
    _text("parent_checkpoint_id"),
    _text("metadata"),
    _int("created_at", big=True),
    _text("call_id"),
    _int("generation"),
    _int("fence", big=True),
)

# Values by content address: a value that did not change is stored once.
blobs = Table(
    "blobs",
    metadata,
    _text("hash", key=True),
    Column("data", LargeBinary, nullable=False),
    _int("size", big=True),
)

# The hand-off log: one row per message, its status changes counted by ``version``.
handoffs = Table(
    "handoffs",
    metadata,
    _text("run_id", key=True),
    _text("channel", key=True),
    _int("seq", key=True, big=True),
    _int("version"),
    _text("sender"),
    _text("receiver"),
    _text("schema_name"),
    _text("payload_hash"),
    _text("status"),
    _text("reason"),
    _text("send_key"),
    _text("receive_key"),
    _int("created_at", big=True),
    _text("depends_on"),  # JSON object: "namespace/key" -> version
    _text("trace_id"),
    _text("span_id"),
    _int("fence", big=True),
)

# Every version of every shared-state key: version N+1 exists once (its primary key), and only
# when N was the latest, so a lost update is impossible and the history stays readable.
shared_state = Table(
    "shared_state",
    metadata,
    _text("namespace", key=True),
    _text("key", key=True),
    _int("version", key=True, big=True),
    _text("value_hash"),
    _text("writer"),
    _text("run_id"),
    _int("written_at", big=True),
)

events = Table(
    "events",
    metadata,
    _text("event_id", key=True),
    _text("run_id"),
    _text("kind"),
    _text("actor"),
    _text("reason"),
    _text("before"),
    _text("after"),
    _text("attributes"),  # JSON object of strings
    _int("ts", big=True),
    Index("events_by_run", "run_id", "ts"),
    Index("events_by_time", "ts", "event_id"),
)

commands = Table(
    "commands",
    metadata,
    _text("command_id", key=True),
    _text("run_id"),
    _text("kind"),
    _text("payload"),
    _text("status"),
    _int("version"),
    _text("worker"),
    _int("lease_until", big=True),
    _int("attempts"),
    _text("result"),
    _int("created_at", big=True),
    _int("updated_at", big=True),
    Index("commands_by_status", "status", "created_at", "command_id"),
    Index("commands_by_run", "run_id", "status"),
)

# Facts committed and not yet in the warehouse's analytical copy: one row per written row of the
# tables above, queued by triggers (migration 0002) in the writing transaction; the shipper
# (omium.warehouse.shipper) reads the rows back by key, ships them, then deletes these.
outbox = Table(
    "outbox",
    metadata,
    Column("seq", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    _text("kind"),  # the table written
    _text("k1"),  # its primary key's values, as text
    _text("k2"),
    _text("k3"),
    _int("queued_at", big=True),
)

# Named values of the deployment: its identity, and the leases of its singleton services.
meta = Table(
    "meta",
    metadata,
    _text("name", key=True),
    _text("value"),
    _int("version"),
)

__all__ = [
    "blobs",
    "checkpoints",
    "commands",
    "events",
    "handoffs",
    "meta",
    "metadata",
    "outbox",
    "run_leases",
    "runs",
    "shared_state",
    "steps",
]
