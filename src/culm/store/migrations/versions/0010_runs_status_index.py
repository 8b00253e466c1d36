"""Drop ``ix_runs_status``: ``ix_runs_pending`` (status, id) serves every query it served,
and each write of a run's status updated both.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-01
"""

from __future__ import annotations

from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_index("ix_runs_status", "runs")


def downgrade() -> None:
    op.create_index("ix_runs_status", "runs", ["status"])
