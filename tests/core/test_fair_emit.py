"""A run emitting as fast as it can does not hold the process: everything else still moves."""

from __future__ import annotations

import asyncio
from itertools import pairwise

import culm
from culm.runtime.log import YIELD_BYTES, YIELD_EVENTS
from tests.conftest import EngineFactory

app = culm.App()
TICKS: list[int] = []
"""How often the other task had run, read before each emit of the burst."""
OTHER = [0]


@app.agent
async def burst(run: culm.RunContext, input: dict[str, int]) -> int:
    text = "x" * input["size"]
    for i in range(input["n"]):
        TICKS.append(OTHER[0])
        await run.emit("test.tick", {"i": i, "text": text})
    return input["n"]


async def _burst_beside_another_task(engine: culm.Engine, n: int, size: int) -> list[int]:
    """The other task's count of its turns as each event was emitted."""
    TICKS.clear()
    OTHER[0] = 0

    async def other() -> None:
        while True:
            OTHER[0] += 1
            await asyncio.sleep(0)

    ticker = asyncio.create_task(other())
    try:
        run = await engine.start_run("burst", {"n": n, "size": size})
        done = await engine.wait(run.id, timeout=60)
    finally:
        ticker.cancel()
    assert done.status is culm.RunStatus.COMPLETED
    return TICKS


def _longest_hold(ticks: list[int]) -> int:
    """The most events emitted in a row while the other task did not run."""
    longest = held = 0
    for before, after in pairwise(ticks):
        held = held + 1 if after == before else 0
        longest = max(longest, held)
    return longest + 1


@app.agent
async def endless(run: culm.RunContext, input: int) -> int:
    for i in range(input):
        await run.emit("test.tick", {"i": i})
    return input


class TestFairEmit:
    async def test_other_tasks_run_between_a_bursts_events(
        self, make_engine: EngineFactory
    ) -> None:
        # below the queue's limit (max_batch), where nothing else made the burst wait
        async with make_engine(app, max_batch=100_000) as engine:
            ticks = await _burst_beside_another_task(engine, 4_000, 1)
        assert len(ticks) == 4_000
        assert _longest_hold(ticks) <= YIELD_EVENTS

    async def test_large_events_let_others_run_sooner(self, make_engine: EngineFactory) -> None:
        size = 64 * 1024
        async with make_engine(app, max_batch=100_000) as engine:
            ticks = await _burst_beside_another_task(engine, 100, size)
        assert _longest_hold(ticks) <= YIELD_BYTES // size + 1 < YIELD_EVENTS

    async def test_a_cancel_stops_a_burst_early(self, make_engine: EngineFactory) -> None:
        """The cancel is taken while the burst goes on, and its next emit stops it."""
        async with make_engine(app, max_batch=1_000_000) as engine:
            run = await engine.start_run("endless", 200_000)
            # the run's task is ahead of this one: the cancel is asked at the burst's first turn
            canceller = asyncio.create_task(engine.cancel(run.id))
            done = await engine.wait(run.id, timeout=60)
            await canceller
        assert done.status is culm.RunStatus.CANCELLED
        # a few hundred on SQLite, a few thousand on PostgreSQL (the cancel's reads take
        # the burst's turns); 96,337 when the burst held the loop until the queue was full
        assert done.state.last_seq < 50_000
