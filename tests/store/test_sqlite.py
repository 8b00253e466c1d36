"""The SQLite backend passes the store contract; its schema comes from its migrations."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from culm.config import Settings
from culm.errors import InvalidInput
from culm.store import Store, open_store
from culm.store.schema import metadata
from tests.store.claims_contract import ClaimContract
from tests.store.contract import FencingContract, StoreContract
from tests.store.resume_contract import ResumeContract


@pytest.fixture
async def store(sqlite_url: str) -> AsyncIterator[Store]:
    s = open_store(Settings(database_url=sqlite_url))
    await s.open()
    yield s
    await s.close()


@pytest.fixture
async def other_store(sqlite_url: str) -> AsyncIterator[Store]:
    """A second store on the same database, as another process opens it."""
    s = open_store(Settings(database_url=sqlite_url))
    await s.open()
    yield s
    await s.close()


class TestSqliteStore(StoreContract, FencingContract, ClaimContract, ResumeContract):
    pass


async def test_reopening_keeps_data_and_schema(sqlite_url: str) -> None:
    for _ in range(2):
        s = open_store(Settings(database_url=sqlite_url))
        await s.open()
        await s.close()


async def test_schema_module_matches_the_migrations(store: Store, tmp_path: Path) -> None:
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'culm.db'}")
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), metadata)
    engine.dispose()
    assert diff == []


async def test_in_memory_sqlite_is_refused() -> None:
    """Two engines (writer, readers) must see one database: a file, not memory."""
    store = open_store(Settings(database_url="sqlite://"))
    with pytest.raises(InvalidInput, match="needs a SQLite file"):
        await store.open()


async def test_writes_go_on_when_the_pool_replaces_the_writers_connection(store: Store) -> None:
    """The log's commits and the starts run straight on the writer's connection; one the
    pool invalidates is forgotten, and the next it opens is taken up."""
    from culm.store.sql import SqlStore
    from tests.store.contract import follow_up, pending, session

    assert isinstance(store, SqlStore) and store._writer is not None
    assert store._direct is not None
    first = store._direct.driver
    assert first is not None
    s = session()
    run, queued = pending(s)
    created = await store.create_run(
        run, queued, reject_if_busy=False, owner="w1", lease_seconds=30, new_session=s
    )
    async with store._writer.connect() as conn:
        await conn.invalidate()
    assert store._direct.driver is None
    event, state = follow_up(run, created.run.state, "bench.hello", {})
    assert await store.write_batch([event], {run.id: state}, {}) == set()  # through SQLAlchemy
    second = store._direct.driver
    assert second is not None and second is not first
    event2, state2 = follow_up(run, state, "bench.again", {})
    assert await store.write_batch([event2], {run.id: state2}, {}) == set()  # straight on it
    types = [e.type for e in await store.read_events(run.id)]
    assert types == ["run.queued", "bench.hello", "bench.again"]
