"""Operator stop requests: a run's lease record carries a request to pause or cancel the run,
read by the execution holding the lease where it reads that record anyway (each fenced write,
each renewal).

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # ''; 'pause' or 'cancel', and who asked. A new acquisition of the lease clears both.
    op.add_column("run_leases", sa.Column("stop", sa.Text, nullable=False, server_default=""))
    op.add_column("run_leases", sa.Column("stop_by", sa.Text, nullable=False, server_default=""))


def downgrade() -> None:
    with op.batch_alter_table("run_leases") as batch:  # SQLite drops columns by copying the table
        batch.drop_column("stop_by")
        batch.drop_column("stop")
