"""Engines standing for the processes of one installation (the ``engines`` fixture), and
waiting on a condition across them."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import culm
from tests.agents import app

Engines = Callable[..., AbstractAsyncContextManager[culm.Engine]]
"""``engines(agents=tests.agents.app, **settings)``: an engine of its own, as a process."""


def engine_factory(pg_url: str, bus_url: str) -> Engines:
    """Each engine opened by the result has its own connections and bus connection."""

    @asynccontextmanager
    async def make(agents: culm.App = app, **overrides: Any) -> AsyncIterator[culm.Engine]:
        settings = culm.Settings(
            database_url=pg_url,
            **{"bus_url": bus_url, "cancel_grace": 1.0, "idle_poll_seconds": 30, **overrides},
        )
        async with culm.Engine(agents, settings) as engine:
            yield engine

    return make


async def until(condition: Callable[[], Any], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not await condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)
