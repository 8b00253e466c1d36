"""PostgreSQL engines (asyncpg): a writer engine and a reader pool on one database.

The URL is handed to asyncpg whole, so everything its libpq-style URLs say holds (several
hosts, ``sslmode``, ``?search_path=...`` and other server settings as query parameters).
Each process writes through one connection under the store's lock, so its own commits keep
their order; the order of commits between processes is kept by the log lock (see
``culm.store.sql``), not by the pool.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

_IDLE = "idle_in_transaction_session_timeout"


def postgres_engines(
    url: str, idle_transaction_seconds: float = 0
) -> tuple[AsyncEngine, AsyncEngine]:
    """A writer engine (one connection) and a reader engine, both on ``url``; with
    ``idle_transaction_seconds`` the server ends a session of theirs that idles that long
    inside a transaction (see ``Settings.pg_idle_transaction_seconds``)."""
    parsed = make_url(url)
    # asyncpg reads the URL itself: it only knows the plain scheme
    dsn = parsed.set(drivername="postgresql").render_as_string(hide_password=False)
    server_settings = {}
    # a timeout the URL sets itself (``?idle_in_transaction_session_timeout=``) wins
    if idle_transaction_seconds > 0 and _IDLE not in parsed.query:
        milliseconds = max(1, round(idle_transaction_seconds * 1000))
        server_settings[_IDLE] = str(milliseconds)

    async def connect() -> Any:
        import asyncpg  # type: ignore[import-untyped]

        # asyncpg adds these to the server settings the URL's query gives
        return await asyncpg.connect(dsn, server_settings=server_settings or None)

    # no pre-ping: it costs a round trip per transaction, and a connection found dead
    # is invalidated by the error itself (the log retries; readers see Unavailable once)
    common: dict[str, Any] = {"async_creator": connect}
    writer = create_async_engine("postgresql+asyncpg://", pool_size=1, max_overflow=0, **common)
    # a fixed pool: connections opened past it would be closed again as soon as they are
    # returned, and each new one costs PostgreSQL a backend process; readers wait instead
    reader = create_async_engine("postgresql+asyncpg://", pool_size=10, max_overflow=0, **common)
    return writer, reader
