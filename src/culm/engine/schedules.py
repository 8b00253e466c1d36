"""The engine's calls on schedules: each is the schedule book's (``culm.schedule``)."""

from __future__ import annotations

from typing import Any

from culm.models import Firing, Schedule, ScheduleSpec
from culm.schedule import ScheduleBook


class ScheduleCalls:
    """Mixed into ``Engine``."""

    schedules: ScheduleBook

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
