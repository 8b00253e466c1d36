"""Tables, as SQLAlchemy Core metadata shared by every SQL backend.

Migrations under ``migrations/versions`` create and change these tables; this module is
the shape the queries are written against and must match the latest migration
(``tests/store/test_migrations.py`` checks that it does).
"""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

sessions = sa.Table(
    "sessions",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("tenant", sa.String(128), nullable=False),
    sa.Column("parent_id", sa.String(64), sa.ForeignKey("sessions.id", ondelete="CASCADE")),
    sa.Column("metadata", sa.Text, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Index("ix_sessions_tenant_id", "tenant", "id"),
    sa.Index("ix_sessions_parent", "parent_id"),
)

runs = sa.Table(
    "runs",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column(
        "session_id",
        sa.String(64),
        sa.ForeignKey("sessions.id", ondelete="CASCADE"),
        nullable=False,
    ),
    sa.Column("tenant", sa.String(128), nullable=False),
    sa.Column("agent", sa.String(256), nullable=False),
    sa.Column("input", sa.Text, nullable=False),
    sa.Column("trigger", sa.String(16), nullable=False),
    sa.Column("parent_run_id", sa.String(64)),
    sa.Column("schedule_id", sa.String(64)),
    sa.Column("idempotency_key", sa.String(256)),
    sa.Column("created_at", sa.Float, nullable=False),
    # live state: a projection of the run's events, written with them
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("last_seq", sa.Integer, nullable=False),
    sa.Column("last_event_at", sa.Float),
    sa.Column("started_at", sa.Float),
    sa.Column("completed_at", sa.Float),
    sa.Column("round", sa.Integer, nullable=False),
    sa.Column("last_tool", sa.String(256)),
    sa.Column("last_tool_phase", sa.String(16)),
    sa.Column("usage", sa.Text),
    sa.Column("children_usage", sa.Text),
    sa.Column("output", sa.Text),
    sa.Column("error", sa.Text),
    # ownership: which process executes the run, and until when it has vouched for it
    sa.Column("worker_id", sa.String(256)),
    sa.Column("lease_expires_at", sa.Float),
    # the fence: every claim and every outside end bumps it; writes must name the current one
    sa.Column("epoch", sa.Integer, nullable=False, server_default="0"),
    # a spawned run's grant from its parent (JSON) and its depth below its root
    sa.Column("grant", sa.Text),
    sa.Column("depth", sa.Integer, nullable=False, server_default="0"),
    # 0 for the first execution; each resume (after its process died or handed it back) adds one
    sa.Column("attempt", sa.Integer, nullable=False, server_default="0"),
    # a cancel asked for in any process, as JSON {"by", "reason"}; the owner acts on it
    sa.Column("cancel_request", sa.Text),
    # while it waits for a person: what it asks (JSON), and when that wait times out
    sa.Column("waiting", sa.Text),
    sa.Column("input_deadline", sa.Float),
    sa.Index("ix_runs_session_created", "session_id", "id"),
    sa.Index("ix_runs_tenant_id", "tenant", "id"),
    sa.Index("ix_runs_pending", "status", "id"),
    sa.Index("ix_runs_parent", "parent_run_id"),
    sa.Index(
        "ux_runs_idempotency",
        "tenant",
        "idempotency_key",
        unique=True,
        sqlite_where=sa.text("idempotency_key IS NOT NULL"),
        postgresql_where=sa.text("idempotency_key IS NOT NULL"),
    ),
    # at most one running (or waiting) run per session, enforced by the database itself
    sa.Index(
        "ux_runs_one_running",
        "session_id",
        unique=True,
        sqlite_where=sa.text("status IN ('running', 'waiting')"),
        postgresql_where=sa.text("status IN ('running', 'waiting')"),
    ),
    # the waits that time out, soonest first
    sa.Index(
        "ix_runs_input_deadline",
        "input_deadline",
        sqlite_where=sa.text("input_deadline IS NOT NULL"),
        postgresql_where=sa.text("input_deadline IS NOT NULL"),
    ),
)

events = sa.Table(
    "events",
    metadata,
    sa.Column(
        "pos",
        sa.BigInteger().with_variant(sa.Integer, "sqlite"),
        primary_key=True,
        autoincrement=True,
    ),
    sa.Column("run_id", sa.String(64), nullable=False),
    sa.Column("seq", sa.Integer, nullable=False),
    sa.Column("session_id", sa.String(64), nullable=False),
    sa.Column("type", sa.String(128), nullable=False),
    sa.Column("ts", sa.Float, nullable=False),
    sa.Column("data", sa.Text, nullable=False),
    sa.UniqueConstraint("run_id", "seq", name="ux_events_run_seq"),
    sa.Index("ix_events_session_pos", "session_id", "pos"),
    sqlite_autoincrement=True,
)

messages = sa.Table(
    "messages",
    metadata,
    sa.Column(
        "id",
        sa.BigInteger().with_variant(sa.Integer, "sqlite"),
        primary_key=True,
        autoincrement=True,
    ),
    sa.Column(
        "session_id",
        sa.String(64),
        sa.ForeignKey("sessions.id", ondelete="CASCADE"),
        nullable=False,
    ),
    sa.Column("run_id", sa.String(64)),
    sa.Column("role", sa.String(32), nullable=False),
    sa.Column("data", sa.Text, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Index("ix_messages_session_id", "session_id", "id"),
)

schedules = sa.Table(
    "schedules",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("tenant", sa.String(128), nullable=False),
    sa.Column("name", sa.String(256)),
    sa.Column("agent", sa.String(256), nullable=False),
    sa.Column("input", sa.Text, nullable=False),
    # when: exactly one of cron, every, at
    sa.Column("cron", sa.String(256)),
    sa.Column("timezone", sa.String(64), nullable=False),
    sa.Column("every", sa.Float),
    sa.Column("anchor", sa.Float),
    sa.Column("at", sa.Float),
    sa.Column("start_at", sa.Float),
    sa.Column("end_at", sa.Float),
    # how
    sa.Column("session_mode", sa.String(16), nullable=False),
    sa.Column("session_id", sa.String(64)),
    sa.Column("overlap", sa.String(16), nullable=False),
    sa.Column("misfire", sa.String(16), nullable=False),
    sa.Column("misfire_grace", sa.Float, nullable=False),
    sa.Column("max_catch_up", sa.Integer, nullable=False),
    sa.Column("max_lateness", sa.Float, nullable=False),
    # where it stands; version grows with every change and is what claims compare
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
    sa.Index("ix_schedules_tenant_id", "tenant", "id"),
    sa.Index("ix_schedules_next_fire", "next_fire_at"),
)

schedule_firings = sa.Table(
    "schedule_firings",
    metadata,
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
    sa.Index("ix_schedule_firings_schedule_id", "schedule_id", "id"),
    # each fire time fires at most once, whichever process gets to it
    sa.Index(
        "ux_schedule_firings_once",
        "schedule_id",
        "scheduled_at",
        unique=True,
        sqlite_where=sa.text("NOT manual"),
        postgresql_where=sa.text("NOT manual"),
    ),
    sa.Index(
        "ix_schedule_firings_unsettled",
        "schedule_id",
        sqlite_where=sa.text("NOT settled"),
        postgresql_where=sa.text("NOT settled"),
    ),
)

# a schedule's runs: for its overlap check and for listing runs by schedule
sa.Index("ix_runs_schedule", runs.c.schedule_id, runs.c.id)

# webhooks: endpoints, the outbox of deliveries with their attempts, and the cursor the
# dispatcher keeps over the event log (see culm.webhooks)

webhook_endpoints = sa.Table(
    "webhook_endpoints",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("tenant", sa.String(128), nullable=False),
    sa.Column("url", sa.Text, nullable=False),
    sa.Column("secret", sa.String(128), nullable=False),
    sa.Column("events", sa.Text, nullable=False),
    # set for a run's own webhook (its terminal event only); null for a tenant's endpoint
    sa.Column("run_id", sa.String(64)),
    # the endpoint receives events after this position of the log, not older ones
    sa.Column("after_pos", sa.BigInteger, nullable=False),
    sa.Column("enabled", sa.Boolean, nullable=False),
    sa.Column("disabled_reason", sa.Text),
    sa.Column("disabled_at", sa.Float),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("consecutive_failures", sa.Integer, nullable=False),
    sa.Column("failing_since", sa.Float),
    sa.Column("last_success_at", sa.Float),
    sa.Column("last_failure_at", sa.Float),
    sa.Index("ix_webhook_endpoints_tenant_id", "tenant", "id"),
    sa.Index("ix_webhook_endpoints_run", "run_id"),
)

webhook_deliveries = sa.Table(
    "webhook_deliveries",
    metadata,
    # the webhook-id: the same on every attempt and on a redelivery
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column(
        "endpoint_id",
        sa.String(64),
        sa.ForeignKey("webhook_endpoints.id", ondelete="CASCADE"),
        nullable=False,
    ),
    sa.Column("event_pos", sa.BigInteger, nullable=False),
    sa.Column("run_id", sa.String(64), nullable=False),
    sa.Column("event_type", sa.String(128), nullable=False),
    sa.Column("body", sa.Text, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("next_attempt_at", sa.Float),
    sa.Column("deadline", sa.Float, nullable=False),
    sa.Column("delivered_at", sa.Float),
    sa.Column("last_attempt_at", sa.Float),
    sa.Column("last_status_code", sa.Integer),
    sa.Column("last_error", sa.Text),
    # one delivery per event and endpoint, however often the log is scanned
    sa.UniqueConstraint("endpoint_id", "event_pos", name="ux_webhook_deliveries_event"),
    sa.Index("ix_webhook_deliveries_endpoint_id", "endpoint_id", "id"),
    sa.Index(
        "ix_webhook_deliveries_due",
        "next_attempt_at",
        sqlite_where=sa.text("status = 'pending'"),
        postgresql_where=sa.text("status = 'pending'"),
    ),
    sa.Index("ix_webhook_deliveries_created", "created_at"),
)

webhook_attempts = sa.Table(
    "webhook_attempts",
    metadata,
    sa.Column(
        "id",
        sa.BigInteger().with_variant(sa.Integer, "sqlite"),
        primary_key=True,
        autoincrement=True,
    ),
    sa.Column(
        "delivery_id",
        sa.String(64),
        sa.ForeignKey("webhook_deliveries.id", ondelete="CASCADE"),
        nullable=False,
    ),
    sa.Column("at", sa.Float, nullable=False),
    sa.Column("latency_ms", sa.Float, nullable=False),
    sa.Column("status_code", sa.Integer),
    sa.Column("error", sa.Text),
    sa.Column("response", sa.Text),
    sa.Index("ix_webhook_attempts_delivery", "delivery_id", "id"),
)

webhook_cursor = sa.Table(
    "webhook_cursor",
    metadata,
    sa.Column("name", sa.String(32), primary_key=True),
    # every event up to here has been turned into the deliveries it matched
    sa.Column("pos", sa.BigInteger, nullable=False),
)

run_messages = sa.Table(
    "run_messages",
    metadata,
    # messages sent to a running model agent (steering), until it takes them in
    sa.Column(
        "id",
        sa.BigInteger().with_variant(sa.Integer, "sqlite"),
        primary_key=True,
        autoincrement=True,
    ),
    sa.Column("run_id", sa.String, sa.ForeignKey("runs.id"), nullable=False),
    sa.Column("content", sa.Text, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    # set once the run took it in (its message.injected event is durable)
    sa.Column("taken", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Index("ix_run_messages_run", "run_id", "id"),
)
