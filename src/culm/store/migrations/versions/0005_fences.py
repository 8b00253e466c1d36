"""Runs carry the epoch that fences their writers, and a spawned run's grant and depth.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("runs", sa.Column("epoch", sa.Integer, nullable=False, server_default="0"))
    op.add_column("runs", sa.Column("grant", sa.Text))
    op.add_column("runs", sa.Column("depth", sa.Integer, nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("depth")
        batch.drop_column("grant")
        batch.drop_column("epoch")
