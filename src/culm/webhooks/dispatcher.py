"""The dispatcher: turns committed events into deliveries (the outbox) and delivers them.

Two loops, each in its own task, apart from every run:

* **Filling the outbox.** The dispatcher keeps a cursor over the log's global position
  ``pos``. It reads the events after the cursor that some enabled endpoint wants (in windows
  of ``WINDOW`` positions), makes one delivery per event and endpoint, and in one transaction
  inserts them and moves the durable cursor (a compare-and-set, so two processes never fill
  the same stretch twice). An event committed before a crash is thus delivered after the
  restart, with the id its delivery row was given. A stretch with nothing to deliver moves
  the cursor only in memory; it is written every ``PERSIST_SECONDS`` or with the next
  deliveries, so a quiet log costs no writes.
* **Sending.** Rounds: each writes, in one transaction, the outcomes of the attempts that
  ended since the last round (with the next attempt's time, following ``delivery.next_step``)
  and claims the due deliveries that fit the limits (their next attempt pushed past the
  attempt's own deadline, so nobody else takes them meanwhile, and a process that dies
  mid-attempt leaves them to be tried again), then starts those attempts: at most
  ``webhook_concurrency`` at once, at most ``webhook_endpoint_concurrency`` per endpoint.
  The store's writer, which the runs' group commits share, thus sees one short
  transaction per round, however many deliveries the round carries.

Nothing here is on a run's path: a run only appends events to the log, as it always does.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import random
import time
from collections import Counter
from collections.abc import Callable, Coroutine
from types import TracebackType
from typing import Any, Self

import httpx

from culm import events as ev
from culm.config import Settings
from culm.ids import new_id
from culm.store.webhooks import Attempt, Delivery, Endpoint, LoggedEvent, Settled, WebhookStore
from culm.webhooks import delivery as attempts
from culm.webhooks.patterns import matches, split

log = logging.getLogger("culm.webhooks")

WINDOW = 5_000
"""Log positions read per outbox step; bounds one step's memory and transaction."""
PERSIST_SECONDS = 5.0
"""How stale the durable cursor may get while nothing matches."""
CLAIM_MARGIN = 5.0
"""Seconds past an attempt's own deadline before another process may try it again."""


class Dispatcher:
    """Fills the outbox and delivers it, for as long as it is open."""

    def __init__(
        self,
        store: WebhookStore,
        settings: Settings,
        *,
        clock: Callable[[], float] = time.time,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        self.store = store
        self.settings = settings
        self.clock = clock
        self.jitter = jitter
        self._fill_wake = asyncio.Event()
        self._send_wake = asyncio.Event()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._inflight: dict[str, asyncio.Task[None]] = {}
        self._settled: list[Settled] = []
        """Outcomes of ended attempts, written by the next round."""
        self._per_endpoint: Counter[str] = Counter()
        self._client: httpx.AsyncClient | None = None
        self._cursor = 0
        self._durable = 0
        self._persisted_at = 0.0

    async def __aenter__(self) -> Self:
        self._client = attempts.new_client(self.settings.webhook_timeout)
        self._cursor = self._durable = await self.store.cursor()
        self._persisted_at = time.monotonic()
        self._spawn(self._fill_loop())
        self._spawn(self._send_loop())
        period = min(3600.0, self.settings.webhook_ledger_seconds / 10)
        self._spawn(self._every(period, self._purge))
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Stop both loops, write the outcomes not yet written, and give back the claims of
        attempts cut short, so they are due again at once (after a crash, when their claims
        lapse)."""
        cut = list(self._inflight)
        tasks = [*self._tasks, *self._inflight.values()]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()
        settled, self._settled = self._settled, []
        written = {s.attempt.delivery_id for s in settled}
        s = self.settings
        try:
            if settled:
                now = self.clock()
                await self.store.step(
                    settled,
                    [],
                    now=now,
                    until=now,
                    disable_after=(
                        s.webhook_disable_after_failures,
                        s.webhook_disable_after_seconds,
                    ),
                )
            await self.store.release([i for i in cut if i not in written], self.clock())
        except Exception:
            log.exception("writing back %d webhook deliveries failed", len(cut))
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    def wake(self) -> None:
        """Look for new events and due deliveries now rather than at the next poll."""
        self._fill_wake.set()
        self._send_wake.set()

    # filling the outbox

    async def fill(self) -> bool:
        """One step over the log; True when there is more to read at once."""
        head = await self.store.head()
        if head <= self._cursor:
            await self._persist_if_stale()
            return False
        upto = min(head, self._cursor + WINDOW)
        deliveries: list[Delivery] = []
        # checked after the head: a run's endpoint is stored before its run starts, and a
        # tenant's receives only events after its creation, so none is missed
        if await self.store.any_enabled_endpoint():
            endpoints = await self.store.enabled_endpoints()
            events = [*(p for e in endpoints for p in e.events), *sorted(ev.TERMINAL)]
            exact, prefixes = split(events)
            logged = await self.store.read_log(self._cursor, upto, exact, prefixes)
            deliveries = await self._deliveries(logged, endpoints)
        if deliveries or time.monotonic() - self._persisted_at > PERSIST_SECONDS:
            if not await self.store.enqueue(self._durable, upto, deliveries):
                # another process filled from the same cursor first: continue from its
                self._cursor = self._durable = await self.store.cursor()
                return True
            self._durable = upto
            self._persisted_at = time.monotonic()
            if deliveries:
                self._send_wake.set()
        self._cursor = upto
        return upto < head

    async def _deliveries(
        self, logged: list[LoggedEvent], endpoints: list[Endpoint]
    ) -> list[Delivery]:
        by_tenant: dict[str, list[Endpoint]] = {}
        for endpoint in endpoints:
            by_tenant.setdefault(endpoint.tenant, []).append(endpoint)
        ended = sorted({item.event.run_id for item in logged if item.event.terminal})
        by_run: dict[str, list[Endpoint]] = {}
        for endpoint in await self.store.run_endpoints(ended):
            assert endpoint.run_id is not None
            by_run.setdefault(endpoint.run_id, []).append(endpoint)
        now = self.clock()
        deadline = now + self.settings.webhook_retry_for
        out = []
        for item in logged:
            event = item.event
            wanted = [
                e
                for e in by_tenant.get(item.tenant, ())
                if event.pos > e.after_pos and matches(e.events, event.type)
            ]
            if event.terminal:
                wanted += [e for e in by_run.get(event.run_id, ()) if e.tenant == item.tenant]
            if not wanted:
                continue
            body = event.to_json().decode()
            for endpoint in wanted:
                out.append(
                    Delivery(
                        id=new_id("msg"),
                        endpoint_id=endpoint.id,
                        event_pos=event.pos,
                        run_id=event.run_id,
                        event_type=event.type,
                        body=body,
                        created_at=now,
                        deadline=deadline,
                        next_attempt_at=now,
                    )
                )
        return out

    async def _persist_if_stale(self) -> None:
        if self._cursor == self._durable:
            return
        if time.monotonic() - self._persisted_at <= PERSIST_SECONDS:
            return
        if await self.store.enqueue(self._durable, self._cursor, []):
            self._durable = self._cursor
        else:
            self._cursor = self._durable = await self.store.cursor()
        self._persisted_at = time.monotonic()

    async def _fill_loop(self) -> None:
        while True:
            more = False
            try:
                more = await self.fill()
            except Exception:  # the log is still there: the next step reads it again
                log.exception("reading the event log for webhooks failed")
            if not more:
                await self._nap(self._fill_wake)

    # sending

    async def send_due(self) -> int:
        """One round: write the outcomes of the attempts that ended, claim the due
        deliveries that fit the limits, start their attempts. Returns how many outcomes and
        attempts it handled (0: nothing to do)."""
        s = self.settings
        settled, self._settled = self._settled, []
        now = self.clock()
        free = s.webhook_concurrency - len(self._inflight)
        chosen: list[str] = []
        if free > 0:
            room = Counter(self._per_endpoint)
            for delivery_id, endpoint_id in await self.store.due(now, free * 4):
                # one in flight here already is one redelivered meanwhile: it waits its turn
                if delivery_id in self._inflight:
                    continue
                if room[endpoint_id] >= s.webhook_endpoint_concurrency:
                    continue
                room[endpoint_id] += 1
                chosen.append(delivery_id)
                if len(chosen) == free:
                    break
        if not settled and not chosen:
            return 0
        try:
            taken, disabled = await self.store.step(
                settled,
                chosen,
                now=now,
                until=now + s.webhook_timeout + CLAIM_MARGIN,
                disable_after=(s.webhook_disable_after_failures, s.webhook_disable_after_seconds),
            )
        except Exception:  # those outcomes are lost: their claims lapse, they are sent again
            log.exception("writing %d webhook outcomes failed", len(settled))
            return 0
        for endpoint in disabled:
            log.warning("webhook endpoint %s %s", endpoint.id, endpoint.disabled_reason)
        for delivery, endpoint in taken:
            self._per_endpoint[endpoint.id] += 1
            task = asyncio.create_task(self._attempt(delivery, endpoint))
            self._inflight[delivery.id] = task
            task.add_done_callback(functools.partial(self._done, delivery.id, endpoint.id))
        return len(settled) + len(taken)

    def _done(self, delivery_id: str, endpoint_id: str, _: object) -> None:
        self._inflight.pop(delivery_id, None)
        self._per_endpoint[endpoint_id] -= 1
        if self._per_endpoint[endpoint_id] <= 0:
            del self._per_endpoint[endpoint_id]
        self._send_wake.set()

    async def _attempt(self, delivery: Delivery, endpoint: Endpoint) -> None:
        """Attempt once and keep the outcome for the next round to write."""
        s = self.settings
        assert self._client is not None
        outcome = await attempts.attempt(
            self._client,
            endpoint.url,
            endpoint.secret,
            delivery.id,
            delivery.body.encode(),
            allow_private=s.webhook_allow_private,
            timeout=s.webhook_timeout,
            clock=self.clock,
        )
        now = self.clock()
        status, next_at = attempts.next_step(
            outcome,
            attempts=delivery.attempts + 1,
            now=now,
            deadline=delivery.deadline,
            base=s.webhook_retry_base,
            cap=s.webhook_retry_max_delay,
            jitter=self.jitter(),
        )
        attempt = Attempt(
            delivery_id=delivery.id,
            at=now,
            latency_ms=outcome.latency_ms,
            status_code=outcome.status_code,
            error=outcome.error,
            response=outcome.response,
        )
        self._settled.append(Settled(attempt, endpoint.id, status, next_at))

    async def _send_loop(self) -> None:
        while True:
            started = 0
            try:
                started = await self.send_due()
            except Exception:
                log.exception("looking for due webhook deliveries failed")
            if not started:
                await self._nap(self._send_wake)

    # housekeeping

    async def _purge(self) -> None:
        before = self.clock() - self.settings.webhook_ledger_seconds
        gone = await self.store.purge(before)
        if gone:
            log.info("deleted %d finished webhook deliveries from the ledger", gone)

    async def _every(self, seconds: float, job: Callable[[], Coroutine[Any, Any, None]]) -> None:
        while True:
            await asyncio.sleep(seconds)
            try:
                await job()
            except Exception:
                log.exception("webhook housekeeping failed")

    async def _nap(self, wake: asyncio.Event) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(wake.wait(), self.settings.webhook_poll_seconds)
        wake.clear()

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
