"""Followers in one process see what another process commits, at once through the bus,
and (later, but whole) through the log when a notice is lost."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import pytest

import culm
from tests.agents import app

Engines = Callable[..., AbstractAsyncContextManager[culm.Engine]]


@pytest.fixture
def engines(pg_url: str, bus_url: str) -> Engines:
    @asynccontextmanager
    async def make(**overrides: Any) -> AsyncIterator[culm.Engine]:
        settings = culm.Settings(
            database_url=pg_url, **{"bus_url": bus_url, "cancel_grace": 1.0, **overrides}
        )
        async with culm.Engine(app, settings) as engine:
            yield engine

    return make


async def follow_all(engine: culm.Engine, run_id: str) -> list[culm.Event]:
    return [event async for event in engine.subscribe(run_id)]


class TestFollowingAcrossProcesses:
    async def test_a_follower_elsewhere_gets_every_event_through_the_bus(
        self, engines: Engines
    ) -> None:
        # the log's periodic look is an hour away: only the bus can explain a prompt stream
        async with engines(idle_poll_seconds=3600) as a, engines(idle_poll_seconds=3600) as b:
            run = await a.start_run("ticker", {"n": 200, "delay": 0.002})
            started = time.monotonic()
            seen = await follow_all(b, run.id)
            assert time.monotonic() - started < 30
            assert [e.seq for e in seen] == list(range(1, len(seen) + 1))
            assert seen[-1].type == "run.completed"
            assert seen == await a.events(run.id)

    async def test_a_lost_notice_only_delays(self, engines: Engines, pg_url: str) -> None:
        deaf = culm.Settings(
            database_url=pg_url, bus_url="local", idle_poll_seconds=0.3, cancel_grace=1.0
        )
        async with engines(idle_poll_seconds=3600) as a, culm.Engine(app, deaf) as b:
            run = await a.start_run("ticker", {"n": 100, "delay": 0.002})
            seen = await follow_all(b, run.id)
            assert [e.seq for e in seen] == list(range(1, len(seen) + 1))
            assert seen[-1].type == "run.completed"
