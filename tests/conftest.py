"""Fixtures shared by every test: engines on a real database, with the test agents.

The database is a SQLite file per test, or, with ``CULM_TEST_DATABASE=postgresql``, a fresh
PostgreSQL schema per test (see ``tests/pg.py``): the engine-level suites run on both.
Tests that reach into SQLite itself ask for ``sqlite_url`` and stay on SQLite.
"""

from __future__ import annotations

import os
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


ON_POSTGRES = os.environ.get("CULM_TEST_DATABASE", "sqlite") == "postgresql"


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """A SQLite file for this test, whatever database the suite runs on."""
    return f"sqlite:///{tmp_path / 'culm.db'}"


@pytest.fixture
async def db_url(sqlite_url: str) -> AsyncIterator[str]:
    """This test's database: a SQLite file, or a fresh PostgreSQL schema."""
    if not ON_POSTGRES:
        yield sqlite_url
        return
    from tests.pg import pg_schema

    async with pg_schema() as url:
        yield url


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
