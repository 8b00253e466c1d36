"""A separate process that opens an engine on a given database at a given time.

Run as ``python -m tests.schedule.proc COMMAND JSON``; prints one JSON line. Commands:

- ``create``: create a schedule at ``now`` from ``spec``, fire its first fire time, wait
  for that run to end, exit.
- ``race``: wait until ``parties`` processes are ready (files in ``barrier``), then tick
  every ``step`` seconds from ``start`` to ``stop``, exit.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

import culm
from culm.models import ScheduleSpec
from tests.agents import app


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def engine(args: dict[str, Any], clock: Clock) -> culm.Engine:
    return culm.Engine(app, culm.Settings(database_url=args["db"], cancel_grace=1.0), clock=clock)


async def create(args: dict[str, Any]) -> dict[str, Any]:
    clock = Clock(args["now"])
    async with engine(args, clock) as e:
        schedule = await e.create_schedule(ScheduleSpec(**args["spec"]))
        assert schedule.next_fire_at is not None
        clock.now = schedule.next_fire_at
        await e.scheduler.tick()
        for run in await e.list_runs(culm.RunFilter(schedule_id=schedule.id)):
            await e.wait(run.id, timeout=10)
    return {"id": schedule.id}


async def race(args: dict[str, Any]) -> dict[str, Any]:
    clock = Clock(args["start"])
    claims = {"won": 0, "lost": 0}
    async with engine(args, clock) as e:
        claim = e.store.claim_firings

        async def counted(*a: Any, **kw: Any) -> bool:
            won = await claim(*a, **kw)
            claims["won" if won else "lost"] += 1
            return won

        e.store.claim_firings = counted  # type: ignore[method-assign]
        barrier = Path(args["barrier"])
        (barrier / args["name"]).touch()
        deadline = time.monotonic() + 30
        while len(await asyncio.to_thread(lambda: list(barrier.iterdir()))) < args["parties"]:
            if time.monotonic() > deadline:
                raise TimeoutError("the other processes never got ready")
            await asyncio.sleep(0.005)
        t = args["start"]
        while t <= args["stop"]:
            clock.now = t
            await e.scheduler.tick()
            t += args["step"]
    return {"worker": e.worker_id, **claims}


COMMANDS = {"create": create, "race": race}

if __name__ == "__main__":
    command, payload = sys.argv[1], json.loads(sys.argv[2])
    print(json.dumps(asyncio.run(COMMANDS[command](payload))))
