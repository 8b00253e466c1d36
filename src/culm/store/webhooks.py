"""Webhook queries for the SQL store: endpoints and their delivery ledger (this module),
and the outbox the dispatcher fills and sends from (``outbox.py``).

They run on the store's own connections (its one writer, its readers), so a webhook write
queues behind a group commit like any other write instead of fighting it for the database
lock.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from culm.errors import Conflict, NotFound
from culm.store.outbox import OutboxQueries, delete_endpoints, head
from culm.store.schema import webhook_attempts, webhook_deliveries
from culm.store.schema import webhook_endpoints as endpoints
from culm.store.sql import SqlStore
from culm.store.webhook_records import (
    Attempt,
    Delivery,
    DeliveryStatus,
    Endpoint,
    LoggedEvent,
    Settled,
    attempt_from_row,
    delivery_from_row,
    endpoint_columns,
    endpoint_from_row,
)

__all__ = [
    "Attempt",
    "Delivery",
    "DeliveryStatus",
    "Endpoint",
    "LoggedEvent",
    "Settled",
    "WebhookStore",
]


class WebhookStore(OutboxQueries):
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
            endpoint.after_pos = await head(conn)
            await conn.execute(endpoints.insert().values(**endpoint_columns(endpoint)))

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
            return [endpoint_from_row(row) for row in (await conn.execute(query)).all()]

    async def delete_endpoint(self, endpoint_id: str, tenant: str | None = None) -> None:
        """Delete the endpoint with its deliveries and their attempts."""
        async with self._write() as conn:
            await _require_endpoint(conn, endpoint_id, tenant)
            await delete_endpoints(conn, [endpoint_id])

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
                    values["after_pos"] = await head(conn)
                await conn.execute(
                    endpoints.update().where(endpoints.c.id == endpoint_id).values(**values)
                )
            return await _require_endpoint(conn, endpoint_id, None)

    async def delete_unstarted_run_endpoint(self, endpoint_id: str) -> None:
        """Remove a run's endpoint whose run could not be started."""
        async with self._write() as conn:
            await delete_endpoints(conn, [endpoint_id])

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
            return [delivery_from_row(row) for row in (await conn.execute(query)).all()]

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
            return [attempt_from_row(row) for row in (await conn.execute(query)).all()]

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


async def _require_endpoint(
    conn: AsyncConnection, endpoint_id: str, tenant: str | None
) -> Endpoint:
    query = endpoints.select().where(endpoints.c.id == endpoint_id)
    if tenant is not None:
        query = query.where(endpoints.c.tenant == tenant)
    row = (await conn.execute(query)).first()
    if row is None:
        raise NotFound(f"no webhook endpoint {endpoint_id}")
    return endpoint_from_row(row)


async def _require_delivery(conn: AsyncConnection, endpoint_id: str, delivery_id: str) -> Delivery:
    query = webhook_deliveries.select().where(
        webhook_deliveries.c.id == delivery_id, webhook_deliveries.c.endpoint_id == endpoint_id
    )
    row = (await conn.execute(query)).first()
    if row is None:
        raise NotFound(f"no delivery {delivery_id} to webhook endpoint {endpoint_id}")
    return delivery_from_row(row)
