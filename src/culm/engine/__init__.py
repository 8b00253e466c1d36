"""The one door: every path into a run (HTTP, spawn, schedule, Python) goes through
``Engine.start_run``; cancel, wait and subscribe are here too."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Coroutine, Sequence
from contextlib import AsyncExitStack
from types import TracebackType
from typing import Any, Self

from culm import events as ev
from culm.agent.app import App
from culm.bus import Bus, Notice, open_bus, run_key
from culm.config import Settings
from culm.engine.inputs import InputCalls
from culm.engine.schedules import ScheduleCalls
from culm.engine.sessions import SessionCalls
from culm.engine.spawn import SpawnCalls
from culm.engine.start import StartCalls, Started
from culm.errors import CulmError, InvalidInput, RunFinished, Unavailable
from culm.events import Event
from culm.models import Run, RunStatus
from culm.runtime.executor import ACTIVE, PENDING, WAITING, Executor
from culm.runtime.follow import EventReader
from culm.runtime.log import EventLog
from culm.runtime.owners import new_worker_id, owner_is_dead, release_worker_id
from culm.runtime.recent import RecentEvents, RecordingBus
from culm.runtime.runner import cancelled_data
from culm.runtime.tail import LogTail
from culm.schedule import ScheduleBook, Scheduler
from culm.store import RunFilter, Store, open_store
from culm.store.base import Fence
from culm.store.sql import SqlStore
from culm.store.webhooks import WebhookStore

__all__ = ["Engine", "Started"]

_HELD_BY_NOBODY = PENDING | WAITING

PROBE_SECONDS = 1.0
"""How often the database is probed while it cannot be written."""

log = logging.getLogger("culm.engine")


class Engine(InputCalls, StartCalls, SessionCalls, SpawnCalls, ScheduleCalls):
    """Runs agents in the background, durably. Use as ``async with Engine(app) as engine``.

    (The mixins declare what they use of each other as stubs; one that defines a call
    comes before those that only declare it.)"""

    def __init__(
        self,
        app: App,
        settings: Settings | None = None,
        *,
        store: Store | None = None,
        bus: Bus | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.app = app
        self.settings = settings or Settings()
        self.store = store or open_store(self.settings)
        self.recent: RecentEvents | None = None
        """Recent committed events, shared by followers catching up (see runtime/recent.py)."""
        self.bus = bus or open_bus(self.settings.resolved_bus_url, self.settings.bus_interval)
        if self.settings.recent_events_bytes > 0:
            self.recent = RecentEvents(self.store, self.settings.recent_events_bytes)
            self.bus = RecordingBus(self.bus, self.recent)
        self._reads: EventReader = self.recent if self.recent is not None else self.store
        # every committed event is announced by the store, in commit order; what other
        # processes sharing the database commit, the log's tail announces
        self.tail = LogTail(self.store, self.bus.publish)
        self.store.on_commit = self._committed
        self.bus.on_notice(self._on_notice)
        self.clock = clock
        self.worker_id = new_worker_id()
        self.log = EventLog(
            self.store,
            self.settings.max_batch,
            max_bytes=self.settings.max_queued_bytes,
            limits=self.settings.payload_limits,
        )
        self.executor = Executor(self.settings, self.store, self.log, self.worker_id, door=self)
        self._stack = AsyncExitStack()
        self._unwritable: str | None = None
        """The problem the probe of the database last logged (``_probe_writes``)."""
        self.scheduler = Scheduler(
            self,
            self.store,
            clock,
            worker_id=self.worker_id,
            poll=self.settings.schedule_poll_seconds,
        )
        self.schedules = ScheduleBook(
            app, self.store, self, self.scheduler, clock, self.settings.payload_limits
        )

    # lifecycle

    async def __aenter__(self) -> Self:
        await self.store.open()
        self._stack.push_async_callback(self.store.close)
        await self.bus.open()
        self._stack.push_async_callback(self.bus.close)
        self._stack.callback(release_worker_id, self.worker_id)
        every = self.executor.every
        await self.tail.open()
        self._background(self.tail.run(self.settings.idle_poll_seconds))
        self._background(self.log.run())
        self._background(every(PROBE_SECONDS, self._probe_writes))
        await self.executor.recover()
        self._background(every(self.settings.lease_seconds / 3, self.executor.renew))
        if self.executor.executes:  # cancels asked elsewhere whose notice was lost
            self._background(every(self.settings.idle_poll_seconds, self.cancel_requested))
        if self.executor.claims:
            self._background(self.executor.claim_loop())
        self._background(every(self.settings.lease_seconds / 2, self.executor.recover))
        self._background(every(self.settings.idle_poll_seconds, self.executor.start_waiting))
        if self.executor.executes:  # waits for a person that timed out
            self._background(every(self.settings.input_poll_seconds, self.expire_waits))
        if self.settings.scheduler:
            self._background(self.scheduler.run())
        if self.settings.retention_seconds is not None:
            period = min(3600.0, self.settings.retention_seconds / 10)
            self._background(every(period, self.purge))
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Interrupt the runs still going (each gets its terminal event, all at once, under
        one deadline), then close. Returns within a few seconds past ``cancel_grace``,
        even when the database cannot be written."""
        if self.executor.closing:
            return
        self.executor.closing = True
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.scheduler.stop(), self.settings.cancel_grace)
        await self.executor.shutdown()
        await self._stack.aclose()

    def _committed(self, events: Sequence[Event]) -> None:
        """What this process committed: to its own followers now, to the others soon."""
        self.tail.announce(events)
        if events:
            # a run that ended frees a place (and maybe its session for the next run)
            ended = any(e.terminal for e in events)
            self.bus.notify(Notice(log=max(e.pos for e in events), work=ended))

    def _work_queued(self) -> None:
        """A run was queued for a claim: here, and in every process on the bus."""
        if self.executor.claims:
            self.executor.wake_claims()
        self.bus.notify(Notice(work=True))

    def _on_notice(self, notice: Notice) -> None:
        """Another process committed, asked for a cancel, or queued work."""
        missed = notice.log < 0
        if missed or notice.log > self.tail.seen:
            self.tail.wake()
        if (notice.work or missed) and self.executor.claims:
            self.executor.wake_claims()
        mine = [rid for rid in notice.cancel if self.executor.runner(rid) is not None]
        if mine or (missed and self.executor.active):
            self._background(self.cancel_requested(mine or None))

    async def cancel_requested(self, run_ids: list[str] | None = None) -> None:
        """Act on the cancel requests stored for runs executing here (all of them, or
        ``run_ids``), asked for in other processes."""
        if not self.executor.active:
            return
        ids = run_ids if run_ids is not None else self.executor.running_ids()
        for run_id, asked in (await self.store.cancel_requests(ids)).items():
            runner = self.executor.runner(run_id)
            if runner is not None and not runner.token.requested:
                with contextlib.suppress(CulmError):
                    await self.cancel(run_id, by=asked.by, reason=asked.reason)

    def _background(self, coro: Any) -> asyncio.Task[Any]:
        return self.executor.background(coro)

    def background(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        """Run ``coro`` in a task the engine owns: cancelled, at the latest, when it closes."""
        return self._background(coro)

    @property
    def closing(self) -> bool:
        """True once the engine has begun to shut down."""
        return self.executor.closing

    def health(self) -> str | None:
        """Why this engine cannot take new work now (the database cannot be written, seen
        by the event log or by any other write), or None when it can. Reads keep working
        either way."""
        return self.log.problem or self.store.problem

    async def _probe_writes(self) -> None:
        """While the database cannot be written, try a small write (every ``PROBE_SECONDS``):
        with no run emitting, nothing else would find out that space came back."""
        problem = self.health()
        if problem is None:
            self._unwritable = None
            return
        if self._unwritable is None:
            log.error("the database cannot be written (%s); probing it", problem)
            self._unwritable = problem
        try:
            await self.store.probe()
        except Unavailable:
            return
        self.log.recovered()
        if self.health() is None:
            log.warning("the database can be written again")
            self._unwritable = None

    def bus_health(self) -> str | None:
        """Why the bus cannot carry notices between processes now, or None. Nothing is lost
        meanwhile: other processes' events and cancels reach this one by polling, later."""
        return self.bus.health()

    async def drain(self, deadline: float) -> int:
        """Stop claiming and firing schedules, and give the runs going on up to
        ``deadline`` seconds to end; how many are still going (``aclose`` interrupts
        them)."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.scheduler.stop(), self.settings.cancel_grace)
        return await self.executor.drain(deadline)

    def _refuse_when_unhealthy(self) -> None:
        problem = self.health()
        if problem is not None:
            raise Unavailable(f"no new work is taken now: {problem}")

    # runs

    async def get_run(self, run_id: str, tenant: str | None = None, *, latest: bool = False) -> Run:
        """The run as last committed: its live state lags what it is doing by at most one
        group commit (milliseconds). It is never ahead of what subscribers were shown,
        unless ``latest`` (see ``Store.get_run``)."""
        return await self.store.get_run(run_id, tenant, latest=latest)

    async def list_runs(
        self, where: RunFilter | None = None, *, limit: int = 50, before: str | None = None
    ) -> list[Run]:
        return await self.store.list_runs(where or RunFilter(), limit=limit, before=before)

    async def wait(
        self, run_id: str, timeout: float | None = None, tenant: str | None = None
    ) -> Run:
        """The run once its end is durable, or as it stands when ``timeout`` seconds pass."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self.bus.subscribe((run_key(run_id),), 16) as feed:
            while True:
                run = await self.store.get_run(run_id, tenant)
                left = None if deadline is None else deadline - time.monotonic()
                if run.status.terminal or (left is not None and left <= 0):
                    return run
                runner = self.executor.runner(run_id)
                if runner is not None:
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(left):
                            await runner.done.wait()
                else:
                    poll = self.settings.idle_poll_seconds
                    await feed.next(poll if left is None else min(left, poll))
                    feed.resync()

    async def cancel(
        self,
        run_id: str,
        *,
        by: str = "user",
        reason: str | None = None,
        tenant: str | None = None,
    ) -> Run:
        """Ask a run to stop; returns the run as committed. Idempotent: asking again
        changes nothing.

        A running run stops at its next safe point, or is cancelled outright after the
        grace period; a pending run, or one waiting for a person, ends at once. Its live
        children (and theirs) are asked to stop too, on behalf of the same ``by``. A run
        that already ended otherwise than by cancellation raises ``RunFinished``.
        """
        run = await self.store.get_run(run_id, tenant)
        runner = self.executor.runner(run_id)
        if runner is None and run.status is RunStatus.RUNNING:
            # its runner may have ended while we read; it leaves only once its end is
            # stored, so a second read tells
            run = await self.store.get_run(run_id, tenant)
            runner = self.executor.runner(run_id)
        if runner is not None and not runner.finalized:
            children = runner.children.live() if runner.children else []
            if self.executor.request_cancel(runner, by, reason) and children:
                for child in children:
                    with contextlib.suppress(CulmError):
                        await self.cancel(child, by=by, reason=f"parent run {run_id} was cancelled")
                return await self.store.get_run(run_id, tenant)
            return run  # nothing was awaited since it was read: still the run as committed
        if runner is not None:  # ending as we speak: its end decides the answer
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(runner.done.wait(), self.settings.cancel_grace + 1)
            run = await self.store.get_run(run_id, tenant)
        if run.status in _HELD_BY_NOBODY:  # queued, or waiting for a person: ended here
            ended = await self.executor.end(
                run_id, _HELD_BY_NOBODY, ev.RUN_CANCELLED, cancelled_data(by, reason, forced=False)
            )
            if ended is not None:
                return ended
            return await self.cancel(run_id, by=by, reason=reason, tenant=tenant)
        if run.status is RunStatus.CANCELLED:
            return run
        if run.status.terminal:
            raise RunFinished(run_id, run.status.value)
        owner = await self.store.ownership(run_id)
        if (
            owner is not None
            and owner.worker_id is not None
            and (owner.expired or owner_is_dead(owner.worker_id, self.worker_id))
        ):  # its process died: nobody will resume it only to cancel it
            data = cancelled_data(by, reason, forced=False)
            held = Fence(owner.worker_id, owner.epoch)
            ended = await self.executor.end(run_id, ACTIVE, ev.RUN_CANCELLED, data, held)
            return ended or await self.cancel(run_id, by=by, reason=reason, tenant=tenant)
        # it runs in another process: the request is stored on the run (its owner looks
        # for requests on every lease renewal) and the owner is told at once on the bus
        if not await self.store.request_cancel(run_id, by, reason):
            run = await self.store.get_run(run_id, tenant)
            if run.status.terminal and run.status is not RunStatus.CANCELLED:
                raise RunFinished(run_id, run.status.value)
            return run
        self.bus.notify(Notice(cancel={run_id}))
        if owner is not None and owner.worker_id is None and self.executor.executes:
            # handed back at a shutdown, held by nobody: taken over here, it ends cancelled
            await self.executor.recover()
        return await self.store.get_run(run_id, tenant)

    # housekeeping

    async def recover(self) -> None:
        """Interrupt runs whose process died: at once on this host, by lease elsewhere."""
        await self.executor.recover()

    async def start_waiting(self) -> None:
        """Start pending runs whose session became free without this process noticing."""
        await self.executor.start_waiting()

    def webhook_store(self) -> WebhookStore:
        """The webhooks' endpoints, outbox and ledger on this engine's database, for
        ``culm.webhooks.Webhooks``: what the surfaces use instead of the store itself."""
        if not isinstance(self.store, SqlStore):
            raise InvalidInput("webhooks need a SQL store")
        return WebhookStore(self.store)

    async def ping(self) -> None:
        """Raise if the database cannot be reached."""
        await self.store.ping()

    async def count_runs(self) -> dict[RunStatus, int]:
        """How many runs are in each status, for metrics."""
        return await self.store.count_runs()

    async def purge(self) -> int:
        """Delete the events of runs that ended longer ago than the retention age."""
        if self.settings.retention_seconds is None:
            return 0
        purged = await self.store.purge_events(self.clock() - self.settings.retention_seconds)
        if purged and self.recent is not None:
            self.recent.clear()
        return purged
