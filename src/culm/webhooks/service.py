"""Webhooks as the API offers them: endpoints per tenant or per run, their delivery
ledger, redelivery; and, while open, the dispatcher that delivers (when settings say so)."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Self

from culm import events as ev
from culm.config import Settings
from culm.errors import Conflict, InvalidInput
from culm.ids import new_id
from culm.store import Store
from culm.store.sql import SqlStore
from culm.store.webhooks import Attempt, Delivery, DeliveryStatus, Endpoint, WebhookStore
from culm.webhooks.address import parse_url, resolve
from culm.webhooks.dispatcher import Dispatcher
from culm.webhooks.patterns import check_patterns
from culm.webhooks.signing import check_secret, new_secret

RUN_EVENTS = sorted(ev.TERMINAL)
"""What a run's own webhook receives: its terminal event."""


@dataclass(frozen=True, slots=True)
class Created:
    """A new endpoint and its secret: the one time the secret is shown."""

    endpoint: Endpoint
    secret: str

    def to_dict(self) -> dict[str, object]:
        return {**self.endpoint.to_dict(), "secret": self.secret}


class Webhooks:
    """Use as ``async with Webhooks(engine.webhook_store(), settings) as webhooks`` inside
    an open engine (or on a store of its own); the dispatcher runs while it is open if
    ``settings.webhook_dispatcher``."""

    def __init__(
        self,
        store: WebhookStore | Store,
        settings: Settings,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if isinstance(store, WebhookStore):
            self.store = store
        elif isinstance(store, SqlStore):
            self.store = WebhookStore(store)
        else:
            raise InvalidInput("webhooks need a SQL store")
        self.settings = settings
        self.clock = clock
        self.dispatcher: Dispatcher | None = None

    async def __aenter__(self) -> Self:
        if self.settings.webhook_dispatcher:
            self.dispatcher = await Dispatcher(
                self.store, self.settings, clock=self.clock
            ).__aenter__()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.dispatcher is not None:
            await self.dispatcher.aclose()
            self.dispatcher = None

    def _wake(self) -> None:
        if self.dispatcher is not None:
            self.dispatcher.wake()

    async def _check_url(self, url: str) -> str:
        s = self.settings
        await resolve(
            parse_url(url), allow_private=s.webhook_allow_private, timeout=s.webhook_timeout
        )
        return url

    # endpoints

    async def create(
        self, tenant: str, url: str, events: Sequence[str], secret: str | None = None
    ) -> Created:
        """A tenant endpoint for events committed from now on; ``UrlRefused`` (422) when the
        URL is malformed or reaches an address webhooks may not reach."""
        patterns = check_patterns(events)
        secret = check_secret(secret) if secret is not None else new_secret()
        await self._check_url(url)
        endpoint = Endpoint(
            id=new_id("wh"),
            tenant=tenant,
            url=url,
            secret=secret,
            events=patterns,
            created_at=self.clock(),
        )
        await self.store.create_endpoint(endpoint, self.settings.webhook_max_endpoints)
        return Created(endpoint, secret)

    async def create_for_run(
        self, tenant: str, run_id: str, url: str, secret: str | None = None
    ) -> Created:
        """The endpoint of one run (before the run exists, so nothing can end unseen): it
        receives that run's terminal event."""
        secret = check_secret(secret) if secret is not None else new_secret()
        await self._check_url(url)
        endpoint = Endpoint(
            id=new_id("wh"),
            tenant=tenant,
            url=url,
            secret=secret,
            events=RUN_EVENTS,
            created_at=self.clock(),
            run_id=run_id,
        )
        await self.store.create_endpoint(endpoint, self.settings.webhook_max_endpoints)
        return Created(endpoint, secret)

    async def forget_run(self, created: Created) -> None:
        """Drop a run's endpoint whose run was not started after all."""
        await self.store.delete_unstarted_run_endpoint(created.endpoint.id)

    async def get(self, endpoint_id: str, tenant: str) -> Endpoint:
        return await self.store.get_endpoint(endpoint_id, tenant)

    async def list_endpoints(
        self, tenant: str, *, limit: int = 50, before: str | None = None
    ) -> list[Endpoint]:
        return await self.store.list_endpoints(tenant, limit=limit, before=before)

    async def delete(self, endpoint_id: str, tenant: str) -> None:
        await self.store.delete_endpoint(endpoint_id, tenant)

    async def disable(self, endpoint_id: str, tenant: str, reason: str | None = None) -> Endpoint:
        """Stop delivering to the endpoint (idempotent); events meanwhile are not queued
        for it, and its pending deliveries wait."""
        return await self.store.set_enabled(
            endpoint_id, tenant, False, reason or "disabled by request", self.clock()
        )

    async def enable(self, endpoint_id: str, tenant: str) -> Endpoint:
        """Deliver again (idempotent), with a fresh failure streak; pending deliveries go on."""
        endpoint = await self.store.set_enabled(endpoint_id, tenant, True, None, self.clock())
        self._wake()
        return endpoint

    # the ledger

    async def deliveries(
        self,
        endpoint_id: str,
        tenant: str,
        *,
        status: DeliveryStatus | None = None,
        limit: int = 50,
        before: str | None = None,
    ) -> list[Delivery]:
        await self.store.get_endpoint(endpoint_id, tenant)
        return await self.store.list_deliveries(
            endpoint_id, status=status, limit=limit, before=before
        )

    async def delivery(
        self, endpoint_id: str, delivery_id: str, tenant: str
    ) -> tuple[Delivery, list[Attempt]]:
        await self.store.get_endpoint(endpoint_id, tenant)
        found = await self.store.get_delivery(endpoint_id, delivery_id)
        return found, await self.store.attempts(delivery_id)

    async def redeliver(self, endpoint_id: str, delivery_id: str, tenant: str) -> Delivery:
        """Deliver again now, with the same ``webhook-id`` and body, and a fresh retry time;
        ``Conflict`` while the endpoint is disabled."""
        endpoint = await self.store.get_endpoint(endpoint_id, tenant)
        if not endpoint.enabled:
            raise Conflict(f"webhook endpoint {endpoint_id} is disabled; enable it first")
        now = self.clock()
        found = await self.store.redeliver(
            endpoint_id, delivery_id, now, now + self.settings.webhook_retry_for
        )
        self._wake()
        return found
