"""Webhook queries for the SQL store: endpoints, the outbox of deliveries, their attempts,
and the dispatcher's cursor over the event log.

They run on the store's own connections (its one writer, its readers), so a webhook write
queues behind a group commit like any other write instead of fighting it for the database
lock. The outbox is filled by ``enqueue``: one transaction inserts the deliveries of a stretch
of the log and moves the cursor past it with a compare-and-set, so a crash either keeps both
or neither, and two processes never enqueue the same stretch twice.
"""

from __future__ import annotations

import enum
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from culm.errors import Conflict, NotFound
from culm.events import Event, iso
from culm.store.schema import events, runs, webhook_attempts, webhook_cursor, webhook_deliveries
from culm.store.schema import webhook_endpoints as endpoints
from culm.store.sql import SqlStore

_CURSOR = "events"


class DeliveryStatus(enum.StrEnum):
    """Where a delivery stands."""

    PENDING = "pending"
    """Not yet accepted by the endpoint; attempted when ``next_attempt_at`` comes."""
    DELIVERED = "delivered"
    """The endpoint answered 2xx."""
    FAILED = "failed"
    """Given up: a response that retrying cannot fix, or the retry time ran out."""


@dataclass(slots=True)
class Endpoint:
    """Where a tenant's matching events are posted (or, with ``run_id``, one run's end)."""

    id: str
    tenant: str
    url: str
    secret: str = field(repr=False)
    events: list[str]
    created_at: float
    run_id: str | None = None
    after_pos: int = 0
    enabled: bool = True
    disabled_reason: str | None = None
    disabled_at: float | None = None
    consecutive_failures: int = 0
    failing_since: float | None = None
    last_success_at: float | None = None
    last_failure_at: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """The endpoint as the API shows it: never with its secret."""
        return {
            "id": self.id,
            "url": self.url,
            "events": self.events,
            "run_id": self.run_id,
            "enabled": self.enabled,
            "disabled_reason": self.disabled_reason,
            "disabled_at": iso(self.disabled_at),
            "created_at": iso(self.created_at),
            "consecutive_failures": self.consecutive_failures,
            "failing_since": iso(self.failing_since),
            "last_success_at": iso(self.last_success_at),
            "last_failure_at": iso(self.last_failure_at),
        }


@dataclass(slots=True)
class Delivery:
    """One event for one endpoint; its id is the ``webhook-id`` of every attempt."""

    id: str
    endpoint_id: str
    event_pos: int
    run_id: str
    event_type: str
    body: str = field(repr=False)
    created_at: float
    deadline: float
    status: DeliveryStatus = DeliveryStatus.PENDING
    attempts: int = 0
    next_attempt_at: float | None = None
    delivered_at: float | None = None
    last_attempt_at: float | None = None
    last_status_code: int | None = None
    last_error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "endpoint_id": self.endpoint_id,
            "event_type": self.event_type,
            "run_id": self.run_id,
            "status": self.status.value,
            "attempts": self.attempts,
            "created_at": iso(self.created_at),
            "next_attempt_at": iso(self.next_attempt_at)
            if self.status is DeliveryStatus.PENDING
            else None,
            "deadline": iso(self.deadline),
            "delivered_at": iso(self.delivered_at),
            "last_attempt_at": iso(self.last_attempt_at),
            "last_status_code": self.last_status_code,
            "last_error": self.last_error,
        }


@dataclass(slots=True)
class Attempt:
    """One POST of a delivery: when, how long, and what came back (or what went wrong)."""

    delivery_id: str
    at: float
    latency_ms: float
    status_code: int | None = None
    error: str | None = None
    response: str | None = None
    id: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "at": iso(self.at),
            "latency_ms": round(self.latency_ms, 3),
            "status_code": self.status_code,
            "error": self.error,
            "response": self.response,
        }


@dataclass(slots=True, frozen=True)
class LoggedEvent:
    """An event read back from the log with the tenant of its run."""

    event: Event
    tenant: str


class _CursorMoved(Exception):
    """Another process enqueued this stretch of the log first."""


class WebhookStore:
    """Webhook queries on an open ``SqlStore``'s connections."""

    def __init__(self, store: SqlStore) -> None:
        self._store = store

    @asynccontextmanager
    async def _write(self) -> AsyncIterator[AsyncConnection]:
        # the store's own writer: one transaction at a time with its group commits
        async with self._store._write() as conn:
            yield conn

    @asynccontextmanager
    async def _read(self) -> AsyncIterator[AsyncConnection]:
        async with self._store._read() as conn:
            yield conn

    # endpoints

    async def create_endpoint(self, endpoint: Endpoint, max_per_tenant: int) -> None:
        """Store ``endpoint``; it receives events committed from now on. A tenant's own
        endpoints (not runs') are limited to ``max_per_tenant`` (``Conflict`` beyond)."""
        async with self._write() as conn:
            if endpoint.run_id is None:
                count = (
                    await conn.execute(
                        sa.select(sa.func.count())
                        .select_from(endpoints)
                        .where(endpoints.c.tenant == endpoint.tenant, endpoints.c.run_id.is_(None))
                    )
                ).scalar_one()
                if count >= max_per_tenant:
                    raise Conflict(
                        f"tenant {endpoint.tenant} already has {count} webhook endpoints, "
                        f"the most allowed; delete one first"
                    )
            endpoint.after_pos = await _head(conn)
            await conn.execute(endpoints.insert().values(**_endpoint_columns(endpoint)))

    async def get_endpoint(self, endpoint_id: str, tenant: str | None = None) -> Endpoint:
        async with self._read() as conn:
            return await _require_endpoint(conn, endpoint_id, tenant)

    async def list_endpoints(
        self, tenant: str, *, limit: int = 50, before: str | None = None
    ) -> list[Endpoint]:
        """The tenant's own endpoints (not those of single runs), newest first."""
        query = endpoints.select().where(endpoints.c.tenant == tenant, endpoints.c.run_id.is_(None))
        if before is not None:
            query = query.where(endpoints.c.id < before)
        query = query.order_by(endpoints.c.id.desc()).limit(limit)
        async with self._read() as conn:
            return [_endpoint(row) for row in (await conn.execute(query)).all()]

    async def delete_endpoint(self, endpoint_id: str, tenant: str | None = None) -> None:
        """Delete the endpoint with its deliveries and their attempts."""
        async with self._write() as conn:
            await _require_endpoint(conn, endpoint_id, tenant)
            await _delete_endpoints(conn, [endpoint_id])

    async def set_enabled(
        self, endpoint_id: str, tenant: str | None, enabled: bool, reason: str | None, now: float
    ) -> Endpoint:
        """Enable (forgetting the failure streak; events committed from now on are for it)
        or disable the endpoint; idempotent."""
        values: dict[str, Any] = {"enabled": enabled}
        if enabled:
            values |= {
                "disabled_reason": None,
                "disabled_at": None,
                "consecutive_failures": 0,
                "failing_since": None,
            }
        else:
            values |= {"disabled_reason": reason, "disabled_at": now}
        async with self._write() as conn:
            current = await _require_endpoint(conn, endpoint_id, tenant)
            if current.enabled != enabled:
                if enabled:  # what was committed while it was disabled is not for it
                    values["after_pos"] = await _head(conn)
                await conn.execute(
                    endpoints.update().where(endpoints.c.id == endpoint_id).values(**values)
                )
            return await _require_endpoint(conn, endpoint_id, None)

    async def delete_unstarted_run_endpoint(self, endpoint_id: str) -> None:
        """Remove a run's endpoint whose run could not be started."""
        async with self._write() as conn:
            await _delete_endpoints(conn, [endpoint_id])

    # the ledger

    async def list_deliveries(
        self,
        endpoint_id: str,
        *,
        status: DeliveryStatus | None = None,
        limit: int = 50,
        before: str | None = None,
    ) -> list[Delivery]:
        d = webhook_deliveries.c
        query = webhook_deliveries.select().where(d.endpoint_id == endpoint_id)
        if status is not None:
            query = query.where(d.status == status.value)
        if before is not None:
            query = query.where(d.id < before)
        query = query.order_by(d.id.desc()).limit(limit)
        async with self._read() as conn:
            return [_delivery(row) for row in (await conn.execute(query)).all()]

    async def get_delivery(self, endpoint_id: str, delivery_id: str) -> Delivery:
        async with self._read() as conn:
            return await _require_delivery(conn, endpoint_id, delivery_id)

    async def attempts(self, delivery_id: str, limit: int = 1000) -> list[Attempt]:
        a = webhook_attempts.c
        query = (
            webhook_attempts.select()
            .where(a.delivery_id == delivery_id)
            .order_by(a.id)
            .limit(limit)
        )
        async with self._read() as conn:
            return [_attempt(row) for row in (await conn.execute(query)).all()]

    async def redeliver(
        self, endpoint_id: str, delivery_id: str, now: float, deadline: float
    ) -> Delivery:
        """Make the delivery pending again, due now, with the same id and body."""
        async with self._write() as conn:
            await _require_delivery(conn, endpoint_id, delivery_id)
            await conn.execute(
                webhook_deliveries.update()
                .where(webhook_deliveries.c.id == delivery_id)
                .values(
                    status=DeliveryStatus.PENDING.value,
                    next_attempt_at=now,
                    deadline=deadline,
                    delivered_at=None,
                )
            )
            return await _require_delivery(conn, endpoint_id, delivery_id)

    # the outbox: what the dispatcher reads and writes

    async def head(self) -> int:
        """The position of the last event in the log (0 when it is empty)."""
        async with self._read() as conn:
            return await _head(conn)

    async def cursor(self) -> int:
        """Every event up to this position has been turned into its deliveries."""
        async with self._read() as conn:
            pos = (
                await conn.execute(
                    sa.select(webhook_cursor.c.pos).where(webhook_cursor.c.name == _CURSOR)
                )
            ).scalar_one_or_none()
        if pos is not None:
            return int(pos)
        async with self._write() as conn:  # a database whose row was removed by hand
            head = await _head(conn)
            await conn.execute(
                _insert_ignore(conn, webhook_cursor), [{"name": _CURSOR, "pos": head}]
            )
        return await self.cursor()

    async def enabled_endpoints(self) -> list[Endpoint]:
        """Every enabled tenant endpoint (runs' own endpoints are looked up by run)."""
        query = endpoints.select().where(endpoints.c.enabled, endpoints.c.run_id.is_(None))
        async with self._read() as conn:
            return [_endpoint(row) for row in (await conn.execute(query)).all()]

    async def run_endpoints(self, run_ids: Sequence[str]) -> list[Endpoint]:
        """The enabled endpoints of these runs."""
        if not run_ids:
            return []
        query = endpoints.select().where(endpoints.c.enabled, endpoints.c.run_id.in_(run_ids))
        async with self._read() as conn:
            return [_endpoint(row) for row in (await conn.execute(query)).all()]

    async def read_log(
        self, after: int, upto: int, exact: Sequence[str], prefixes: Sequence[str]
    ) -> list[LoggedEvent]:
        """Events with ``after < pos <= upto`` whose type is one of ``exact`` or starts with
        one of ``prefixes``, in log order, each with its run's tenant."""
        kinds: list[sa.ColumnElement[bool]] = []
        if exact:
            kinds.append(events.c.type.in_(exact))
        for prefix in prefixes:
            pattern = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            kinds.append(events.c.type.like(pattern + "%", escape="\\"))
        if not kinds:
            return []
        query = (
            sa.select(
                events.c.pos,
                events.c.run_id,
                events.c.seq,
                events.c.session_id,
                events.c.type,
                events.c.ts,
                events.c.data,
                runs.c.parent_run_id,
                runs.c.tenant,
            )
            .select_from(events.join(runs, runs.c.id == events.c.run_id))
            .where(events.c.pos > after, events.c.pos <= upto, sa.or_(*kinds))
            .order_by(events.c.pos)
        )
        async with self._read() as conn:
            rows = (await conn.execute(query)).all()
        return [
            LoggedEvent(
                Event(
                    r.seq,
                    r.run_id,
                    r.session_id,
                    r.type,
                    orjson.loads(r.data),
                    r.ts,
                    r.pos,
                    r.parent_run_id,
                ),
                r.tenant,
            )
            for r in rows
        ]

    async def enqueue(self, was: int, to: int, deliveries: Sequence[Delivery]) -> bool:
        """Insert ``deliveries`` and move the cursor from ``was`` to ``to`` in one
        transaction; False (and nothing written) when the cursor was no longer at ``was``."""
        c = webhook_cursor.c
        try:
            async with self._write() as conn:
                moved = await conn.execute(
                    webhook_cursor.update().where(c.name == _CURSOR, c.pos == was).values(pos=to)
                )
                if moved.rowcount != 1:
                    raise _CursorMoved
                if deliveries:
                    rows = [_delivery_columns(d) for d in deliveries]
                    await conn.execute(_insert_ignore(conn, webhook_deliveries), rows)
        except _CursorMoved:
            return False
        return True

    async def due(self, now: float, limit: int) -> list[tuple[Delivery, Endpoint]]:
        """Pending deliveries whose time has come, to enabled endpoints, oldest due first."""
        d = webhook_deliveries.c
        query = (
            sa.select(webhook_deliveries, *[c.label(f"e_{c.name}") for c in endpoints.c])
            .select_from(webhook_deliveries.join(endpoints, endpoints.c.id == d.endpoint_id))
            # a literal, so SQLite can use the partial index on pending deliveries
            .where(d.status == sa.literal_column("'pending'"), d.next_attempt_at <= now)
            .where(endpoints.c.enabled)
            .order_by(d.next_attempt_at)
            .limit(limit)
        )
        async with self._read() as conn:
            rows = (await conn.execute(query)).all()
        out = []
        for row in rows:
            mapping = row._mapping
            e = {c.name: mapping[f"e_{c.name}"] for c in endpoints.c}
            out.append((_delivery(row), _endpoint_from(e)))
        return out

    async def claim(self, due: Sequence[Delivery], until: float) -> list[str]:
        """Take the deliveries for an attempt: push their next attempt to ``until``, so no
        other process (nor this one after a crash) attempts them before then. Returns the ids
        taken; one another process took first is left out."""
        d = webhook_deliveries.c
        taken = []
        async with self._write() as conn:
            for delivery in due:
                result = await conn.execute(
                    webhook_deliveries.update()
                    .where(
                        d.id == delivery.id,
                        d.status == DeliveryStatus.PENDING.value,
                        d.next_attempt_at == delivery.next_attempt_at,
                    )
                    .values(next_attempt_at=until)
                )
                if result.rowcount == 1:
                    taken.append(delivery.id)
        return taken

    async def release(self, delivery_ids: Sequence[str], now: float) -> None:
        """Give back claims of attempts that were cut short, due again at ``now``."""
        if not delivery_ids:
            return
        d = webhook_deliveries.c
        async with self._write() as conn:
            await conn.execute(
                webhook_deliveries.update()
                .where(
                    d.id.in_(delivery_ids),
                    d.status == DeliveryStatus.PENDING.value,
                    d.next_attempt_at > now,
                )
                .values(next_attempt_at=now)
            )

    async def record(
        self,
        attempt: Attempt,
        endpoint_id: str,
        *,
        status: DeliveryStatus,
        next_attempt_at: float | None,
        disable_after: tuple[int, float],
    ) -> Endpoint | None:
        """Write an attempt and its outcome: the delivery's new status and the endpoint's
        failure streak, disabling the endpoint once the streak has lasted ``disable_after``
        (attempts, seconds). Returns the endpoint when this attempt disabled it."""
        d = webhook_deliveries.c
        e = endpoints.c
        now = attempt.at
        async with self._write() as conn:
            changed = await conn.execute(
                webhook_deliveries.update()
                .where(d.id == attempt.delivery_id)
                .values(
                    status=status.value,
                    attempts=d.attempts + 1,
                    next_attempt_at=next_attempt_at,
                    last_attempt_at=now,
                    last_status_code=attempt.status_code,
                    last_error=attempt.error,
                    delivered_at=now if status is DeliveryStatus.DELIVERED else None,
                )
            )
            if changed.rowcount != 1:  # deleted with its endpoint meanwhile
                return None
            await conn.execute(webhook_attempts.insert().values(**_attempt_columns(attempt)))
            if status is DeliveryStatus.DELIVERED:
                await conn.execute(
                    endpoints.update()
                    .where(e.id == endpoint_id)
                    .values(consecutive_failures=0, failing_since=None, last_success_at=now)
                )
                return None
            await conn.execute(
                endpoints.update()
                .where(e.id == endpoint_id)
                .values(
                    consecutive_failures=e.consecutive_failures + 1,
                    failing_since=sa.func.coalesce(e.failing_since, now),
                    last_failure_at=now,
                )
            )
            endpoint = await _require_endpoint(conn, endpoint_id, None)
            attempts, seconds = disable_after
            since = endpoint.failing_since if endpoint.failing_since is not None else now
            if not (
                endpoint.enabled
                and endpoint.consecutive_failures >= attempts
                and now - since >= seconds
            ):
                return None
            last = attempt.error or f"HTTP {attempt.status_code}"
            reason = (
                f"disabled after {endpoint.consecutive_failures} failed attempts in a row "
                f"since {iso(since)} (the last: {last}); enable it to deliver again"
            )
            await conn.execute(
                endpoints.update()
                .where(e.id == endpoint_id)
                .values(enabled=False, disabled_reason=reason, disabled_at=now)
            )
            endpoint.enabled = False
            endpoint.disabled_reason = reason
            endpoint.disabled_at = now
            return endpoint

    async def purge(self, before: float) -> int:
        """Delete finished deliveries created before ``before`` (with their attempts), and
        runs' endpoints created before then that have nothing pending. Returns how many
        deliveries went."""
        d = webhook_deliveries.c
        old = sa.select(d.id).where(d.created_at < before, d.status != DeliveryStatus.PENDING.value)
        pending = sa.select(d.endpoint_id).where(d.status == DeliveryStatus.PENDING.value)
        async with self._write() as conn:
            await conn.execute(
                webhook_attempts.delete().where(webhook_attempts.c.delivery_id.in_(old))
            )
            gone = (await conn.execute(webhook_deliveries.delete().where(d.id.in_(old)))).rowcount
            stale = (
                (
                    await conn.execute(
                        sa.select(endpoints.c.id).where(
                            endpoints.c.run_id.is_not(None),
                            endpoints.c.created_at < before,
                            endpoints.c.id.not_in(pending),
                        )
                    )
                )
                .scalars()
                .all()
            )
            if stale:
                await _delete_endpoints(conn, list(stale))
            return int(gone)


async def _head(conn: AsyncConnection) -> int:
    return int((await conn.execute(sa.select(sa.func.max(events.c.pos)))).scalar_one() or 0)


def _insert_ignore(conn: AsyncConnection, table: sa.Table) -> Any:
    """An insert that skips rows whose key is already there."""
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    return dialect.insert(table).on_conflict_do_nothing()


async def _delete_endpoints(conn: AsyncConnection, ids: Sequence[str]) -> None:
    d = webhook_deliveries.c
    theirs = sa.select(d.id).where(d.endpoint_id.in_(ids))
    await conn.execute(webhook_attempts.delete().where(webhook_attempts.c.delivery_id.in_(theirs)))
    await conn.execute(webhook_deliveries.delete().where(d.endpoint_id.in_(ids)))
    await conn.execute(endpoints.delete().where(endpoints.c.id.in_(ids)))


async def _require_endpoint(
    conn: AsyncConnection, endpoint_id: str, tenant: str | None
) -> Endpoint:
    query = endpoints.select().where(endpoints.c.id == endpoint_id)
    if tenant is not None:
        query = query.where(endpoints.c.tenant == tenant)
    row = (await conn.execute(query)).first()
    if row is None:
        raise NotFound(f"no webhook endpoint {endpoint_id}")
    return _endpoint(row)


async def _require_delivery(conn: AsyncConnection, endpoint_id: str, delivery_id: str) -> Delivery:
    query = webhook_deliveries.select().where(
        webhook_deliveries.c.id == delivery_id, webhook_deliveries.c.endpoint_id == endpoint_id
    )
    row = (await conn.execute(query)).first()
    if row is None:
        raise NotFound(f"no delivery {delivery_id} to webhook endpoint {endpoint_id}")
    return _delivery(row)


def _endpoint_columns(e: Endpoint) -> dict[str, Any]:
    return {
        "id": e.id,
        "tenant": e.tenant,
        "url": e.url,
        "secret": e.secret,
        "events": orjson.dumps(e.events).decode(),
        "run_id": e.run_id,
        "after_pos": e.after_pos,
        "enabled": e.enabled,
        "disabled_reason": e.disabled_reason,
        "disabled_at": e.disabled_at,
        "created_at": e.created_at,
        "consecutive_failures": e.consecutive_failures,
        "failing_since": e.failing_since,
        "last_success_at": e.last_success_at,
        "last_failure_at": e.last_failure_at,
    }


def _endpoint(row: sa.Row[Any]) -> Endpoint:
    return _endpoint_from(row._mapping)


def _endpoint_from(m: Mapping[Any, Any]) -> Endpoint:
    return Endpoint(
        id=m["id"],
        tenant=m["tenant"],
        url=m["url"],
        secret=m["secret"],
        events=orjson.loads(m["events"]),
        created_at=m["created_at"],
        run_id=m["run_id"],
        after_pos=m["after_pos"],
        enabled=bool(m["enabled"]),
        disabled_reason=m["disabled_reason"],
        disabled_at=m["disabled_at"],
        consecutive_failures=m["consecutive_failures"],
        failing_since=m["failing_since"],
        last_success_at=m["last_success_at"],
        last_failure_at=m["last_failure_at"],
    )


def _delivery_columns(d: Delivery) -> dict[str, Any]:
    return {
        "id": d.id,
        "endpoint_id": d.endpoint_id,
        "event_pos": d.event_pos,
        "run_id": d.run_id,
        "event_type": d.event_type,
        "body": d.body,
        "status": d.status.value,
        "attempts": d.attempts,
        "created_at": d.created_at,
        "next_attempt_at": d.next_attempt_at,
        "deadline": d.deadline,
        "delivered_at": d.delivered_at,
        "last_attempt_at": d.last_attempt_at,
        "last_status_code": d.last_status_code,
        "last_error": d.last_error,
    }


def _delivery(row: sa.Row[Any]) -> Delivery:
    return Delivery(
        id=row.id,
        endpoint_id=row.endpoint_id,
        event_pos=row.event_pos,
        run_id=row.run_id,
        event_type=row.event_type,
        body=row.body,
        created_at=row.created_at,
        deadline=row.deadline,
        status=DeliveryStatus(row.status),
        attempts=row.attempts,
        next_attempt_at=row.next_attempt_at,
        delivered_at=row.delivered_at,
        last_attempt_at=row.last_attempt_at,
        last_status_code=row.last_status_code,
        last_error=row.last_error,
    )


def _attempt_columns(a: Attempt) -> dict[str, Any]:
    return {
        "delivery_id": a.delivery_id,
        "at": a.at,
        "latency_ms": a.latency_ms,
        "status_code": a.status_code,
        "error": a.error,
        "response": a.response,
    }


def _attempt(row: sa.Row[Any]) -> Attempt:
    return Attempt(
        delivery_id=row.delivery_id,
        at=row.at,
        latency_ms=row.latency_ms,
        status_code=row.status_code,
        error=row.error,
        response=row.response,
        id=row.id,
    )
