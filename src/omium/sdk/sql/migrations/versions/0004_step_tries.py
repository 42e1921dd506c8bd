"""Every try of a recorded call reaches the warehouse: a try that a later one overwrites in
``steps`` (a retry, a re-execution after a rollback or a resume) is queued in the outbox as it was,
in the transaction that overwrites it.

``steps`` holds one row per (run, position): the row a live run reads. The outbox queues keys and
the shipper reads rows back as they are now, so a try overwritten before the shipper looked never
reached the warehouse. This trigger queues the overwritten row itself (``kind = 'step_try'``, the
row as JSON in ``k1``), which the shipper inserts into ``omium_steps`` (keyed by generation, attempt
and start since the warehouse migration STEP_TRIES). It fires only on an UPDATE that starts another try: a
first try is an INSERT, so a run whose calls succeed first time pays nothing for it.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-07
"""

from __future__ import annotations

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

KIND = "step_try"
# The columns of steps at this revision, frozen as a migration must be.
COLUMNS = (
    "run_id",
    "position",
    "attempt",
    "kind",
    "name",
    "agent",
    "status",
    "input_hash",
    "output_hash",
    "error",
    "idempotency_key",
    "started_at",
    "ended_at",
    "call_id",
    "generation",
    "fence",
)
# Another try: another attempt, generation (a rollback) or execution (a resume starts the call anew).
_CHANGED = (
    "OLD.attempt <> NEW.attempt OR OLD.generation <> NEW.generation OR OLD.started_at <> NEW.started_at"
)
_SQLITE_NOW = "CAST((julianday('now') - 2440587.5) * 86400000000 AS INTEGER)"
_SQLITE_ROW = "json_object(" + ", ".join(f"'{c}', OLD.{c}" for c in COLUMNS) + ")"
# Built from the constants above only; no values.
SQLITE_TRIGGER = (
    f"CREATE TRIGGER outbox_step_tries AFTER UPDATE ON steps WHEN {_CHANGED} BEGIN "  # noqa: S608
    "INSERT INTO outbox (kind, k1, k2, k3, queued_at) "
    f"VALUES ('{KIND}', {_SQLITE_ROW}, '', '', {_SQLITE_NOW}); END"
)
POSTGRES_FUNCTION = f"""
CREATE OR REPLACE FUNCTION omium_outbox_step_try() RETURNS trigger AS $$
BEGIN
    INSERT INTO outbox (kind, k1, k2, k3, queued_at) VALUES (
        '{KIND}',
        jsonb_build_object({", ".join(f"'{c}', OLD.{c}" for c in COLUMNS)})::text,
        '',
        '',
        (extract(epoch FROM clock_timestamp()) * 1000000)::bigint
    );
    RETURN NULL;
END
$$ LANGUAGE plpgsql
"""  # noqa: S608
POSTGRES_TRIGGER = (
    "CREATE TRIGGER outbox_step_tries AFTER UPDATE ON steps FOR EACH ROW "
    f"WHEN ({_CHANGED.replace('<>', 'IS DISTINCT FROM')}) EXECUTE FUNCTION omium_outbox_step_try()"
)


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(POSTGRES_FUNCTION)
        op.execute(POSTGRES_TRIGGER)
    else:
        op.execute(SQLITE_TRIGGER)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS outbox_step_tries ON steps")
        op.execute("DROP FUNCTION IF EXISTS omium_outbox_step_try()")
    else:
        op.execute("DROP TRIGGER IF EXISTS outbox_step_tries")
