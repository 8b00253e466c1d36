"""Agents the tests run: each shows one behaviour a user relies on."""

from __future__ import annotations

import asyncio
import os
from typing import Any

import culm

app = culm.App()


@app.agent
async def count(run: culm.RunContext, input: int) -> int:
    """Emits ``input`` ticks as fast as it can, then returns how many."""
    for i in range(input):
        await run.emit("test.tick", {"i": i})
    return input


@app.agent
async def ticker(run: culm.RunContext, input: dict[str, float]) -> str:
    """Emits ``n`` ticks, ``delay`` seconds apart, sleeping at safe points."""
    for i in range(int(input["n"])):
        await run.emit("test.tick", {"i": i})
        await run.sleep(input.get("delay", 0.01))
    return "done"


@app.agent
async def waiter(run: culm.RunContext, input: None = None) -> str:
    """Waits at a safe point until cancelled."""
    await run.sleep(3600)
    return "woke"


@app.agent
async def stubborn(run: culm.RunContext, input: None = None) -> str:
    """Ignores cooperative cancellation: sleeps without safe points, swallowing nothing."""
    await asyncio.sleep(3600)
    return "woke"


@app.agent
async def deaf(run: culm.RunContext, input: None = None) -> str:
    """Ignores even the hard cancel: keeps sleeping after the first CancelledErrors."""
    for _ in range(3):
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            continue
    return "gave in"


@app.agent
async def crash(run: culm.RunContext, input: str = "boom") -> None:
    """Raises with ``input`` as the message."""
    await run.emit("test.before_crash", {})
    raise RuntimeError(input)


@app.agent
async def echo(run: culm.RunContext, input: str) -> str:
    """Returns its input."""
    return input


@app.agent
async def steps(run: culm.RunContext, input: int):  # type: ignore[no-untyped-def]
    """An async generator agent: yields ``input`` events."""
    for i in range(input):
        yield ("test.step", {"i": i})


@app.agent(resume=True)
async def stepper(run: culm.RunContext, input: dict[str, Any]) -> int:
    """Takes ``n`` durable steps of ``delay`` seconds each, waits until the file ``gate``
    exists (if given), then takes ``n`` more. Resumed after its process died or handed it
    back, it goes on from the first step not recorded."""

    async def tick(i: int) -> int:
        await run.sleep(input.get("delay", 0.01))
        return i

    n = int(input["n"])
    for i in range(n):
        await run.step(f"tick {i}", tick, i)
    gate = input.get("gate")
    while gate is not None and not await asyncio.to_thread(os.path.exists, gate):
        await run.sleep(0.05)
    for i in range(n, 2 * n):
        await run.step(f"tick {i}", tick, i)
    return 2 * n
