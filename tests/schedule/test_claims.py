"""The store's side of "at most once": claims compare and set, ledger rows are unique per
fire time, outcomes resolve once, and a claim whose process died is finished by another."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator

import pytest

import culm
from culm.models import Firing, FiringOutcome, ScheduleSpec
from tests.schedule.conftest import T0, Clock, ClockedEngine

CLAIMED = FiringOutcome.CLAIMED
DEAD = f"{socket.gethostname()}:999999999:1:deadbeef"  # a pid that cannot be running


@pytest.fixture
async def engine(make_clocked: ClockedEngine) -> AsyncIterator[culm.Engine]:
    """An engine whose scheduler ticks only when a test says so: these tests set up
    ledger states by hand, which a background tick must not resolve halfway."""
    async with make_clocked(scheduler=False) as engine:
        yield engine


def claimed(schedule_id: str, at: float, by: str = DEAD) -> Firing:
    return Firing(schedule_id, at, at, CLAIMED, claimed_by=by)


class TestClaim:
    """Only one claim of a fire time succeeds, and a failed claim writes nothing."""

    async def test_a_stale_claim_loses(self, engine: culm.Engine) -> None:
        schedule = await engine.create_schedule(ScheduleSpec(agent="echo", input="x", every=60))
        stale = await engine.store.get_schedule(schedule.id)
        assert await engine.store.claim_firings(schedule, T0 + 120, [claimed(schedule.id, T0 + 60)])
        assert not await engine.store.claim_firings(stale, T0 + 120, [claimed(stale.id, T0 + 60)])
        assert len(await engine.schedule_firings(schedule.id)) == 1

    async def test_a_fire_time_already_in_the_ledger_rolls_the_claim_back(
        self, engine: culm.Engine
    ) -> None:
        schedule = await engine.create_schedule(ScheduleSpec(agent="echo", input="x", every=60))
        await engine.store.add_firing(claimed(schedule.id, T0 + 60))
        fresh = await engine.store.get_schedule(schedule.id)
        assert not await engine.store.claim_firings(fresh, T0 + 120, [claimed(fresh.id, T0 + 60)])
        assert (await engine.get_schedule(schedule.id)).next_fire_at == T0 + 60

    async def test_an_outcome_is_resolved_once(self, engine: culm.Engine) -> None:
        schedule = await engine.create_schedule(ScheduleSpec(agent="echo", input="x", every=60))
        firing = claimed(schedule.id, T0 + 60)
        await engine.store.add_firing(firing)
        firing.outcome, firing.settled = FiringOutcome.SKIPPED_OVERLAP, True
        assert await engine.store.resolve_firing(firing, CLAIMED)
        assert not await engine.store.resolve_firing(firing, CLAIMED)
        assert (await engine.get_schedule(schedule.id)).counts.skipped_overlap == 1


class TestAbandonedClaims:
    """A firing claimed by a process that died before starting its run is finished by the
    next scheduler: started if still on time, missed if not, never started twice."""

    async def test_on_time_it_starts(self, engine: culm.Engine, clock: Clock) -> None:
        schedule = await engine.create_schedule(ScheduleSpec(agent="echo", input="x", every=60))
        firing = claimed(schedule.id, T0 + 60)
        await engine.store.add_firing(firing)
        await engine.scheduler.tick(clock.advance(65))
        [got] = await engine.schedule_firings(schedule.id)
        assert got.outcome is FiringOutcome.STARTED and got.run_id is not None

    async def test_late_it_is_missed(self, engine: culm.Engine, clock: Clock) -> None:
        schedule = await engine.create_schedule(ScheduleSpec(agent="echo", input="x", every=600))
        await engine.store.add_firing(claimed(schedule.id, T0 - 3600))
        await engine.scheduler.tick(clock.advance(1))
        [got] = await engine.schedule_firings(schedule.id)
        assert (got.outcome, got.run_id) == (FiringOutcome.MISSED, None)
        assert got.detail is not None and "stopped before starting" in got.detail

    async def test_a_run_it_managed_to_start_is_kept(
        self, engine: culm.Engine, clock: Clock
    ) -> None:
        schedule = await engine.create_schedule(ScheduleSpec(agent="echo", input="x", every=600))
        firing = claimed(schedule.id, T0 - 3600)
        await engine.store.add_firing(firing)
        run = await engine.start_run(
            "echo",
            "x",
            trigger=culm.Trigger.SCHEDULE,
            schedule_id=schedule.id,
            idempotency_key=f"culm.schedule:{schedule.id}:{firing.id}",
        )
        await engine.scheduler.tick(clock.advance(1))
        [got] = await engine.schedule_firings(schedule.id)
        assert (got.outcome, got.run_id) == (FiringOutcome.STARTED, run.id)

    async def test_a_live_claimer_is_left_alone(self, engine: culm.Engine, clock: Clock) -> None:
        schedule = await engine.create_schedule(ScheduleSpec(agent="echo", input="x", every=600))
        alive = f"{socket.gethostname()}:1:-:cafe"  # no start time: cannot be judged dead
        await engine.store.add_firing(claimed(schedule.id, T0 - 3600, by=alive))
        await engine.scheduler.tick(clock.advance(1))
        [got] = await engine.schedule_firings(schedule.id)
        assert got.outcome is CLAIMED


async def test_a_firing_for_a_deleted_schedule_is_not_found(engine: culm.Engine) -> None:
    with pytest.raises(culm.NotFound):
        await engine.store.add_firing(claimed("sch_gone", T0))
