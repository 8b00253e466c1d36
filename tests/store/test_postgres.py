"""The PostgreSQL backend passes the store contract; its schema comes from its migrations."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from culm.config import Settings
from culm.store import Store, open_store
from culm.store.schema import metadata
from tests.pg import pg_schema
from tests.store.claims_contract import ClaimContract
from tests.store.contract import FencingContract, StoreContract
from tests.store.resume_contract import ResumeContract


@pytest.fixture
async def pg_url() -> AsyncIterator[str]:
    async with pg_schema() as url:
        yield url


@pytest.fixture
async def store(pg_url: str) -> AsyncIterator[Store]:
    s = open_store(Settings(database_url=pg_url))
    await s.open()
    yield s
    await s.close()


@pytest.fixture
async def other_store(pg_url: str) -> AsyncIterator[Store]:
    """A second store on the same database, as another process opens it."""
    s = open_store(Settings(database_url=pg_url))
    await s.open()
    yield s
    await s.close()


class TestPostgresStore(StoreContract, FencingContract, ClaimContract, ResumeContract):
    pass


async def test_processes_opening_at_once_migrate_once(pg_url: str) -> None:
    stores = [open_store(Settings(database_url=pg_url)) for _ in range(4)]
    await asyncio.gather(*(s.open() for s in stores))
    for s in stores:
        await s.close()


async def test_schema_module_matches_the_migrations(store: Store, pg_url: str) -> None:
    def compare(conn: sa.Connection) -> list[object]:
        return list(compare_metadata(MigrationContext.configure(conn), metadata))

    writer = store._writer  # type: ignore[attr-defined]
    async with writer.connect() as conn:
        diff = await conn.run_sync(compare)
    assert diff == []
