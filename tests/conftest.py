"""Fixtures shared by every test: engines on a real SQLite file, with the test agents."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

import culm
import culm.testing
from tests.agents import app as test_app

# No test reaches a real model by accident: those that mean to opt in with
# culm.testing.allow_model_requests() (the fake OpenAI server's fixture does).
culm.testing.block_model_requests()

EngineFactory = Callable[..., AbstractAsyncContextManager[culm.Engine]]


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'culm.db'}"


@pytest.fixture
def make_engine(db_url: str) -> EngineFactory:
    """Open an engine on this test's database; settings may be overridden by keyword."""

    @asynccontextmanager
    async def factory(app: culm.App = test_app, **overrides: Any) -> AsyncIterator[culm.Engine]:
        settings = culm.Settings(database_url=db_url, **{"cancel_grace": 1.0, **overrides})
        async with culm.Engine(app, settings) as engine:
            yield engine

    return factory


@pytest.fixture
async def engine(make_engine: EngineFactory) -> AsyncIterator[culm.Engine]:
    async with make_engine() as engine:
        yield engine
