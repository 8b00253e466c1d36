"""A process that runs agents and prints every event it delivers, until it is killed.

Used by test_crash.py: ``python -m tests.core.crash_worker DB_URL RUNS``.
"""

from __future__ import annotations

import asyncio
import sys

import culm
from tests.agents import app


async def follow(engine: culm.Engine, run_id: str) -> None:
    async for event in engine.subscribe(run_id):
        print(f"{event.run_id} {event.seq} {event.type}", flush=True)


async def main(url: str, runs: int) -> None:
    async with culm.Engine(app, culm.Settings(database_url=url)) as engine:
        started = [
            await engine.start_run("ticker", {"n": 100_000, "delay": 0.002}) for _ in range(runs)
        ]
        queued = await engine.start_run(
            "echo", "never", session_id=started[0].session_id, if_busy=culm.BusyPolicy.ENQUEUE
        )
        print(f"queued {queued.id}", flush=True)
        await asyncio.gather(*(follow(engine, r.id) for r in started))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2])))
