"""People in the loop: a run may wait for a person (``waiting``, holding its session), and
messages may be sent to a running model agent.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

_ONE_ACTIVE = "status IN ('running', 'waiting')"


def upgrade() -> None:
    # what a waiting run asks (JSON), and when its wait times out (epoch seconds)
    op.add_column("runs", sa.Column("waiting", sa.Text))
    op.add_column("runs", sa.Column("input_deadline", sa.Float))
    op.create_index(
        "ix_runs_input_deadline",
        "runs",
        ["input_deadline"],
        sqlite_where=sa.text("input_deadline IS NOT NULL"),
        postgresql_where=sa.text("input_deadline IS NOT NULL"),
    )
    # a waiting run holds its session as a running one does
    op.drop_index("ux_runs_one_running", "runs")
    op.create_index(
        "ux_runs_one_running",
        "runs",
        ["session_id"],
        unique=True,
        sqlite_where=sa.text(_ONE_ACTIVE),
        postgresql_where=sa.text(_ONE_ACTIVE),
    )
    op.create_table(
        "run_messages",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer, "sqlite"),
            primary_key=True,
            autoincrement=True,
        ),
        sa.Column("run_id", sa.String, sa.ForeignKey("runs.id"), nullable=False),
        sa.Column("content", sa.Text, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("taken", sa.Boolean, nullable=False, server_default=sa.false()),
    )
    op.create_index("ix_run_messages_run", "run_messages", ["run_id", "id"])


def downgrade() -> None:
    op.drop_index("ix_run_messages_run", "run_messages")
    op.drop_table("run_messages")
    op.drop_index("ux_runs_one_running", "runs")
    op.create_index(
        "ux_runs_one_running",
        "runs",
        ["session_id"],
        unique=True,
        sqlite_where=sa.text("status = 'running'"),
        postgresql_where=sa.text("status = 'running'"),
    )
    op.drop_index("ix_runs_input_deadline", "runs")
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("input_deadline")
        batch.drop_column("waiting")
