"""A fresh PostgreSQL schema per test, on the server CI runs (``.ci/run`` starts it).

``CULM_TEST_PG_URL`` names the database (default: the local one, trust auth, ``test``).
Each test gets its own schema, named in the URL it is handed (``?search_path=...``), and
the schema is dropped afterwards, so tests never see each other's rows.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

PG_URL = os.environ.get("CULM_TEST_PG_URL", "postgresql://127.0.0.1:5432/test")


@asynccontextmanager
async def pg_schema(base: str = PG_URL) -> AsyncIterator[str]:
    """A URL whose connections live in a new, empty schema; dropped on exit."""
    import asyncpg

    name = f"culm_t_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(base)
    try:
        await admin.execute(f'CREATE SCHEMA "{name}"')
        sep = "&" if "?" in base else "?"
        yield f"{base}{sep}search_path={name}"
    finally:
        await admin.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')
        await admin.close()
