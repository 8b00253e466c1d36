"""The PostgreSQL backend passes the store contract; its schema comes from its migrations."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from culm.config import Settings
from culm.store import Store, open_store
from culm.store.schema import metadata
from tests.pg import PG_URL, pg_schema
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


async def test_claims_under_a_tenant_limit_wait_only_for_their_own_installation() -> None:
    """Installations in two schemas of one database each have their own claim lock."""
    import asyncpg

    async with pg_schema() as a_url, pg_schema() as b_url:
        a, b = open_store(Settings(database_url=a_url)), open_store(Settings(database_url=b_url))
        await a.open()
        await b.open()
        holder = await asyncpg.connect(PG_URL)
        try:
            held = holder.transaction()
            await held.start()
            key = a._claim_lock  # type: ignore[attr-defined]
            await holder.execute("SELECT pg_advisory_xact_lock($1)", key)

            def claim(store: Store) -> Any:
                return store.claim_pending("w", ["echo"], 1, 30, tenant_limit=1)

            assert await asyncio.wait_for(claim(b), 5) == []  # the other one goes on
            blocked = asyncio.ensure_future(claim(a))
            await asyncio.sleep(0.5)
            assert not blocked.done()  # this one waits for the holder of its lock
            await held.rollback()
            assert await asyncio.wait_for(blocked, 5) == []
        finally:
            await holder.close()
            await a.close()
            await b.close()
