"""The control plane: runs, run leases, recorded calls, checkpoints, blobs, hand-offs, shared state,
audit events and commands.

Revision ID: 0001
Revises:
Create Date: 2025-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def _text(name: str, *, key: bool = False) -> sa.Column[str]:
    if key:
        return sa.Column(name, sa.Text, primary_key=True)
    return sa.Column(name, sa.Text, nullable=False, server_default="")


def _int(name: str, *, key: bool = False, big: bool = False) -> sa.Column[int]:
    kind = sa.BigInteger if big else sa.Integer
    if key:
        return sa.Column(name, kind, primary_key=True, autoincrement=False)
    return sa.Column(name, kind, nullable=False, server_default="0")


def upgrade() -> None:
    op.create_table(
        "runs",
        _text("run_id", key=True),
        _text("workflow"),
        _text("status"),
        _int("version"),
        _text("parent_run_id"),
        _text("forked_from"),
        _text("error"),
        _int("started_at", big=True),
        _int("updated_at", big=True),
        _text("attributes"),
    )
    op.create_index("runs_by_start", "runs", ["started_at", "run_id"])
    op.create_index("runs_by_status", "runs", ["status", "started_at"])
    op.create_table(
        "run_leases",
        _text("run_id", key=True),
        _text("holder"),
        _int("fence", big=True),
        _int("lease_until", big=True),
        _int("acquired_at", big=True),
        _int("version"),
    )
    op.create_table(
        "steps",
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
    op.create_table(
        "checkpoints",
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
    op.create_table(
        "blobs",
        _text("hash", key=True),
        sa.Column("data", sa.LargeBinary, nullable=False),
        _int("size", big=True),
    )
    op.create_table(
        "handoffs",
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
        _text("depends_on"),
        _text("trace_id"),
        _text("span_id"),
        _int("fence", big=True),
    )
    op.create_table(
        "shared_state",
        _text("namespace", key=True),
        _text("key", key=True),
        _int("version", key=True, big=True),
        _text("value_hash"),
        _text("writer"),
        _text("run_id"),
        _int("written_at", big=True),
    )
    op.create_table(
        "events",
        _text("event_id", key=True),
        _text("run_id"),
        _text("kind"),
        _text("actor"),
        _text("reason"),
        _text("before"),
        _text("after"),
        _text("attributes"),
        _int("ts", big=True),
    )
    op.create_index("events_by_run", "events", ["run_id", "ts"])
    op.create_index("events_by_time", "events", ["ts", "event_id"])
    op.create_table(
        "commands",
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
    )
    op.create_index("commands_by_status", "commands", ["status", "created_at", "command_id"])
    op.create_index("commands_by_run", "commands", ["run_id", "status"])


def downgrade() -> None:
    for table in (
        "commands",
        "events",
        "shared_state",
        "handoffs",
        "blobs",
        "checkpoints",
        "steps",
        "run_leases",
        "runs",
    ):
        op.drop_table(table)
