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


@pytest.fixture
async def store(sqlite_url: str) -> AsyncIterator[Store]:
    s = open_store(Settings(database_url=sqlite_url))
    await s.open()
    yield s
    await s.close()


class TestSqliteStore(StoreContract, FencingContract, ClaimContract):
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
