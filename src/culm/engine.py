"""The one door: every path into a run (HTTP, spawn, schedule, Python) goes through
``Engine.start_run``; cancel, wait and subscribe are here too."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Mapping
from contextlib import AsyncExitStack
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self

from culm import events as ev
from culm.agent.app import App
from culm.agent.budget import Budget
from culm.bus import Bus, LocalBus, run_key
from culm.config import Settings
from culm.errors import Conflict, CulmError, InvalidInput, RunFinished, Unavailable
from culm.events import Event
from culm.ids import new_id
from culm.models import (
    BusyPolicy,
    Firing,
    Message,
    Run,
    RunState,
    RunStatus,
    Schedule,
    ScheduleSpec,
    Session,
    Trigger,
)
from culm.payload import check
from culm.projection import advance
from culm.runtime.executor import ACTIVE, PENDING, Executor
from culm.runtime.follow import EventReader, follow_run, follow_sessions
from culm.runtime.log import EventLog
from culm.runtime.owners import new_worker_id, owner_is_dead, release_worker_id
from culm.runtime.recent import RecentEvents, RecordingBus
from culm.runtime.runner import Runner, cancelled_data
from culm.runtime.tail import LogTail
from culm.schedule import ScheduleBook, Scheduler
from culm.store import RunFilter, Store, open_store
from culm.store.base import Fence
from culm.store.runs import replay
from culm.tree import RunNode, build_tree

log = logging.getLogger("culm.engine")


def _announces_child(event: Event) -> bool:
    return event.type == ev.CHILD_STARTED


def _ender(type: str, data: dict[str, Any], now: float) -> Callable[[Run], Event]:
    """How the store ends a run this call supersedes: the next event of its stream."""

    def terminal(run: Run) -> Event:
        seq = run.state.last_seq + 1
        return Event(
            seq, run.id, run.session_id, type, data, ts=now, parent_run_id=run.parent_run_id
        )

    return terminal


@dataclass(frozen=True, slots=True)
class Started:
    """What ``Engine.start`` did: the run as stored, and whether this call created it
    (False when its idempotency key named a run started before)."""

    run: Run
    created: bool


class Engine:
    """Runs agents in the background, durably. Use as ``async with Engine(app) as engine``."""

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
        self.bus = bus or LocalBus()
        if self.settings.recent_events_bytes > 0:
            self.recent = RecentEvents(self.store, self.settings.recent_events_bytes)
            self.bus = RecordingBus(self.bus, self.recent)
        self._reads: EventReader = self.recent if self.recent is not None else self.store
        # every committed event is announced by the store, in commit order; what other
        # processes sharing the database commit, the log's tail announces
        self.tail = LogTail(self.store, self.bus.publish)
        self.store.on_commit = self.tail.announce
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
        self._background(every(self.settings.idle_poll_seconds, self.tail.poll))
        self._background(self.log.run())
        await self.executor.recover()
        self._background(every(self.settings.lease_seconds / 3, self.executor.renew))
        self._background(every(self.settings.lease_seconds / 2, self.executor.recover))
        self._background(every(self.settings.idle_poll_seconds, self.executor.start_waiting))
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
        """Why this engine cannot take new work now (the database cannot be written), or
        None when it can. Reads keep working either way."""
        return self.log.problem

    def _refuse_when_unhealthy(self) -> None:
        problem = self.log.problem
        if problem is not None:
            raise Unavailable(f"no new work is taken now: {problem}")

    # sessions

    async def create_session(
        self,
        *,
        tenant: str = "default",
        metadata: Mapping[str, Any] | None = None,
        parent_id: str | None = None,
    ) -> Session:
        self._refuse_when_unhealthy()
        limits = self.settings.payload_limits
        session = Session(
            id=new_id("ses"),
            tenant=tenant,
            created_at=self.clock(),
            metadata=check(dict(metadata or {}), limits, what="the session's metadata"),
            parent_id=parent_id,
        )
        await self.store.create_session(session)
        return session

    async def get_session(self, session_id: str, tenant: str | None = None) -> Session:
        return await self.store.get_session(session_id, tenant)

    async def list_sessions(
        self,
        tenant: str = "default",
        *,
        limit: int = 50,
        before: str | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> list[Session]:
        """Newest first; ``before`` is the last id of the previous page."""
        return await self.store.list_sessions(tenant, limit=limit, before=before, metadata=metadata)

    async def delete_session(self, session_id: str, tenant: str | None = None) -> None:
        """Delete a session with its child sessions, runs, events and messages.

        Refused with ``Conflict`` while any of them has an active run.
        """
        await self.store.delete_session(session_id, tenant)
        if self.recent is not None:
            self.recent.clear()

    async def messages(
        self, session_id: str, *, tenant: str | None = None, after: int = 0, limit: int = 1000
    ) -> list[Message]:
        """The session's conversation history, oldest first."""
        await self.store.get_session(session_id, tenant)
        return await self.store.read_messages(session_id, after=after, limit=limit)

    # runs

    async def start_run(
        self,
        agent: str,
        input: Any = None,
        *,
        session_id: str | None = None,
        tenant: str = "default",
        trigger: Trigger = Trigger.PYTHON,
        if_busy: BusyPolicy = BusyPolicy.REJECT,
        parent_run_id: str | None = None,
        schedule_id: str | None = None,
        idempotency_key: str | None = None,
        by: str = "user",
        run_id: str | None = None,
        grant: Budget | None = None,
        depth: int = 0,
    ) -> Run:
        """Create a run and hand it to the executor; returns at once with the run as
        stored (see ``start`` for everything it does)."""
        started = await self.start(
            agent,
            input,
            session_id=session_id,
            tenant=tenant,
            trigger=trigger,
            if_busy=if_busy,
            parent_run_id=parent_run_id,
            schedule_id=schedule_id,
            idempotency_key=idempotency_key,
            by=by,
            run_id=run_id,
            grant=grant,
            depth=depth,
        )
        return started.run

    async def start(
        self,
        agent: str,
        input: Any = None,
        *,
        session_id: str | None = None,
        tenant: str = "default",
        trigger: Trigger = Trigger.PYTHON,
        if_busy: BusyPolicy = BusyPolicy.REJECT,
        parent_run_id: str | None = None,
        schedule_id: str | None = None,
        idempotency_key: str | None = None,
        by: str = "user",
        run_id: str | None = None,
        grant: Budget | None = None,
        depth: int = 0,
    ) -> Started:
        """Create a run and hand it to the executor; returns at once.

        Without ``session_id`` the run gets a new session. When the session has an active
        run, ``if_busy`` decides: ``reject`` raises ``SessionBusy``, ``enqueue`` waits in
        line, ``interrupt`` cancels what is active (on behalf of ``by``) and then starts.
        A retried call with the same ``idempotency_key`` returns the same run
        (``created`` False), concurrent retries included; a key the tenant used for another
        agent or session raises ``IdempotencyKeyReused``. The input is checked and copied
        (``InvalidInput``, ``InvalidPayload``). ``run_id``, ``grant`` and ``depth`` are for
        spawn, which announces a child before it exists and passes what its parent
        granted it. While the database cannot be written, ``Unavailable``.
        """
        spec = self.app.get(agent)
        self._refuse_when_unhealthy()
        value = spec.validate_input(input, self.settings.payload_limits)
        if idempotency_key is not None:
            existing = await self.store.find_run(tenant, idempotency_key)
            if existing is not None:  # a retry: before any interrupt or new session
                return Started(replay(existing, agent, session_id), False)
        new_session = None
        if session_id is None:  # created with the run, in one transaction
            new_session = Session(id=new_id("ses"), tenant=tenant, created_at=self.clock())
            session_id = new_session.id
        else:
            await self.store.get_session(session_id, tenant)
        run_id = run_id or new_id("run")
        interrupted = cancelled_data(by, f"interrupted by run {run_id}", forced=False)
        now = self.clock()
        queued = Event(
            1,
            run_id,
            session_id,
            ev.RUN_QUEUED,
            {
                "agent": agent,
                "trigger": trigger.value,
                "parent_run_id": parent_run_id,
                "schedule_id": schedule_id,
            },
            ts=now,
            parent_run_id=parent_run_id,
        )
        run = Run(
            id=run_id,
            session_id=session_id,
            tenant=tenant,
            agent=agent,
            input=value,
            trigger=trigger,
            created_at=now,
            state=advance(RunState(), queued),
            parent_run_id=parent_run_id,
            schedule_id=schedule_id,
            idempotency_key=idempotency_key,
            grant=None if grant is None else grant.to_dict(),
            depth=depth,
        )
        created = await self.store.create_run(
            run,
            queued,
            reject_if_busy=if_busy is BusyPolicy.REJECT,
            owner=self.worker_id,
            lease_seconds=self.settings.lease_seconds,
            claim=True,
            new_session=new_session,
            supersede=_ender(ev.RUN_CANCELLED, interrupted, now)
            if if_busy is BusyPolicy.INTERRUPT
            else None,
        )
        if not created.created:
            return Started(created.run, False)
        if created.ahead is None:
            await self.executor.launch(created.run, epoch=created.run.epoch)
            return Started(created.run, True)
        self.executor.waits_on(session_id)
        if if_busy is BusyPolicy.INTERRUPT:  # what waited was cancelled with the start
            with contextlib.suppress(RunFinished):
                await self.cancel(created.ahead, by=by, reason=f"interrupted by run {run_id}")
        return Started(created.run, True)

    async def get_run(self, run_id: str, tenant: str | None = None) -> Run:
        """The run as last committed: its live state lags what it is doing by at most one
        group commit (milliseconds)."""
        return await self.store.get_run(run_id, tenant)

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
        grace period; a pending run ends at once. Its live children (and theirs) are asked
        to stop too, on behalf of the same ``by``. A run that already ended otherwise than
        by cancellation raises ``RunFinished``.
        """
        run = await self.store.get_run(run_id, tenant)
        runner = self.executor.runner(run_id)
        if runner is None and run.status is RunStatus.RUNNING:
            # its runner may have ended while we read; it leaves only once its end is
            # stored, so a second read tells
            run = await self.store.get_run(run_id, tenant)
            runner = self.executor.runner(run_id)
        if runner is not None and not runner.finalized:
            if self.executor.request_cancel(runner, by, reason):
                for child in runner.children.live() if runner.children else ():
                    with contextlib.suppress(CulmError):
                        await self.cancel(child, by=by, reason=f"parent run {run_id} was cancelled")
            return await self.store.get_run(run_id, tenant)
        if runner is not None:  # ending as we speak: its end decides the answer
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(runner.done.wait(), self.settings.cancel_grace + 1)
            run = await self.store.get_run(run_id, tenant)
        if run.status is RunStatus.PENDING:
            ended = await self.executor.end(
                run_id, PENDING, ev.RUN_CANCELLED, cancelled_data(by, reason, forced=False)
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
        raise Conflict(
            f"run {run_id} is executing in another process; "
            "cancel it through a server connected to that process's bus"
        )

    # events

    async def events(
        self, run_id: str, *, after: int = 0, limit: int = 1000, tenant: str | None = None
    ) -> list[Event]:
        """One page of the run's stored events with ``seq > after`` (for polling clients)."""
        await self.store.get_run(run_id, tenant)
        return await self._reads.read_events(run_id, after=after, limit=limit)

    async def session_events(
        self, session_id: str, *, after: int = 0, limit: int = 1000, tenant: str | None = None
    ) -> list[Event]:
        """One page of the stored events of a session and its child sessions (the runs
        spawned from it, theirs...) with log position ``pos > after``."""
        await self.store.get_session(session_id, tenant)
        tree = await self.store.session_tree(session_id)
        return await self.store.read_session_events(tree, after=after, limit=limit)

    async def subscribe_batches(
        self, run_id: str, after: int = 0, *, tenant: str | None = None
    ) -> AsyncIterator[list[Event]]:
        """The run's events after ``after`` in batches; see ``subscribe``.

        Raises ``NotFound`` for an unknown run (or another tenant's) and ``InvalidInput``
        for a cursor past the run's last event, before yielding. A cursor at the end of a
        run that has ended yields nothing.
        """
        run = await self.get_run(run_id, tenant)
        async for batch in self.follow(run, after):
            yield batch

    async def follow(self, run: Run, after: int = 0) -> AsyncIterator[list[Event]]:
        """``subscribe_batches`` for a run the caller has just read (and checked the tenant
        of): the HTTP stream reads the run once, not twice."""
        if after >= run.state.last_seq and run.status.terminal:
            return
        if after > run.state.last_seq:
            raise InvalidInput(
                f"run {run.id} has no event {after} yet (its last is {run.state.last_seq})"
            )
        async for batch in follow_run(
            self._reads,
            self.bus,
            run.id,
            after,
            buffer=self.settings.subscriber_buffer,
            idle_poll=None,  # woken by the bus only: the log's tail covers other writers
        ):
            yield batch

    async def subscribe(
        self, run_id: str, after: int = 0, *, tenant: str | None = None
    ) -> AsyncIterator[Event]:
        """Every event of the run after sequence number ``after``, each once and in order,
        then the live tail; ends after the terminal event."""
        async for batch in self.subscribe_batches(run_id, after, tenant=tenant):
            for event in batch:
                yield event

    async def subscribe_session(
        self, session_id: str, after: int = 0, *, tenant: str | None = None
    ) -> AsyncIterator[list[Event]]:
        """Batches of every event of a session's runs and of the runs spawned from them (on
        child sessions, theirs too...) after log position ``after``, in log order, without
        end (the session may get more runs). The tree is followed as it grows: each
        ``child.started`` is committed before the child's first event."""
        await self.store.get_session(session_id, tenant)

        async def ids() -> list[str]:
            return await self.store.session_tree(session_id)

        async for batch in follow_sessions(
            self.store,
            self.bus,
            ids,
            after,
            buffer=self.settings.subscriber_buffer,
            idle_poll=None,  # woken by the bus only: the log's tail covers other writers
            grows=_announces_child,
        ):
            yield batch

    # spawn

    async def spawn(
        self,
        parent_run_id: str,
        agent: str,
        input: Any = None,
        *,
        tenant: str | None = None,
        by: str = "user",
        token_budget: int | None = None,
        max_rounds: int | None = None,
    ) -> Run:
        """Start ``agent`` as a child of a run executing here, as its agent's ``run.spawn``
        would: on a child session, through ``start_run`` with trigger ``spawn``, within the
        parent's limits and budget (``SpawnRefused`` otherwise). The parent's stream gets
        ``child.started`` and, when the child ends, ``child.completed``."""
        parent = await self.store.get_run(parent_run_id, tenant)
        runner = self.executor.runner(parent_run_id)
        if runner is None or runner.children is None:
            if parent.status.terminal:
                raise RunFinished(parent_run_id, parent.status.value)
            raise Conflict(f"run {parent_run_id} is not executing in this process")
        budget = Budget(token_budget, max_rounds)
        child = await runner.children.spawn(agent, input, budget, by=by)
        return await self.get_run(child.run_id)

    async def children(
        self,
        run_id: str,
        *,
        tenant: str | None = None,
        limit: int = 50,
        before: str | None = None,
    ) -> list[Run]:
        """The runs the run spawned, newest first; ``before`` is the last id of a page."""
        await self.store.get_run(run_id, tenant)
        where = RunFilter(tenant=tenant, parent_run_id=run_id)
        return await self.list_runs(where, limit=limit, before=before)

    async def run_tree(self, run_id: str, tenant: str | None = None) -> RunNode:
        """The run and every run spawned below it, with their live state."""
        return build_tree(await self.store.run_tree(run_id, tenant))

    def local_runner(self, run_id: str) -> Runner | None:
        """The runner of a run this process executes, if any."""
        return self.executor.runner(run_id)

    # schedules

    async def create_schedule(self, spec: ScheduleSpec, *, tenant: str = "default") -> Schedule:
        """Store a schedule (see ``ScheduleSpec``); it fires from its first fire time after now.

        Bad input raises ``InvalidInput`` (an unknown agent ``NotFound``) and stores nothing.
        """
        return await self.schedules.create(spec, tenant)

    async def get_schedule(self, schedule_id: str, tenant: str | None = None) -> Schedule:
        """The schedule with its next fire time and counters."""
        return await self.schedules.get(schedule_id, tenant)

    async def list_schedules(
        self, tenant: str = "default", *, limit: int = 50, before: str | None = None
    ) -> list[Schedule]:
        """Newest first; ``before`` is the last id of the previous page."""
        return await self.schedules.page(tenant, limit=limit, before=before)

    async def update_schedule(
        self, schedule_id: str, *, tenant: str | None = None, **changes: Any
    ) -> Schedule:
        """Change fields of the schedule's ``ScheduleSpec``; a new cadence fires from its
        first fire time after now, other changes keep the next fire time."""
        return await self.schedules.update(schedule_id, changes, tenant)

    async def delete_schedule(self, schedule_id: str, tenant: str | None = None) -> None:
        """Delete the schedule and its ledger of firings; the runs it started stay."""
        await self.schedules.delete(schedule_id, tenant)

    async def pause_schedule(self, schedule_id: str, tenant: str | None = None) -> Schedule:
        """Stop firing until resumed; fire times meanwhile are not run and not missed."""
        return await self.schedules.pause(schedule_id, tenant)

    async def resume_schedule(self, schedule_id: str, tenant: str | None = None) -> Schedule:
        """Fire again, from the first fire time after now."""
        return await self.schedules.resume(schedule_id, tenant)

    async def trigger_schedule(self, schedule_id: str, tenant: str | None = None) -> Firing:
        """Fire now without moving the cadence (also when paused); the overlap policy
        applies. The returned ledger entry says whether a run started, and which."""
        return await self.schedules.trigger(schedule_id, tenant)

    async def schedule_firings(
        self,
        schedule_id: str,
        tenant: str | None = None,
        *,
        limit: int = 50,
        before: int | None = None,
    ) -> list[Firing]:
        """The schedule's ledger: each fire time and what became of it, newest first."""
        return await self.schedules.firings(schedule_id, tenant, limit=limit, before=before)

    # housekeeping

    async def recover(self) -> None:
        """Interrupt runs whose process died: at once on this host, by lease elsewhere."""
        await self.executor.recover()

    async def start_waiting(self) -> None:
        """Start pending runs whose session became free without this process noticing."""
        await self.executor.start_waiting()

    async def purge(self) -> int:
        """Delete the events of runs that ended longer ago than the retention age."""
        if self.settings.retention_seconds is None:
            return 0
        purged = await self.store.purge_events(self.clock() - self.settings.retention_seconds)
        if purged and self.recent is not None:
            self.recent.clear()
        return purged
