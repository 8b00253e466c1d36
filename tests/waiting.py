"""Waiting on what a run does, by following its stream, with a deadline."""

from __future__ import annotations

import asyncio
from contextlib import aclosing

import culm


async def until_event(
    engine: culm.Engine,
    run_id: str,
    type: str | None = None,
    seq: int = 0,
    timeout: float = 10.0,
) -> culm.Event:
    """Return the first event of the run of ``type`` (any type if None) with seq >= ``seq``."""
    async with asyncio.timeout(timeout), aclosing(engine.subscribe(run_id)) as stream:
        async for event in stream:
            if (type is None or event.type == type) and event.seq >= seq:
                return event
    raise AssertionError(f"run {run_id} ended without {type or 'event'} at seq >= {seq}")


async def until_running(engine: culm.Engine, run_id: str) -> None:
    await until_event(engine, run_id, "run.started")
