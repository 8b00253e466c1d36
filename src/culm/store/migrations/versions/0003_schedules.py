"""Schedules and their ledger of firings.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "schedules",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("tenant", sa.String(128), nullable=False),
        sa.Column("name", sa.String(256)),
        sa.Column("agent", sa.String(256), nullable=False),
        sa.Column("input", sa.Text, nullable=False),
        sa.Column("cron", sa.String(256)),
        sa.Column("timezone", sa.String(64), nullable=False),
        sa.Column("every", sa.Float),
        sa.Column("anchor", sa.Float),
        sa.Column("at", sa.Float),
        sa.Column("start_at", sa.Float),
        sa.Column("end_at", sa.Float),
        sa.Column("session_mode", sa.String(16), nullable=False),
        sa.Column("session_id", sa.String(64)),
        sa.Column("overlap", sa.String(16), nullable=False),
        sa.Column("misfire", sa.String(16), nullable=False),
        sa.Column("misfire_grace", sa.Float, nullable=False),
        sa.Column("max_catch_up", sa.Integer, nullable=False),
        sa.Column("max_lateness", sa.Float, nullable=False),
        sa.Column("paused", sa.Boolean, nullable=False),
        sa.Column("next_fire_at", sa.Float),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
        sa.Column("last_fired_at", sa.Float),
        sa.Column("last_run_id", sa.String(64)),
        sa.Column("n_started", sa.Integer, nullable=False),
        sa.Column("n_skipped_overlap", sa.Integer, nullable=False),
        sa.Column("n_missed", sa.Integer, nullable=False),
        sa.Column("n_failed_to_start", sa.Integer, nullable=False),
        sa.Column("n_completed", sa.Integer, nullable=False),
        sa.Column("n_failed", sa.Integer, nullable=False),
        sa.Column("consecutive_failures", sa.Integer, nullable=False),
    )
    op.create_index("ix_schedules_tenant_id", "schedules", ["tenant", "id"])
    op.create_index("ix_schedules_next_fire", "schedules", ["next_fire_at"])
    op.create_table(
        "schedule_firings",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer, "sqlite"),
            primary_key=True,
            autoincrement=True,
        ),
        sa.Column(
            "schedule_id",
            sa.String(64),
            sa.ForeignKey("schedules.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("scheduled_at", sa.Float, nullable=False),
        sa.Column("fired_at", sa.Float, nullable=False),
        sa.Column("manual", sa.Boolean, nullable=False),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("count", sa.Integer, nullable=False),
        sa.Column("run_id", sa.String(64)),
        sa.Column("run_status", sa.String(16)),
        sa.Column("detail", sa.Text),
        sa.Column("settled", sa.Boolean, nullable=False),
        sa.Column("claimed_by", sa.String(256)),
    )
    op.create_index("ix_schedule_firings_schedule_id", "schedule_firings", ["schedule_id", "id"])
    op.create_index(
        "ux_schedule_firings_once",
        "schedule_firings",
        ["schedule_id", "scheduled_at"],
        unique=True,
        sqlite_where=sa.text("NOT manual"),
        postgresql_where=sa.text("NOT manual"),
    )
    op.create_index(
        "ix_schedule_firings_unsettled",
        "schedule_firings",
        ["schedule_id"],
        sqlite_where=sa.text("NOT settled"),
        postgresql_where=sa.text("NOT settled"),
    )

    op.create_index("ix_runs_schedule", "runs", ["schedule_id", "id"])


def downgrade() -> None:
    op.drop_index("ix_runs_schedule", "runs")
    op.drop_table("schedule_firings")
    op.drop_table("schedules")
