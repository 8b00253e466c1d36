"""The scheduler against a real engine and SQLite file, with a clock the test moves."""

from __future__ import annotations

from typing import Any

import pytest

import culm
from culm.models import (
    Firing,
    FiringOutcome,
    Misfire,
    Overlap,
    RunStatus,
    ScheduleSpec,
    SessionMode,
)
from tests.schedule.conftest import T0, Clock, eventually

STARTED = FiringOutcome.STARTED


async def ledger(engine: culm.Engine, schedule_id: str) -> list[tuple[Any, ...]]:
    """The ledger oldest first, as (outcome, seconds after T0, count, manual)."""
    firings = await engine.schedule_firings(schedule_id, limit=1000)
    return [(f.outcome.value, f.scheduled_at - T0, f.count, f.manual) for f in reversed(firings)]


async def runs_of(engine: culm.Engine, schedule_id: str) -> list[culm.Run]:
    return list(reversed(await engine.list_runs(culm.RunFilter(schedule_id=schedule_id))))


async def fire(engine: culm.Engine, clock: Clock, seconds: float) -> None:
    await engine.scheduler.tick(clock.advance(seconds))


async def finish(engine: culm.Engine, schedule_id: str) -> None:
    """Wait for the schedule's runs to end, then let the scheduler count their ends."""
    for run in await runs_of(engine, schedule_id):
        await engine.wait(run.id, timeout=10)
    await engine.scheduler.tick()


class TestFiring:
    """A due fire time starts exactly one run through the one door, and the ledger, the
    counters and the next fire time say so."""

    async def test_a_due_fire_time_starts_a_run(self, engine: culm.Engine, clock: Clock) -> None:
        schedule = await engine.create_schedule(ScheduleSpec(agent="echo", input="hi", every=60))
        assert schedule.next_fire_at == T0 + 60
        await fire(engine, clock, 59)
        assert await ledger(engine, schedule.id) == []
        await fire(engine, clock, 1)
        await fire(engine, clock, 0)  # ticking again at the same time fires nothing more
        assert await ledger(engine, schedule.id) == [("started", 60, 1, False)]
        [run] = await runs_of(engine, schedule.id)
        assert (run.trigger, run.schedule_id, run.agent, run.input) == (
            culm.Trigger.SCHEDULE,
            schedule.id,
            "echo",
            "hi",
        )
        await finish(engine, schedule.id)
        now = await engine.get_schedule(schedule.id)
        assert now.next_fire_at == T0 + 120
        assert (now.last_fired_at, now.last_run_id) == (T0 + 60, run.id)
        assert now.counts == culm.models.FiringCounts(started=1, completed=1)
        [firing] = await engine.schedule_firings(schedule.id)
        assert (firing.run_id, firing.run_status, firing.settled) == (
            run.id,
            RunStatus.COMPLETED,
            True,
        )

    async def test_each_firing_gets_a_new_session_by_default(
        self, engine: culm.Engine, clock: Clock
    ) -> None:
        schedule = await engine.create_schedule(ScheduleSpec(agent="echo", input="x", every=60))
        for _ in range(2):
            await fire(engine, clock, 60)
            await finish(engine, schedule.id)
        sessions = {r.session_id for r in await runs_of(engine, schedule.id)}
        assert len(sessions) == 2

    async def test_a_shared_session_continues_across_firings(
        self, engine: culm.Engine, clock: Clock
    ) -> None:
        spec = ScheduleSpec(agent="echo", input="x", every=60, session=SessionMode.SHARED)
        schedule = await engine.create_schedule(spec)
        assert schedule.session_id is not None
        for _ in range(2):
            await fire(engine, clock, 60)
            await finish(engine, schedule.id)
        assert {r.session_id for r in await runs_of(engine, schedule.id)} == {schedule.session_id}

    async def test_a_one_time_schedule_fires_once(self, engine: culm.Engine, clock: Clock) -> None:
        schedule = await engine.create_schedule(ScheduleSpec(agent="echo", input="x", at=T0 + 5))
        await fire(engine, clock, 3600)
        await fire(engine, clock, 3600)
        assert await ledger(engine, schedule.id) == [("started", 5, 1, False)]
        assert (await engine.get_schedule(schedule.id)).next_fire_at is None

    async def test_an_end_time_stops_it(self, engine: culm.Engine, clock: Clock) -> None:
        spec = ScheduleSpec(agent="echo", input="x", every=60, end_at=T0 + 120)
        schedule = await engine.create_schedule(spec)
        for _ in range(4):
            await fire(engine, clock, 60)
        assert [row[1] for row in await ledger(engine, schedule.id)] == [60, 120]
        assert (await engine.get_schedule(schedule.id)).next_fire_at is None

    async def test_cron_in_a_time_zone(self, engine: culm.Engine, clock: Clock) -> None:
        # every weekday at 9:00 in Paris: T0 is Monday 08:00 UTC = 09:00 Paris
        spec = ScheduleSpec(agent="echo", input="x", cron="0 9 * * 1-5", timezone="Europe/Paris")
        schedule = await engine.create_schedule(spec)
        assert schedule.next_fire_at == T0 + 86400
        await fire(engine, clock, 86400)
        assert await ledger(engine, schedule.id) == [("started", 86400, 1, False)]

    async def test_failures_are_counted_and_reset_by_a_success(
        self, engine: culm.Engine, clock: Clock
    ) -> None:
        schedule = await engine.create_schedule(ScheduleSpec(agent="crash", input="no", every=60))
        for _ in range(2):
            await fire(engine, clock, 60)
            await finish(engine, schedule.id)
        counts = (await engine.get_schedule(schedule.id)).counts
        assert (counts.started, counts.failed, counts.consecutive_failures) == (2, 2, 2)
        await engine.update_schedule(schedule.id, agent="echo", input="yes")
        await fire(engine, clock, 60)
        await finish(engine, schedule.id)
        counts = (await engine.get_schedule(schedule.id)).counts
        assert (counts.started, counts.completed, counts.consecutive_failures) == (3, 1, 0)

    async def test_a_run_that_cannot_start_is_recorded(
        self, engine: culm.Engine, clock: Clock
    ) -> None:
        spec = ScheduleSpec(agent="echo", input="x", every=60, session=SessionMode.SHARED)
        schedule = await engine.create_schedule(spec)
        assert schedule.session_id is not None
        await engine.delete_session(schedule.session_id)
        await fire(engine, clock, 60)
        [firing] = await engine.schedule_firings(schedule.id)
        assert firing.outcome is FiringOutcome.FAILED_TO_START
        assert firing.detail is not None and schedule.session_id in firing.detail
        counts = (await engine.get_schedule(schedule.id)).counts
        assert (counts.failed_to_start, counts.consecutive_failures) == (1, 1)


class TestOverlap:
    """What a firing does while the previous firing's run is still going."""

    async def two_firings(
        self, engine: culm.Engine, clock: Clock, policy: Overlap, n: int = 2
    ) -> str:
        spec = ScheduleSpec(agent="waiter", every=60, overlap=policy)
        schedule = await engine.create_schedule(spec)
        for _ in range(n):
            await fire(engine, clock, 60)
        return schedule.id

    async def test_skip(self, engine: culm.Engine, clock: Clock) -> None:
        sid = await self.two_firings(engine, clock, Overlap.SKIP)
        assert await ledger(engine, sid) == [
            ("started", 60, 1, False),
            ("skipped_overlap", 120, 1, False),
        ]
        [run] = await runs_of(engine, sid)
        assert run.id in ((await engine.schedule_firings(sid))[0].detail or "")
        assert (await engine.get_schedule(sid)).counts.skipped_overlap == 1

    async def test_allow(self, engine: culm.Engine, clock: Clock) -> None:
        sid = await self.two_firings(engine, clock, Overlap.ALLOW)
        assert [row[0] for row in await ledger(engine, sid)] == ["started", "started"]
        runs = await runs_of(engine, sid)
        assert [r.status for r in runs] == [RunStatus.RUNNING, RunStatus.RUNNING]

    async def test_enqueue_keeps_at_most_one_waiting(
        self, engine: culm.Engine, clock: Clock
    ) -> None:
        sid = await self.two_firings(engine, clock, Overlap.ENQUEUE, n=3)
        assert [row[0] for row in await ledger(engine, sid)] == [
            "started",
            "waiting",
            "skipped_overlap",
        ]
        [first] = await runs_of(engine, sid)
        await engine.cancel(first.id)
        await engine.wait(first.id, timeout=10)
        await engine.scheduler.tick()
        assert [row[0] for row in await ledger(engine, sid)] == [
            "started",
            "started",
            "skipped_overlap",
        ]
        runs = await runs_of(engine, sid)
        assert [r.status for r in runs] == [RunStatus.CANCELLED, RunStatus.RUNNING]
        waited = (await engine.schedule_firings(sid))[1]
        assert (waited.scheduled_at, waited.fired_at, waited.run_id) == (
            T0 + 120,
            clock(),
            runs[1].id,
        )

    async def test_cancel_previous(self, engine: culm.Engine, clock: Clock) -> None:
        sid = await self.two_firings(engine, clock, Overlap.CANCEL_PREVIOUS)
        first, second = await runs_of(engine, sid)
        ended = await engine.wait(first.id, timeout=10)
        assert ended.status is RunStatus.CANCELLED
        assert ended.state.error is not None and sid in ended.state.error
        assert (await engine.get_run(second.id)).status is RunStatus.RUNNING

    async def test_on_a_shared_session_allowed_runs_wait_their_turn(
        self, engine: culm.Engine, clock: Clock
    ) -> None:
        spec = ScheduleSpec(
            agent="waiter", every=60, overlap=Overlap.ALLOW, session=SessionMode.SHARED
        )
        schedule = await engine.create_schedule(spec)
        await fire(engine, clock, 60)
        await fire(engine, clock, 60)
        runs = await runs_of(engine, schedule.id)
        assert [r.status for r in runs] == [RunStatus.RUNNING, RunStatus.PENDING]


class TestMisfire:
    """Fire times that passed while nothing ticked: never a burst by accident."""

    async def after_downtime(
        self, engine: culm.Engine, clock: Clock, downtime: float, **spec: Any
    ) -> str:
        schedule = await engine.create_schedule(
            ScheduleSpec(agent="echo", input="x", every=60, **spec)
        )
        await fire(engine, clock, downtime)
        return schedule.id

    async def test_run_once_by_default(self, engine: culm.Engine, clock: Clock) -> None:
        sid = await self.after_downtime(engine, clock, 3600 + 5)
        assert await ledger(engine, sid) == [("missed", 60, 59, False), ("started", 3600, 1, False)]
        schedule = await engine.get_schedule(sid)
        assert schedule.next_fire_at == T0 + 3660
        assert (schedule.counts.missed, schedule.counts.started) == (59, 1)
        [missed] = [f for f in await engine.schedule_firings(sid) if f.outcome.value == "missed"]
        assert missed.detail is not None and "59 fire time(s)" in missed.detail

    async def test_skip_runs_nothing_late(self, engine: culm.Engine, clock: Clock) -> None:
        sid = await self.after_downtime(
            engine, clock, 3600 + 30, misfire=Misfire.SKIP, misfire_grace=10
        )
        assert await ledger(engine, sid) == [("missed", 60, 60, False)]
        assert await runs_of(engine, sid) == []

    async def test_skip_still_runs_what_is_on_time(self, engine: culm.Engine, clock: Clock) -> None:
        sid = await self.after_downtime(engine, clock, 3600 + 5, misfire=Misfire.SKIP)
        assert await ledger(engine, sid) == [("missed", 60, 59, False), ("started", 3600, 1, False)]

    async def test_catch_up_is_bounded_by_count_and_lateness(
        self, engine: culm.Engine, clock: Clock
    ) -> None:
        sid = await self.after_downtime(
            engine,
            clock,
            3600 + 30,
            misfire=Misfire.CATCH_UP,
            max_catch_up=3,
            max_lateness=300,
            misfire_grace=10,
            overlap=Overlap.ALLOW,
        )
        assert await ledger(engine, sid) == [
            ("missed", 60, 57, False),
            ("started", 3480, 1, False),
            ("started", 3540, 1, False),
            ("started", 3600, 1, False),
        ]

    async def test_a_month_of_downtime_costs_one_run_and_one_row(
        self, engine: culm.Engine, clock: Clock
    ) -> None:
        sid = await self.after_downtime(engine, clock, 30 * 86400 + 1)
        rows = await ledger(engine, sid)
        assert [(r[0], r[2] >= 10_000) for r in rows] == [("missed", True), ("started", False)]
        assert rows[-1][1] == 30 * 86400
        assert len(await runs_of(engine, sid)) == 1


class TestManage:
    """Pause, resume, trigger, update and delete; each leaves the cadence where it says."""

    async def test_pause_then_resume_fires_from_now_on(
        self, engine: culm.Engine, clock: Clock
    ) -> None:
        schedule = await engine.create_schedule(ScheduleSpec(agent="echo", input="x", every=60))
        assert (await engine.pause_schedule(schedule.id)).paused
        await fire(engine, clock, 3600 + 5)
        assert await ledger(engine, schedule.id) == []
        resumed = await engine.resume_schedule(schedule.id)
        assert (resumed.paused, resumed.next_fire_at) == (False, T0 + 3660)
        await fire(engine, clock, 55)
        assert await ledger(engine, schedule.id) == [("started", 3660, 1, False)]

    async def test_trigger_now_does_not_move_the_cadence(
        self, engine: culm.Engine, clock: Clock
    ) -> None:
        schedule = await engine.create_schedule(ScheduleSpec(agent="echo", input="x", every=60))
        await engine.pause_schedule(schedule.id)
        clock.advance(10)
        firing = await engine.trigger_schedule(schedule.id)
        assert (firing.outcome, firing.manual, firing.scheduled_at) == (STARTED, True, T0 + 10)
        assert firing.run_id is not None
        run = await engine.wait(firing.run_id, timeout=10)
        assert (run.trigger, run.schedule_id) == (culm.Trigger.SCHEDULE, schedule.id)
        after = await engine.get_schedule(schedule.id)
        assert (after.paused, after.next_fire_at) == (True, T0 + 60)

    async def test_trigger_applies_the_overlap_policy(
        self, engine: culm.Engine, clock: Clock
    ) -> None:
        schedule = await engine.create_schedule(ScheduleSpec(agent="waiter", every=600))
        first = await engine.trigger_schedule(schedule.id)
        second = await engine.trigger_schedule(schedule.id)
        assert (first.outcome, second.outcome) == (STARTED, FiringOutcome.SKIPPED_OVERLAP)

    async def test_update_of_cadence_moves_the_next_fire_time(
        self, engine: culm.Engine, clock: Clock
    ) -> None:
        schedule = await engine.create_schedule(ScheduleSpec(agent="echo", input="x", every=60))
        clock.advance(30)
        same = await engine.update_schedule(schedule.id, input="y", name="renamed")
        assert (same.next_fire_at, same.spec.input, same.spec.name) == (T0 + 60, "y", "renamed")
        moved = await engine.update_schedule(schedule.id, cron="0 12 * * *")
        assert (moved.spec.cron, moved.spec.every, moved.next_fire_at) == (
            "0 12 * * *",
            None,
            T0 + 4 * 3600,
        )

    async def test_a_bad_update_changes_nothing(self, engine: culm.Engine, clock: Clock) -> None:
        schedule = await engine.create_schedule(ScheduleSpec(agent="echo", input="x", every=60))
        for changes in ({"cron": "nope"}, {"timezone": "Nowhere/City"}, {"colour": "red"}):
            with pytest.raises(culm.InvalidInput):
                await engine.update_schedule(schedule.id, **changes)
        with pytest.raises(culm.NotFound):
            await engine.update_schedule(schedule.id, agent="ghost")
        after = await engine.get_schedule(schedule.id)
        assert (after.spec, after.version) == (schedule.spec, schedule.version)

    async def test_delete_takes_the_ledger_and_leaves_the_runs(
        self, engine: culm.Engine, clock: Clock
    ) -> None:
        schedule = await engine.create_schedule(ScheduleSpec(agent="echo", input="x", every=60))
        await fire(engine, clock, 60)
        await finish(engine, schedule.id)
        await engine.delete_schedule(schedule.id)
        for call in (engine.get_schedule, engine.schedule_firings, engine.trigger_schedule):
            with pytest.raises(culm.NotFound):
                await call(schedule.id)
        assert len(await runs_of(engine, schedule.id)) == 1
        await fire(engine, clock, 60)
        assert len(await runs_of(engine, schedule.id)) == 1

    async def test_the_background_loop_fires_on_its_own(
        self, engine: culm.Engine, clock: Clock
    ) -> None:
        schedule = await engine.create_schedule(ScheduleSpec(agent="echo", input="x", every=60))
        clock.advance(60)
        engine.scheduler.wake()

        async def fired() -> bool:
            return len(await runs_of(engine, schedule.id)) == 1

        await eventually(fired)


class TestTenants:
    """A tenant sees only its own schedules; another's id answers NotFound."""

    async def test_scoping(self, engine: culm.Engine, clock: Clock) -> None:
        mine = await engine.create_schedule(
            ScheduleSpec(agent="echo", input="x", every=60), tenant="a"
        )
        await engine.create_schedule(ScheduleSpec(agent="echo", input="x", every=60), tenant="b")
        assert [s.id for s in await engine.list_schedules("a")] == [mine.id]
        calls = (
            engine.get_schedule,
            engine.pause_schedule,
            engine.resume_schedule,
            engine.trigger_schedule,
            engine.schedule_firings,
            engine.delete_schedule,
        )
        for call in calls:
            with pytest.raises(culm.NotFound):
                await call(mine.id, "b")  # type: ignore[operator]
        with pytest.raises(culm.NotFound):
            await engine.update_schedule(mine.id, tenant="b", input="y")
        assert (await engine.get_schedule(mine.id, "a")).tenant == "a"
        await fire(engine, clock, 60)
        [run] = await runs_of(engine, mine.id)
        assert run.tenant == "a"


class TestInvalid:
    """Bad input is one clear error, and nothing is stored."""

    CASES = (
        ({"cron": "61 * * * *"}, culm.InvalidInput, "cron expression"),
        ({"cron": "0 9 * * *", "timezone": "Europe/Pariss"}, culm.InvalidInput, "time zone"),
        ({"every": 60, "start_at": T0 + 100, "end_at": T0 + 50}, culm.InvalidInput, "before"),
        ({"every": 60, "cron": "* * * * *"}, culm.InvalidInput, "exactly one"),
        ({}, culm.InvalidInput, "exactly one"),
        ({"every": 0.5}, culm.InvalidInput, "every must be between 1 and"),
        ({"every": 60, "max_lateness": 0}, culm.InvalidInput, "max_lateness must be between"),
        ({"at": 1e300}, culm.InvalidInput, "between the years"),
        ({"every": "often"}, culm.InvalidInput, "number of seconds"),
        ({"at": T0 - 1}, culm.InvalidInput, "never fire"),
        ({"cron": "0 0 30 2 *"}, culm.InvalidInput, "never fire"),
        ({"every": 60, "overlap": "sometimes"}, culm.InvalidInput, "overlap must be one of"),
        ({"every": 60, "misfire": "panic"}, culm.InvalidInput, "misfire must be one of"),
        ({"every": 60, "max_catch_up": 0}, culm.InvalidInput, "max_catch_up"),
        (
            {"every": 60, "anchor": T0, "session": "shared", "agent": "ghost"},
            culm.NotFound,
            "ghost",
        ),
        ({"every": 60, "input": {"not": "a string"}}, culm.InvalidInput, "invalid input"),
    )

    @pytest.mark.parametrize(("fields", "error", "message"), CASES)
    async def test_rejected(
        self, engine: culm.Engine, fields: dict[str, Any], error: type[Exception], message: str
    ) -> None:
        spec = ScheduleSpec(**{"agent": "echo", "input": "x", "session": "shared", **fields})
        with pytest.raises(error, match=message):
            await engine.create_schedule(spec)
        assert await engine.list_schedules() == []
        assert await engine.list_sessions() == []


def test_firing_dict_shape() -> None:
    firing = Firing("sch_1", T0, T0 + 1, STARTED, run_id="run_1")
    assert firing.to_dict() == {
        "id": 0,
        "schedule_id": "sch_1",
        "scheduled_at": "2030-01-07T08:00:00Z",
        "fired_at": "2030-01-07T08:00:01Z",
        "outcome": "started",
        "run_id": "run_1",
        "run_status": None,
        "manual": False,
        "count": 1,
        "detail": None,
    }
