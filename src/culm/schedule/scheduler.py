"""The scheduler: turns time into ``start_run`` calls.

Each ``tick(now)`` does everything due at ``now`` and nothing else, so tests drive it with
any clock; the background loop only calls ``tick`` every ``poll`` seconds (and at once when
a schedule changes in this process). Any number of processes may tick the same database:
a fire time is claimed in the store before it fires (see ``culm.store.schedules``), so it
fires at most once; a run is started with an idempotency key naming its ledger entry, so
retries can never start a second one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Callable, Iterator
from typing import Any, Protocol

from culm.errors import CulmError, NotFound
from culm.events import iso
from culm.models import (
    BusyPolicy,
    Firing,
    FiringOutcome,
    Run,
    Schedule,
    Session,
    SessionMode,
    Trigger,
)
from culm.runtime.owners import new_worker_id, owner_is_dead
from culm.schedule.cadence import fire_times, next_fire
from culm.schedule.policy import Action, keep_for, overlap, plan, scan_due
from culm.store import Store

log = logging.getLogger("culm.schedule")

_EPS = 1e-3
CLAIM_TIMEOUT = 300.0
"""A firing claimed on another host longer ago than this was abandoned by its claimer (one
on this host is known to be abandoned as soon as its process is gone)."""


class RunDoor(Protocol):
    """What a scheduler needs of the engine (``culm.Engine`` is one)."""

    async def start_run(
        self,
        agent: str,
        input: Any = None,
        *,
        session_id: str | None = None,
        tenant: str = "default",
        trigger: Trigger = Trigger.PYTHON,
        if_busy: BusyPolicy = BusyPolicy.REJECT,
        schedule_id: str | None = None,
        idempotency_key: str | None = None,
        by: str = "user",
    ) -> Run: ...

    async def cancel(
        self, run_id: str, *, by: str = "user", reason: str | None = None, tenant: str | None = None
    ) -> Run: ...

    async def create_session(
        self, *, tenant: str = "default", metadata: Any = None, parent_id: str | None = None
    ) -> Session: ...


class Scheduler:
    """Fires due schedules through a ``RunDoor``; one per engine."""

    def __init__(
        self,
        door: RunDoor,
        store: Store,
        clock: Callable[[], float],
        *,
        worker_id: str | None = None,
        poll: float = 1.0,
    ) -> None:
        self.door = door
        self.store = store
        self.clock = clock
        self.worker_id = worker_id or new_worker_id()
        self.poll = poll
        self._lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self._stopped = False

    async def run(self) -> None:
        """Tick until ``stop``: every ``poll`` seconds, and at once after ``wake``."""
        while not self._stopped:
            self._wake.clear()
            try:
                await self.tick()
            except Exception:
                log.exception("scheduler tick failed")
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.poll):
                    await self._wake.wait()

    def wake(self) -> None:
        """Tick again now (a schedule changed)."""
        self._wake.set()

    async def stop(self) -> None:
        """Start nothing more; returns once a tick in progress has finished."""
        self._stopped = True
        self._wake.set()
        async with self._lock:
            pass

    async def tick(self, now: float | None = None) -> None:
        """Do everything due at ``now`` (the clock's time by default): count ended runs,
        start waiting firings whose turn came, and claim and fire due fire times."""
        async with self._lock:
            if self._stopped:
                return
            now = self.clock() if now is None else now
            await self._settle(now)
            due = await self.store.due_schedules(now)
            for schedule in due:
                await self._fire_due(schedule, now)
            if len(due) == 100:  # a full page: more may be due
                self._wake.set()

    async def trigger(self, schedule: Schedule) -> Firing:
        """Fire ``schedule`` now, out of its cadence, under its overlap policy."""
        async with self._lock:
            now = self.clock()
            firing = Firing(schedule.id, now, now, FiringOutcome.CLAIMED, manual=True)
            firing.claimed_by = self.worker_id
            await self.store.add_firing(firing)
            await self._fire(schedule, firing, now)
            return firing

    # the steps of a tick

    async def _settle(self, now: float) -> None:
        waiting: dict[str, Firing] = {}
        for firing, status in await self.store.unsettled_firings():
            if firing.outcome is FiringOutcome.WAITING:
                waiting.setdefault(firing.schedule_id, firing)
            elif firing.outcome is FiringOutcome.STARTED:
                if status is None or status.terminal:  # None: the run was deleted
                    firing.run_status, firing.settled = status, True
                    await self._resolve(firing, FiringOutcome.STARTED)
            elif self._abandoned(firing, now):
                with contextlib.suppress(NotFound):  # the schedule was deleted meanwhile
                    await self._recover(firing, now)
        for firing in waiting.values():
            try:
                schedule = await self.store.get_schedule(firing.schedule_id)
            except NotFound:
                continue
            if not schedule.paused and not await self.store.schedule_active_runs(schedule.id):
                await self._start(schedule, firing, now, FiringOutcome.WAITING)

    def _abandoned(self, firing: Firing, now: float) -> bool:
        """Whether the worker that claimed ``firing`` stopped before resolving it."""
        owner = firing.claimed_by
        if owner is None or owner == self.worker_id:
            return True  # ours, yet no tick of ours is in flight (we hold the lock)
        if owner_is_dead(owner, self.worker_id):
            return True
        # worker ids start with the host name (culm.runtime.owners)
        elsewhere = owner.split(":", 1)[0] != socket.gethostname()
        return elsewhere and now - firing.fired_at > CLAIM_TIMEOUT

    async def _recover(self, firing: Firing, now: float) -> None:
        """Finish a firing whose claimer died: with the run it managed to start, else as
        usual if it is still on time, else as missed (the misfire rules cover later times)."""
        schedule = await self.store.get_schedule(firing.schedule_id)
        run = await self.store.find_run(schedule.tenant, _key(firing))
        if run is not None:
            firing.outcome, firing.run_id = FiringOutcome.STARTED, run.id
        elif firing.manual or now - firing.scheduled_at <= schedule.spec.misfire_grace:
            await self._fire(schedule, firing, now)
            return
        else:
            why = "the process that claimed this firing stopped before starting its run"
            _final(firing, FiringOutcome.MISSED, why)
        await self._resolve(firing, FiringOutcome.CLAIMED)

    async def _fire_due(self, schedule: Schedule, now: float) -> None:
        spec = schedule.spec
        assert schedule.next_fire_at is not None

        def times(after: float) -> Iterator[float]:
            return fire_times(spec, schedule.created_at, after)

        keep = keep_for(spec.misfire, spec.max_catch_up)
        due = scan_due(times, schedule.next_fire_at - _EPS, now, keep)
        claims: list[Firing] = []
        if due is not None:
            decided = plan(
                due,
                now,
                spec.misfire,
                grace=spec.misfire_grace,
                max_catch_up=spec.max_catch_up,
                max_lateness=spec.max_lateness,
            )
            if decided.missed_from is not None and decided.missed_to is not None:
                missed = Firing(schedule.id, decided.missed_from, now, FiringOutcome.MISSED)
                missed.count, missed.settled = decided.missed, True
                missed.detail = (
                    f"{decided.missed} fire time(s) from {iso(decided.missed_from)} to "
                    f"{iso(decided.missed_to)} passed while no scheduler ran "
                    f"(misfire policy {spec.misfire.value})"
                )
                claims.append(missed)
            for t in decided.fire:
                claims.append(Firing(schedule.id, t, now, FiringOutcome.CLAIMED))
                claims[-1].claimed_by = self.worker_id
        following = next_fire(spec, schedule.created_at, now)
        if not await self.store.claim_firings(schedule, following, claims):
            return  # another process got there first, or the schedule just changed
        for firing in claims:
            if firing.outcome is FiringOutcome.CLAIMED:
                await self._fire(schedule, firing, now)

    async def _fire(self, schedule: Schedule, firing: Firing, now: float) -> None:
        active = await self.store.schedule_active_runs(schedule.id)
        others = await self.store.unsettled_firings(schedule.id)
        waiting = any(f.outcome is FiringOutcome.WAITING and f.id != firing.id for f, _ in others)
        action = overlap(schedule.spec.overlap, len(active), waiting)
        if action is Action.SKIP:
            why = f"run {active[-1]} was still active" if active else "a firing was waiting"
            _final(firing, FiringOutcome.SKIPPED_OVERLAP, why)
            await self._resolve(firing, FiringOutcome.CLAIMED)
        elif action is Action.WAIT:
            firing.outcome = FiringOutcome.WAITING
            await self._resolve(firing, FiringOutcome.CLAIMED)
        else:
            if action is Action.CANCEL_AND_START:
                for run_id in active:
                    await self._cancel(schedule, run_id)
            await self._start(schedule, firing, now, FiringOutcome.CLAIMED)

    async def _cancel(self, schedule: Schedule, run_id: str) -> None:
        try:
            await self.door.cancel(
                run_id,
                by=f"schedule {schedule.id}",
                reason="the schedule fired again (overlap: cancel_previous)",
                tenant=schedule.tenant,
            )
        except CulmError as exc:  # it ended meanwhile, or runs in an unreachable process
            log.warning("schedule %s could not cancel run %s: %s", schedule.id, run_id, exc)

    async def _start(
        self, schedule: Schedule, firing: Firing, now: float, was: FiringOutcome
    ) -> None:
        spec = schedule.spec
        shared = spec.session is SessionMode.SHARED
        try:
            run = await self.door.start_run(
                spec.agent,
                spec.input,
                session_id=schedule.session_id if shared else None,
                tenant=schedule.tenant,
                trigger=Trigger.SCHEDULE,
                if_busy=BusyPolicy.ENQUEUE if shared else BusyPolicy.REJECT,
                schedule_id=schedule.id,
                idempotency_key=_key(firing),
            )
        except Exception as exc:
            if not isinstance(exc, CulmError):
                log.exception("schedule %s failed to start its run", schedule.id)
            _final(firing, FiringOutcome.FAILED_TO_START, _describe(exc))
        else:
            firing.outcome, firing.run_id = FiringOutcome.STARTED, run.id
        firing.fired_at = now
        await self._resolve(firing, was)

    async def _resolve(self, firing: Firing, was: FiringOutcome) -> None:
        if not await self.store.resolve_firing(firing, was):
            log.info(
                "firing %s of schedule %s was resolved elsewhere", firing.id, firing.schedule_id
            )


def _final(firing: Firing, outcome: FiringOutcome, detail: str) -> None:
    firing.outcome, firing.detail, firing.settled = outcome, detail, True


def _key(firing: Firing) -> str:
    """The idempotency key of the run a firing starts: one run per ledger entry, ever."""
    return f"culm.schedule:{firing.schedule_id}:{firing.id}"


def _describe(exc: Exception) -> str:
    return exc.message if isinstance(exc, CulmError) else f"{type(exc).__name__}: {exc}"
