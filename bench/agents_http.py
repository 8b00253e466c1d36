"""Agents for bench_http.py: each isolates one cost of the HTTP path."""

from __future__ import annotations

import time

import culm

app = culm.App()


@app.agent
async def noop(run: culm.RunContext, input: None = None) -> None:
    """Returns at once: what a run costs when the agent costs nothing."""


@app.agent
async def burst(run: culm.RunContext, input: int) -> int:
    """Emits ``input`` small events as fast as it can."""
    for i in range(input):
        await run.emit("bench.tick", {"i": i})
    return input


@app.agent
async def paced(run: culm.RunContext, input: dict[str, float]) -> int:
    """Emits ``n`` events at ``rate`` per second, each stamped with its emit time.

    Paced against the clock rather than by sleeping an interval after each event: the
    event loop's timers are only as fine as a millisecond."""
    n = int(input["n"])
    start = time.monotonic()
    for i in range(n):
        late = start + i / input["rate"] - time.monotonic()
        if late > 0:
            await run.sleep(late)
        await run.emit("bench.tick", {"i": i, "t": time.time()})
    return n


@app.agent
async def waiter(run: culm.RunContext, input: None = None) -> None:
    """Waits at a safe point until cancelled."""
    await run.sleep(3600)


@app.agent
async def trivial(run: culm.RunContext, input: None = None) -> None:
    """One agent event, then done: the trivial run of the HTTP workloads."""
    await run.emit("bench.hello", {})
