"""Runs carry a durable cancel request, so a cancel asked in one process reaches the
process that executes the run (which also hears it on the bus), and survives both.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # JSON {"by", "reason"}; NULL while nobody asked
    op.add_column("runs", sa.Column("cancel_request", sa.Text))
    # what a claim looks for: pending runs, oldest first (claims skip rows others hold)
    op.create_index("ix_runs_pending", "runs", ["status", "id"])


def downgrade() -> None:
    op.drop_index("ix_runs_pending", "runs")
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("cancel_request")
