"""A process that runs resumable counters until it is killed, printing each run's id once
it is under way: ``python -m tests.hardening.resumable_worker DB_URL RUNS``.

Used by test_ownership.py; its ``app`` is also what the test's own engine resumes with."""

from __future__ import annotations

import asyncio
import sys

import culm

app = culm.App()


@app.agent(resume=True)
async def counter(run: culm.RunContext, input: None = None) -> None:
    """Emits ``tick {i}`` with i = 0, 1, 2... until cancelled: the same ticks each time
    it runs, so a resumed run replays the ones in its log and goes on from there."""
    i = 0
    while True:
        await run.emit("tick", {"i": i})
        i += 1
        await run.sleep(0.01)


async def main(url: str, runs: int) -> None:
    async with culm.Engine(app, culm.Settings(database_url=url)) as engine:
        started = [await engine.start_run("counter") for _ in range(runs)]
        for run in started:
            async for event in engine.subscribe(run.id):
                if event.type == "tick" and event.data["i"] == 20:
                    break
            print(run.id, flush=True)
        await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2])))
