"""A process frozen inside a transaction does not hold the others' writes for long.

PostgreSQL ends a session that idles inside a transaction past
``pg_idle_transaction_seconds``: the log's lock it held is released, the other processes
write on, and the frozen process, once it runs again, finds its transaction gone (an error
it retries like any lost connection) and writes on with a new connection.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest
import sqlalchemy as sa

from culm.config import Settings
from culm.errors import Unavailable
from culm.ids import new_id
from culm.models import Session
from culm.store import Store, open_store
from culm.store.sql import SqlStore
from tests.pg import pg_schema


@pytest.fixture
async def pg_url() -> AsyncIterator[str]:
    async with pg_schema() as url:
        yield url


async def _opened(url: str, idle: float) -> SqlStore:
    store = open_store(Settings(database_url=url, pg_idle_transaction_seconds=idle))
    assert isinstance(store, SqlStore)
    await store.open()
    return store


async def _write_appending(store: Store) -> None:
    """A session created, then a write transaction that takes the log's lock."""
    await store.create_session(Session(id=new_id("ses"), tenant="t", created_at=time.time()))
    async with store._write() as conn:  # type: ignore[attr-defined]
        await conn.execute(sa.select(1))


async def _frozen(store: SqlStore, release: asyncio.Event) -> asyncio.Future[None]:
    """A transaction of ``store`` that takes the log's lock, then sends nothing until
    ``release`` (idle in transaction, as in a frozen process); returned once it holds it."""
    held = asyncio.Event()

    async def transaction() -> None:
        async with store._write() as conn:
            held.set()
            await release.wait()
            await conn.execute(sa.select(1))

    stuck = asyncio.ensure_future(transaction())
    await held.wait()
    return stuck


async def test_a_frozen_transaction_releases_the_log_lock(pg_url: str) -> None:
    frozen, other = await _opened(pg_url, 0.5), await _opened(pg_url, 0.5)
    release = asyncio.Event()
    stuck = await _frozen(frozen, release)
    try:
        began = time.monotonic()
        async with asyncio.timeout(10):
            await _write_appending(other)
        waited = time.monotonic() - began
        assert 0.3 < waited < 5, f"the other process waited {waited:.1f} s for the lock"
        release.set()
        with pytest.raises((Unavailable, sa.exc.DBAPIError)):
            await stuck
        await _write_appending(frozen)  # a new connection: it writes on
    finally:
        release.set()
        await asyncio.gather(stuck, return_exceptions=True)
        await frozen.close()
        await other.close()


async def test_without_a_limit_the_lock_is_held(pg_url: str) -> None:
    frozen, other = await _opened(pg_url, 0), await _opened(pg_url, 0)
    release = asyncio.Event()
    stuck = await _frozen(frozen, release)
    try:
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(1.5):
                await _write_appending(other)
        release.set()
        await stuck
    finally:
        release.set()
        await asyncio.gather(stuck, return_exceptions=True)
        await frozen.close()
        await other.close()
