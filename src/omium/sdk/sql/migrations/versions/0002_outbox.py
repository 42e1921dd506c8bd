"""The outbox: every committed control fact is queued, in the transaction that writes it, for the
warehouse's analytical copy; and ``meta``, the deployment's identity and service leases.

Triggers fill the outbox, so no writer (this version's store, a later one, a hand-written fix)
can commit a fact without queueing it, and the write stays one statement (one round trip).

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-07
"""

from __future__ import annotations

import uuid

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

# Table -> the columns of its primary key (what the shipper reads the committed row back by).
# Frozen here, as a migration must be: a later table gets its trigger in a later migration.
KEYS = {
    "runs": ("run_id",),
    "steps": ("run_id", "position"),
    "checkpoints": ("run_id", "seq"),
    "handoffs": ("run_id", "channel", "seq"),
    "shared_state": ("namespace", "key", "version"),
    "events": ("event_id",),
    "commands": ("command_id",),
}
_SQLITE_NOW = "CAST((julianday('now') - 2440587.5) * 86400000000 AS INTEGER)"


def _sqlite_triggers(table: str, keys: tuple[str, ...]) -> list[str]:
    values = [f"CAST(NEW.{k} AS TEXT)" for k in keys] + ["''"] * (3 - len(keys))
    # Table and column names from KEYS above; no values.
    into = "INSERT INTO outbox (kind, k1, k2, k3, queued_at)"
    body = f"{into} VALUES ('{table}', {', '.join(values)}, {_SQLITE_NOW});"
    return [
        f"CREATE TRIGGER outbox_{table}_{event.lower()} AFTER {event} ON {table} BEGIN {body} END"
        for event in ("INSERT", "UPDATE")
    ]


POSTGRES_FUNCTION = """
CREATE OR REPLACE FUNCTION omium_outbox_queue() RETURNS trigger AS $$
DECLARE
    fact jsonb := to_jsonb(NEW);
BEGIN
    INSERT INTO outbox (kind, k1, k2, k3, queued_at) VALUES (
        TG_TABLE_NAME,
        fact ->> TG_ARGV[0],
        CASE WHEN TG_NARGS > 1 THEN fact ->> TG_ARGV[1] ELSE '' END,
        CASE WHEN TG_NARGS > 2 THEN fact ->> TG_ARGV[2] ELSE '' END,
        (extract(epoch FROM clock_timestamp()) * 1000000)::bigint
    );
    RETURN NULL;
END
$$ LANGUAGE plpgsql
"""


def upgrade() -> None:
    op.create_table(
        "outbox",
        sa.Column(
            "seq", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True
        ),
        sa.Column("kind", sa.Text, nullable=False, server_default=""),
        sa.Column("k1", sa.Text, nullable=False, server_default=""),
        sa.Column("k2", sa.Text, nullable=False, server_default=""),
        sa.Column("k3", sa.Text, nullable=False, server_default=""),
        sa.Column("queued_at", sa.BigInteger, nullable=False, server_default="0"),
    )
    op.create_table(
        "meta",
        sa.Column("name", sa.Text, primary_key=True),
        sa.Column("value", sa.Text, nullable=False, server_default=""),
        sa.Column("version", sa.Integer, nullable=False, server_default="0"),
    )
    op.execute(
        sa.text("INSERT INTO meta (name, value, version) VALUES ('deployment', :id, 1)").bindparams(
            id=uuid.uuid4().hex
        )
    )
    postgres = op.get_bind().dialect.name == "postgresql"
    if postgres:
        op.execute(POSTGRES_FUNCTION)
    for table, keys in KEYS.items():
        if postgres:
            arguments = ", ".join(f"'{k}'" for k in keys)
            op.execute(
                f"CREATE TRIGGER outbox_{table} AFTER INSERT OR UPDATE ON {table} "
                f"FOR EACH ROW EXECUTE FUNCTION omium_outbox_queue({arguments})"
            )
        else:
            for statement in _sqlite_triggers(table, keys):
                op.execute(statement)


def downgrade() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    for table in KEYS:
        if postgres:
            op.execute(f"DROP TRIGGER IF EXISTS outbox_{table} ON {table}")
        else:
            op.execute(f"DROP TRIGGER IF EXISTS outbox_{table}_insert")
            op.execute(f"DROP TRIGGER IF EXISTS outbox_{table}_update")
    if postgres:
        op.execute("DROP FUNCTION IF EXISTS omium_outbox_queue()")
    op.drop_table("meta")
    op.drop_table("outbox")
