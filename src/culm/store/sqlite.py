"""SQLite engines: WAL, one writer that takes the lock up front, readers that never block it."""

from __future__ import annotations

from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from culm.errors import InvalidInput
from culm.store.sqlite_trips import BEGIN_WRITE, Connection, connect


def sqlite_engines(url: str, synchronous: str = "FULL") -> tuple[AsyncEngine, AsyncEngine]:
    """A writer engine (one connection, ``BEGIN IMMEDIATE``) and a reader engine."""
    parsed = make_url(url).set(drivername="sqlite+aiosqlite")
    if parsed.database in (None, "", ":memory:"):
        raise InvalidInput("culm needs a SQLite file, e.g. sqlite:///culm.db, not an in-memory db")
    options: dict[str, Any] = {}
    if not parsed.query:  # a plain file: connections that take one trip per statement
        database = parsed.database
        options["async_creator"] = lambda: connect(database)
    writer = create_async_engine(parsed, pool_size=1, max_overflow=0, **options)
    # enough readers for the requests of a busy server, and no more: a read past them
    # waits the fraction of a millisecond until one is returned, where opening one more
    # (a thread, a file, pragmas, closed again when returned) cost more than the reads
    # it served, and a burst of requests opened them over and over
    reader = create_async_engine(parsed, pool_size=8, max_overflow=0, **options)
    _configure(writer, synchronous, begin=BEGIN_WRITE)
    _configure(reader, synchronous, begin=None)
    return writer, reader


def _configure(engine: AsyncEngine, synchronous: str, begin: str | None) -> None:
    # pysqlite's own transaction handling is turned off so that BEGIN is ours to emit:
    # the writer takes the write lock at BEGIN, readers read in autocommit (WAL snapshots).
    @event.listens_for(engine.sync_engine, "connect")
    def _connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA synchronous={synchronous}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=10000")
        cursor.close()

    if begin is not None:

        @event.listens_for(engine.sync_engine, "begin")
        def _begin(conn: Any) -> None:
            driver = conn.connection.driver_connection
            if isinstance(driver, Connection):  # BEGIN goes with the first statement
                driver.begin_with_next(begin)
            else:
                conn.exec_driver_sql(begin)
