"""SQLite connections that take one trip to their database thread per statement.

aiosqlite runs each connection's calls on a thread of its own, and SQLAlchemy drives its
cursors call by call: open a cursor, execute, fetch the rows, close — four trips for one
SELECT, each a hand-over to the thread and back to the event loop. Those trips, not SQLite,
were most of what a run cost the server. Here a statement is executed, its rows fetched
and its cursor closed in a single trip; the cursor SQLAlchemy holds only hands out what
came back. Transactions, commits and errors are aiosqlite's and SQLAlchemy's as before.

The busiest write transactions go further (``Connection.commit_after``): their statements
and the commit are one plain function run on the thread, so the whole transaction is one
trip, its BEGIN included.
"""

from __future__ import annotations

import sqlite3
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

import aiosqlite

T = TypeVar("T")
BEGIN_WRITE = "BEGIN IMMEDIATE"
"""How the writer begins: it takes the write lock up front, so a transaction never fails
half-way for want of it."""
Outcome = tuple[Any, int, int | None, list[Any]]
"""What a statement leaves for its cursor: description, rowcount, lastrowid, rows."""


def _execute(conn: sqlite3.Connection, sql: str, parameters: Any) -> Outcome:
    cursor = conn.cursor()
    try:
        cursor.execute(sql, parameters)
        rows = cursor.fetchall() if cursor.description else []
        return cursor.description, cursor.rowcount, cursor.lastrowid, rows
    finally:
        cursor.close()


def _execute_many(conn: sqlite3.Connection, sql: str, parameters: Iterable[Any]) -> Outcome:
    cursor = conn.cursor()
    try:
        cursor.executemany(sql, parameters)
        return cursor.description, cursor.rowcount, cursor.lastrowid, []
    finally:
        cursor.close()


class Cursor:
    """The cursor SQLAlchemy's aiosqlite adapter drives: ``execute`` is the one trip."""

    arraysize = 1

    def __init__(self, connection: Connection) -> None:
        self._connection = connection
        self.description: Any = None
        self.rowcount = -1
        self.lastrowid: int | None = None
        self._rows: deque[Any] = deque()

    async def __aenter__(self) -> Cursor:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._rows.clear()

    async def execute(self, sql: str, parameters: Any = ()) -> Cursor:
        self._take(await self._connection.run(_execute, sql, parameters))
        return self

    async def executemany(self, sql: str, parameters: Iterable[Any]) -> Cursor:
        self._take(await self._connection.run(_execute_many, sql, parameters))
        return self

    def _take(self, outcome: Outcome) -> None:
        self.description, self.rowcount, self.lastrowid, rows = outcome
        self._rows = deque(rows)

    async def fetchone(self) -> Any:
        return self._rows.popleft() if self._rows else None

    async def fetchmany(self, size: int | None = None) -> Sequence[Any]:
        count = min(size or self.arraysize, len(self._rows))
        return [self._rows.popleft() for _ in range(count)]

    async def fetchall(self) -> Sequence[Any]:
        rows = list(self._rows)
        self._rows.clear()
        return rows

    async def close(self) -> None:
        self._rows.clear()


class Connection(aiosqlite.Connection):
    """aiosqlite's connection, whose cursors are ``Cursor``."""

    _begin: str | None = None
    before_commit: Callable[[], None] | None = None
    """Called on the connection's thread just before each COMMIT (see ``Writer``)."""

    def cursor(self) -> Cursor:  # type: ignore[override]
        return Cursor(self)

    def begin_with_next(self, sql: str) -> None:
        """Run ``sql`` (a ``BEGIN``) in the same trip as the next statement, before it; a
        transaction in which nothing was executed is then never begun."""
        self._begin = sql

    async def commit(self) -> None:
        if self._begin is not None:  # nothing was executed: nothing began
            self._begin = None
            return
        if not self._conn.in_transaction:  # committed already, by ``commit_after``
            return
        await self._execute(_commit, self._conn, self.before_commit)  # type: ignore[no-untyped-call]

    async def rollback(self) -> None:
        self._begin = None
        # SQLAlchemy rolls back every connection it is done with, most often with nothing
        # begun (readers read in autocommit; the writer has committed): no trip then
        if self._conn.in_transaction:
            await super().rollback()

    async def run(self, function: Any, *args: Any) -> Any:
        """``function(sqlite3_connection, *args)`` on the connection's thread."""
        begin, self._begin = self._begin, None
        # aiosqlite's own way onto its thread (what its public calls use)
        return await self._execute(_after, begin, function, self._conn, *args)  # type: ignore[no-untyped-call]

    async def commit_after(self, function: Callable[..., T], *args: Any) -> T:
        """``function(sqlite3_connection, *args)``, then COMMIT, in one trip to the thread
        (with the transaction's BEGIN before it); on an error the transaction is rolled
        back in that same trip and the error raised. SQLAlchemy's own commit then finds
        nothing to do."""
        begin, self._begin = self._begin, None
        return await self.transaction(begin, function, *args)

    async def transaction(self, begin: str | None, function: Callable[..., T], *args: Any) -> T:
        """``begin``, ``function(sqlite3_connection, *args)`` and COMMIT in one trip, as
        ``commit_after``."""
        return await self._execute(  # type: ignore[no-any-return,no-untyped-call]
            _transaction, begin, self.before_commit, function, self._conn, *args
        )


def _commit(conn: sqlite3.Connection, before: Callable[[], None] | None) -> None:
    if before is not None:
        before()
    conn.commit()


def _transaction(
    begin: str | None,
    before_commit: Callable[[], None] | None,
    function: Callable[..., T],
    conn: sqlite3.Connection,
    *args: Any,
) -> T:
    try:
        result = _after(begin, function, conn, *args)
        _commit(conn, before_commit)
    except BaseException:
        if conn.in_transaction:
            conn.rollback()
        raise
    return result  # type: ignore[no-any-return]


def _after(begin: str | None, function: Any, conn: sqlite3.Connection, *args: Any) -> Any:
    if begin is not None:
        conn.execute(begin)
    return function(conn, *args)


def connect(database: str) -> Connection:
    """A connection to ``database`` (a file path), awaited by SQLAlchemy to open it."""

    def connector() -> sqlite3.Connection:
        return sqlite3.connect(database, check_same_thread=False)

    connection = Connection(connector, 64)
    connection._thread.daemon = True  # as SQLAlchemy does: a stray thread never holds exit
    return connection
