"""Schedule queries for the SQL store: schedules, their ledger of firings, and the claim
that makes each fire time fire at most once across processes.

A claim is one transaction: a compare-and-set on the schedule's ``version`` that advances
``next_fire_at``, plus the ledger rows of the fire times it takes, which a unique index on
``(schedule_id, scheduled_at)`` keeps single even if two claims ever raced past the check.
Counters change in the same transaction as the ledger row that they count.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from culm.errors import NotFound
from culm.models import (
    ACTIVE_STATUSES,
    Firing,
    FiringCounts,
    FiringOutcome,
    Misfire,
    Overlap,
    RunStatus,
    Schedule,
    ScheduleSpec,
    SessionMode,
)
from culm.store.schema import runs, schedule_firings, schedules

_FAILED_RUN = (RunStatus.FAILED, RunStatus.INTERRUPTED)


class ScheduleQueries:
    """Mixed into ``SqlStore``; see ``culm.store.base.Store`` for what each call promises."""

    def _write(self, *, appends: bool = True) -> AbstractAsyncContextManager[AsyncConnection]:
        raise NotImplementedError

    def _read(self) -> AbstractAsyncContextManager[AsyncConnection]:
        raise NotImplementedError

    async def create_schedule(self, schedule: Schedule) -> None:
        async with self._write(appends=False) as conn:
            await conn.execute(schedules.insert().values(**_schedule_columns(schedule)))

    async def get_schedule(self, schedule_id: str, tenant: str | None = None) -> Schedule:
        async with self._read() as conn:
            return await _require(conn, schedule_id, tenant)

    async def list_schedules(
        self, tenant: str, *, limit: int = 50, before: str | None = None
    ) -> list[Schedule]:
        query = schedules.select().where(schedules.c.tenant == tenant)
        if before is not None:
            query = query.where(schedules.c.id < before)
        query = query.order_by(schedules.c.id.desc()).limit(limit)
        async with self._read() as conn:
            return [_schedule(row) for row in (await conn.execute(query)).all()]

    async def update_schedule(self, schedule: Schedule) -> bool:
        values = _schedule_columns(schedule)
        for name in ("id", "tenant", "created_at", "last_fired_at", "last_run_id"):
            values.pop(name)
        for name in _COUNTS:
            values.pop(name)
        values["version"] = schedule.version + 1
        query = (
            schedules.update()
            .where(schedules.c.id == schedule.id, schedules.c.version == schedule.version)
            .values(**values)
        )
        async with self._write(appends=False) as conn:
            if (await conn.execute(query)).rowcount != 1:
                return False
        schedule.version += 1
        return True

    async def delete_schedule(self, schedule_id: str, tenant: str | None = None) -> None:
        async with self._write(appends=False) as conn:
            await _require(conn, schedule_id, tenant)
            await conn.execute(
                schedule_firings.delete().where(schedule_firings.c.schedule_id == schedule_id)
            )
            await conn.execute(schedules.delete().where(schedules.c.id == schedule_id))

    async def due_schedules(self, now: float, limit: int = 100) -> list[Schedule]:
        query = (
            schedules.select()
            .where(schedules.c.next_fire_at <= now, sa.not_(schedules.c.paused))
            .order_by(schedules.c.next_fire_at)
            .limit(limit)
        )
        async with self._read() as conn:
            return [_schedule(row) for row in (await conn.execute(query)).all()]

    async def claim_firings(
        self, schedule: Schedule, next_fire_at: float | None, firings: Sequence[Firing]
    ) -> bool:
        advance = (
            schedules.update()
            .where(schedules.c.id == schedule.id, schedules.c.version == schedule.version)
            .values(next_fire_at=next_fire_at, version=schedule.version + 1)
        )
        try:
            async with self._write(appends=False) as conn:
                if (await conn.execute(advance)).rowcount != 1:
                    return False
                for firing in firings:
                    await _insert_firing(conn, firing)
        except IntegrityError:  # another process took one of these fire times
            return False
        schedule.version += 1
        schedule.next_fire_at = next_fire_at
        return True

    async def add_firing(self, firing: Firing) -> None:
        try:
            async with self._write(appends=False) as conn:
                await _insert_firing(conn, firing)
        except IntegrityError:  # the schedule was deleted meanwhile
            raise NotFound(f"no schedule {firing.schedule_id}") from None

    async def resolve_firing(self, firing: Firing, was: FiringOutcome) -> bool:
        f = schedule_firings.c
        query = (
            schedule_firings.update()
            .where(f.id == firing.id, f.outcome == was.value, sa.not_(f.settled))
            .values(
                outcome=firing.outcome.value,
                fired_at=firing.fired_at,
                run_id=firing.run_id,
                run_status=None if firing.run_status is None else firing.run_status.value,
                detail=firing.detail,
                settled=firing.settled,
            )
        )
        async with self._write(appends=False) as conn:
            if (await conn.execute(query)).rowcount != 1:
                return False
            await _count(conn, firing, was)
        return True

    async def unsettled_firings(
        self, schedule_id: str | None = None, limit: int = 1000
    ) -> list[tuple[Firing, RunStatus | None]]:
        query = (
            sa.select(schedule_firings, runs.c.status.label("current_status"))
            .select_from(schedule_firings.outerjoin(runs, runs.c.id == schedule_firings.c.run_id))
            .where(sa.not_(schedule_firings.c.settled))
            .order_by(schedule_firings.c.id)
            .limit(limit)
        )
        if schedule_id is not None:
            query = query.where(schedule_firings.c.schedule_id == schedule_id)
        async with self._read() as conn:
            rows = (await conn.execute(query)).all()
        return [
            (_firing(r), None if r.current_status is None else RunStatus(r.current_status))
            for r in rows
        ]

    async def list_firings(
        self, schedule_id: str, *, limit: int = 50, before: int | None = None
    ) -> list[Firing]:
        f = schedule_firings.c
        query = schedule_firings.select().where(f.schedule_id == schedule_id)
        if before is not None:
            query = query.where(f.id < before)
        query = query.order_by(f.id.desc()).limit(limit)
        async with self._read() as conn:
            return [_firing(row) for row in (await conn.execute(query)).all()]

    async def schedule_active_runs(self, schedule_id: str) -> list[str]:
        query = (
            sa.select(runs.c.id)
            .where(runs.c.schedule_id == schedule_id, runs.c.status.in_(ACTIVE_STATUSES))
            .order_by(runs.c.id)
        )
        async with self._read() as conn:
            return list((await conn.execute(query)).scalars())


async def _require(conn: AsyncConnection, schedule_id: str, tenant: str | None) -> Schedule:
    query = schedules.select().where(schedules.c.id == schedule_id)
    if tenant is not None:
        query = query.where(schedules.c.tenant == tenant)
    row = (await conn.execute(query)).first()
    if row is None:
        raise NotFound(f"no schedule {schedule_id}")
    return _schedule(row)


async def _insert_firing(conn: AsyncConnection, firing: Firing) -> None:
    result = await conn.execute(
        schedule_firings.insert().values(
            schedule_id=firing.schedule_id,
            scheduled_at=firing.scheduled_at,
            fired_at=firing.fired_at,
            manual=firing.manual,
            outcome=firing.outcome.value,
            count=firing.count,
            run_id=firing.run_id,
            run_status=None if firing.run_status is None else firing.run_status.value,
            detail=firing.detail,
            settled=firing.settled,
            claimed_by=firing.claimed_by,
        )
    )
    key = result.inserted_primary_key
    assert key is not None
    firing.id = key[0]
    await _count(conn, firing, None)


async def _count(conn: AsyncConnection, firing: Firing, was: FiringOutcome | None) -> None:
    """Move the schedule's counters for ``firing`` having gone from ``was`` to where it is."""
    s = schedules.c
    values: dict[str, Any] = {}
    if was is FiringOutcome.STARTED:  # its run ended
        if firing.run_status is RunStatus.COMPLETED:
            values = {"n_completed": s.n_completed + 1, "consecutive_failures": 0}
        elif firing.run_status in _FAILED_RUN:
            values = {
                "n_failed": s.n_failed + 1,
                "consecutive_failures": s.consecutive_failures + 1,
            }
    elif firing.outcome is FiringOutcome.STARTED:
        values = {
            "n_started": s.n_started + 1,
            "last_fired_at": firing.fired_at,
            "last_run_id": firing.run_id,
        }
    elif firing.outcome is FiringOutcome.FAILED_TO_START:
        values = {
            "n_failed_to_start": s.n_failed_to_start + 1,
            "consecutive_failures": s.consecutive_failures + 1,
        }
    elif firing.outcome is FiringOutcome.SKIPPED_OVERLAP:
        values = {"n_skipped_overlap": s.n_skipped_overlap + firing.count}
    elif firing.outcome is FiringOutcome.MISSED:
        values = {"n_missed": s.n_missed + firing.count}
    if values:
        await conn.execute(schedules.update().where(s.id == firing.schedule_id).values(**values))


_COUNTS = (
    "n_started",
    "n_skipped_overlap",
    "n_missed",
    "n_failed_to_start",
    "n_completed",
    "n_failed",
    "consecutive_failures",
)


def _schedule_columns(schedule: Schedule) -> dict[str, Any]:
    spec, c = schedule.spec, schedule.counts
    return {
        "id": schedule.id,
        "tenant": schedule.tenant,
        "name": spec.name,
        "agent": spec.agent,
        "input": orjson.dumps(spec.input).decode(),
        "cron": spec.cron,
        "timezone": spec.timezone,
        "every": spec.every,
        "anchor": spec.anchor,
        "at": spec.at,
        "start_at": spec.start_at,
        "end_at": spec.end_at,
        "session_mode": spec.session.value,
        "session_id": schedule.session_id,
        "overlap": spec.overlap.value,
        "misfire": spec.misfire.value,
        "misfire_grace": spec.misfire_grace,
        "max_catch_up": spec.max_catch_up,
        "max_lateness": spec.max_lateness,
        "paused": schedule.paused,
        "next_fire_at": schedule.next_fire_at,
        "version": schedule.version,
        "created_at": schedule.created_at,
        "updated_at": schedule.updated_at,
        "last_fired_at": schedule.last_fired_at,
        "last_run_id": schedule.last_run_id,
        "n_started": c.started,
        "n_skipped_overlap": c.skipped_overlap,
        "n_missed": c.missed,
        "n_failed_to_start": c.failed_to_start,
        "n_completed": c.completed,
        "n_failed": c.failed,
        "consecutive_failures": c.consecutive_failures,
    }


def _schedule(row: sa.Row[Any]) -> Schedule:
    spec = ScheduleSpec(
        agent=row.agent,
        input=orjson.loads(row.input),
        cron=row.cron,
        timezone=row.timezone,
        every=row.every,
        anchor=row.anchor,
        at=row.at,
        start_at=row.start_at,
        end_at=row.end_at,
        session=SessionMode(row.session_mode),
        overlap=Overlap(row.overlap),
        misfire=Misfire(row.misfire),
        misfire_grace=row.misfire_grace,
        max_catch_up=row.max_catch_up,
        max_lateness=row.max_lateness,
        name=row.name,
    )
    counts = FiringCounts(
        started=row.n_started,
        skipped_overlap=row.n_skipped_overlap,
        missed=row.n_missed,
        failed_to_start=row.n_failed_to_start,
        completed=row.n_completed,
        failed=row.n_failed,
        consecutive_failures=row.consecutive_failures,
    )
    return Schedule(
        id=row.id,
        tenant=row.tenant,
        spec=spec,
        created_at=row.created_at,
        updated_at=row.updated_at,
        next_fire_at=row.next_fire_at,
        paused=bool(row.paused),
        session_id=row.session_id,
        version=row.version,
        last_fired_at=row.last_fired_at,
        last_run_id=row.last_run_id,
        counts=counts,
    )


def _firing(row: sa.Row[Any]) -> Firing:
    return Firing(
        schedule_id=row.schedule_id,
        scheduled_at=row.scheduled_at,
        fired_at=row.fired_at,
        outcome=FiringOutcome(row.outcome),
        run_id=row.run_id,
        detail=row.detail,
        manual=bool(row.manual),
        count=row._mapping["count"],  # row.count is the tuple method
        run_status=None if row.run_status is None else RunStatus(row.run_status),
        settled=bool(row.settled),
        claimed_by=row.claimed_by,
        id=row.id,
    )
