"""A tenant's schedules: create, read, change, pause, trigger, delete.

Every change is checked whole before anything is stored, and written with a compare-and-set
on the schedule's version, so it never overwrites a claim a scheduler made meanwhile (it
reads again and retries instead).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from culm.agent.app import App
from culm.errors import Conflict
from culm.ids import new_id
from culm.models import Firing, Schedule, ScheduleSpec, SessionMode
from culm.payload import DEFAULT_LIMITS, Limits
from culm.schedule.cadence import next_fire
from culm.schedule.scheduler import RunDoor, Scheduler
from culm.schedule.spec import cadence_changed, changed, first_fire, validate
from culm.store import Store

_ATTEMPTS = 5


class ScheduleBook:
    """The schedules an engine keeps; ``culm.Engine`` exposes these calls."""

    def __init__(
        self,
        app: App,
        store: Store,
        door: RunDoor,
        scheduler: Scheduler,
        clock: Callable[[], float],
        limits: Limits = DEFAULT_LIMITS,
    ) -> None:
        self.app = app
        self.limits = limits
        self.store = store
        self.door = door
        self.scheduler = scheduler
        self.clock = clock

    async def create(self, spec: ScheduleSpec, tenant: str = "default") -> Schedule:
        """Store a new schedule; its first fire time is the first one after now."""
        spec = validate(spec, self.app, self.limits)
        now = self.clock()
        next_fire_at = first_fire(spec, now, now)
        schedule_id = new_id("sch")
        schedule = Schedule(schedule_id, tenant, spec, now, now, next_fire_at)
        if spec.session is SessionMode.SHARED:
            schedule.session_id = await self._new_session(schedule_id, tenant)
        await self.store.create_schedule(schedule)
        self.scheduler.wake()
        return schedule

    async def get(self, schedule_id: str, tenant: str | None = None) -> Schedule:
        return await self.store.get_schedule(schedule_id, tenant)

    async def page(
        self, tenant: str = "default", *, limit: int = 50, before: str | None = None
    ) -> list[Schedule]:
        return await self.store.list_schedules(tenant, limit=limit, before=before)

    async def update(
        self, schedule_id: str, changes: Mapping[str, Any], tenant: str | None = None
    ) -> Schedule:
        """Apply ``changes`` (fields of ``ScheduleSpec``); a change of cadence makes the next
        fire time the first new one after now, any other change leaves it."""
        session: str | None = None

        async def edit(schedule: Schedule, now: float) -> None:
            nonlocal session
            spec = validate(changed(schedule.spec, changes), self.app, self.limits)
            if cadence_changed(schedule.spec, spec):
                schedule.next_fire_at = first_fire(spec, schedule.created_at, now)
            if spec.session is SessionMode.NEW:
                schedule.session_id = None
            elif schedule.session_id is None:
                session = session or await self._new_session(schedule.id, schedule.tenant)
                schedule.session_id = session
            schedule.spec = spec

        return await self._change(schedule_id, tenant, edit)

    async def pause(self, schedule_id: str, tenant: str | None = None) -> Schedule:
        """Stop firing until ``resume``; fire times meanwhile are not missed, just skipped."""

        async def edit(schedule: Schedule, now: float) -> None:
            schedule.paused = True

        return await self._change(schedule_id, tenant, edit)

    async def resume(self, schedule_id: str, tenant: str | None = None) -> Schedule:
        """Fire again, from the first fire time after now."""

        async def edit(schedule: Schedule, now: float) -> None:
            if schedule.paused:
                schedule.paused = False
                schedule.next_fire_at = next_fire(schedule.spec, schedule.created_at, now)

        return await self._change(schedule_id, tenant, edit)

    async def trigger(self, schedule_id: str, tenant: str | None = None) -> Firing:
        """Fire now, whether paused or not, without moving the cadence; the overlap policy
        applies. Returns the ledger entry, whose outcome says what happened."""
        schedule = await self.store.get_schedule(schedule_id, tenant)
        return await self.scheduler.trigger(schedule)

    async def delete(self, schedule_id: str, tenant: str | None = None) -> None:
        """Delete the schedule and its ledger; runs it started stay."""
        await self.store.delete_schedule(schedule_id, tenant)

    async def firings(
        self,
        schedule_id: str,
        tenant: str | None = None,
        *,
        limit: int = 50,
        before: int | None = None,
    ) -> list[Firing]:
        """The schedule's ledger, newest first; ``before`` is the last id of the previous
        page."""
        await self.store.get_schedule(schedule_id, tenant)
        return await self.store.list_firings(schedule_id, limit=limit, before=before)

    async def _change(
        self, schedule_id: str, tenant: str | None, edit: Callable[[Schedule, float], Any]
    ) -> Schedule:
        for _ in range(_ATTEMPTS):
            schedule = await self.store.get_schedule(schedule_id, tenant)
            now = self.clock()
            await edit(schedule, now)
            schedule.updated_at = now
            if await self.store.update_schedule(schedule):
                self.scheduler.wake()
                return schedule
        raise Conflict(f"schedule {schedule_id} kept changing while being updated; try again")

    async def _new_session(self, schedule_id: str, tenant: str) -> str:
        session = await self.door.create_session(
            tenant=tenant, metadata={"schedule_id": schedule_id}
        )
        return session.id
