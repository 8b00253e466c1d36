"""Engines running the spawning agents, and a session stream read to a condition."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import aclosing

import pytest

import culm
from tests.conftest import EngineFactory
from tests.spawn.agents import app


@pytest.fixture
async def engine(make_engine: EngineFactory) -> AsyncIterator[culm.Engine]:
    async with make_engine(app) as engine:
        yield engine


async def read_tree(
    engine: culm.Engine,
    session_id: str,
    until: Callable[[list[culm.Event]], bool],
    timeout: float = 30.0,
) -> list[culm.Event]:
    """The session stream's events (its spawned runs' included) until ``until`` holds."""
    seen: list[culm.Event] = []
    async with asyncio.timeout(timeout), aclosing(engine.subscribe_session(session_id)) as stream:
        async for batch in stream:
            seen.extend(batch)
            if until(seen):
                return seen
    raise AssertionError("a session stream never ends by itself")


def ended(run_id: str) -> Callable[[list[culm.Event]], bool]:
    """Until the run's terminal event (its children's ends come before it)."""
    return lambda seen: any(e.run_id == run_id and e.terminal for e in seen)


def started(count: int) -> Callable[[list[culm.Event]], bool]:
    """Until ``count`` runs of the tree have started."""
    return lambda seen: sum(e.type == "run.started" for e in seen) >= count


def of_run(events: list[culm.Event], run_id: str) -> list[culm.Event]:
    return [e for e in events if e.run_id == run_id]
