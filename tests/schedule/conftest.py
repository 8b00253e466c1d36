"""Fixtures for schedule tests: a clock the test moves, and engines that read it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import pytest

import culm
from culm.schedule.cadence import utc
from tests.agents import app as test_app

T0 = utc("2030-01-07T08:00:00")
"""A Monday, 08:00 UTC: where every test's clock starts."""


class Clock:
    """Time that moves only when the test says so."""

    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> float:
        self.now += seconds
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


ClockedEngine = Callable[..., AbstractAsyncContextManager[culm.Engine]]


@pytest.fixture
def make_clocked(db_url: str, clock: Clock) -> ClockedEngine:
    """Open an engine on this test's database that reads ``clock``."""

    @asynccontextmanager
    async def factory(**overrides: Any) -> AsyncIterator[culm.Engine]:
        settings = culm.Settings(database_url=db_url, **{"cancel_grace": 1.0, **overrides})
        async with culm.Engine(test_app, settings, clock=clock) as engine:
            yield engine

    return factory


@pytest.fixture
async def engine(make_clocked: ClockedEngine) -> AsyncIterator[culm.Engine]:
    async with make_clocked() as engine:
        yield engine


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 10.0) -> None:
    """Wait until ``check()`` is true, failing after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        await asyncio.sleep(0.01)
