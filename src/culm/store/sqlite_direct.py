"""The SQLite store's busiest transactions and reads, each one trip to the database's thread.

Every run writes its events through ``write_batch``, so its cost is paid per commit of the
log. Through SQLAlchemy it was four trips to SQLite's thread (the fence check, the events,
the runs' states, the commit), each a hand-over there and back, and SQLAlchemy's own
machinery around each statement cost more CPU than SQLite spent running it. Here the
statements are plain SQL run by one function on the thread, which also commits
(``sqlite_trips.Connection.commit_after``): one hand-over per transaction. The same goes
for a group of starts, and for reading one run (every request about a run reads it). The
statements are built from the same tables and column lists the SQLAlchemy queries use,
and the contract suite runs every backend against the same expectations.

An error is raised as SQLAlchemy raises it (``IntegrityError``, ``OperationalError``...),
after the transaction was rolled back, so the store's callers cannot tell which way a
statement went.
"""

from __future__ import annotations

import sqlite3
from collections import namedtuple
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

from sqlalchemy import event
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from culm.models import ACTIVE_STATUSES, RunState
from culm.store.base import Fence
from culm.store.rows import sqlite_event_inserts, state_columns
from culm.store.schema import runs
from culm.store.sqlite_trips import BEGIN_WRITE, Connection

T = TypeVar("T")
Row = tuple[Any, ...]

_STATE_KEYS = tuple(state_columns(RunState()))
_UPDATE_STATE = (
    "UPDATE runs SET " + ", ".join(f'"{key}" = ?' for key in _STATE_KEYS) + " WHERE id = ?"
)
_NOW = "(julianday('now') - 2440587.5) * 86400.0"
"""The database's clock in epoch seconds, as ``rows.db_now`` spells it for SQLite."""
_FENCES = "SELECT id, worker_id, epoch, status FROM runs WHERE id IN ({})"


def one_trip(conn: AsyncConnection) -> Connection | None:
    """The driver connection under ``conn`` when it can run a transaction in one trip
    (SQLite through ``sqlite_trips``); None for any other database or driver."""
    if conn.dialect.name != "sqlite" or conn.sync_connection is None:
        return None
    driver = conn.sync_connection.connection.driver_connection
    return driver if isinstance(driver, Connection) else None


async def commit_after(driver: Connection, function: Callable[..., T], *args: Any) -> T:
    """``function(sqlite3_connection, *args)`` and the commit, in one trip."""
    try:
        return await driver.commit_after(function, *args)
    except sqlite3.Error as exc:  # as SQLAlchemy would have raised it
        raise DBAPIError.instance(None, None, exc, sqlite3.Error) from exc


class Writer:
    """The writer engine's one SQLite connection, followed as its pool opens and drops it.

    The log's commits and the groups of starts are a run's every write; taking the
    connection from the pool, and SQLAlchemy's begin and commit around the one trip, cost
    more CPU (~0.1 ms) than SQLite spent on the transaction. The store runs those straight
    on this connection, under its write lock (nothing else uses the writer then). A
    connection the pool closes or invalidates is forgotten, and the next one it opens is
    taken up; until then the store writes through SQLAlchemy.
    """

    def __init__(self, engine: AsyncEngine) -> None:
        self.driver: Connection | None = None
        self.commits = 0
        """COMMITs begun on the writer's connections, counted on their thread just before
        each: a read on the loop made while this equals the store's count of announced
        commits saw nothing that was not announced (``SqlStore.settled``)."""
        self.taken = False
        """The pool has handed the connection out (to ``SqlStore._write``, or to a tool
        outside the store): whoever writes then waits for it there."""
        self._dialect = engine.dialect
        if engine.dialect.name == "sqlite":
            pool = engine.sync_engine
            event.listen(pool, "connect", self._connected)
            for dropped in ("close", "invalidate", "soft_invalidate", "detach"):
                event.listen(pool, dropped, self._dropped)
            event.listen(pool, "checkout", self._checked_out)
            event.listen(pool, "checkin", self._checked_in)

    def _checked_out(self, *_args: Any) -> None:
        self.taken = True

    def _checked_in(self, *_args: Any) -> None:
        self.taken = False

    def _connected(self, _dbapi_connection: Any, record: Any) -> None:
        driver = record.driver_connection
        self.driver = driver if isinstance(driver, Connection) else None
        if self.driver is not None:
            self.driver.before_commit = self._committing

    def _committing(self) -> None:
        self.commits += 1

    def _dropped(self, *_args: Any) -> None:
        self.driver = None

    async def commit_after(self, function: Callable[..., T], *args: Any) -> T:
        """``function(sqlite3_connection, *args)`` in a write transaction, one trip; an
        error that means the connection is gone also forgets it (SQLAlchemy then opens a
        new one), and is raised as SQLAlchemy raises it."""
        driver = self.driver
        if driver is None:  # dropped since the store took the write lock: not expected
            raise _as_sqlalchemy(sqlite3.OperationalError("the writer's connection is closed"))
        try:
            return await driver.transaction(BEGIN_WRITE, function, *args)
        except sqlite3.Error as exc:
            gone = self._dialect.is_disconnect(exc, None, None)  # type: ignore[arg-type]
            if gone:
                self.driver = None
            raise _as_sqlalchemy(exc, gone) from exc


def _as_sqlalchemy(exc: sqlite3.Error, gone: bool = False) -> DBAPIError:
    error = DBAPIError.instance(None, None, exc, sqlite3.Error, connection_invalidated=gone)
    assert isinstance(error, DBAPIError)
    return error


async def read_run(driver: Connection, run_id: str, tenant: str | None) -> Any:
    """The run's row (its columns as attributes, as SQLAlchemy's rows have them), or
    None; one trip."""
    try:
        values = await driver.run(_read_run, run_id, tenant)
    except sqlite3.Error as exc:
        raise DBAPIError.instance(None, None, exc, sqlite3.Error) from exc
    return None if values is None else RunRow._make(values)


_RUN_COLUMNS = [str(column.name) for column in runs.columns]
RunRow = namedtuple("RunRow", _RUN_COLUMNS)  # type: ignore[misc]
"""A row of ``runs``, read as ``rows.run_record`` reads SQLAlchemy's rows."""
_RUN = "SELECT " + ", ".join(f'"{name}"' for name in _RUN_COLUMNS) + " FROM runs WHERE id = ?"
_TENANT_RUN = _RUN + " AND tenant = ?"


def _read_run(conn: sqlite3.Connection, run_id: str, tenant: str | None) -> Row | None:
    # every row fetched, so the statement is done and holds no snapshot of the database
    if tenant is None:
        rows = conn.execute(_RUN, (run_id,)).fetchall()
    else:
        rows = conn.execute(_TENANT_RUN, (run_id, tenant)).fetchall()
    return rows[0] if rows else None


class RunReader:
    """A connection that reads one run by its key on the event loop itself.

    The row is found in ~15 µs, where the trip to a reader's thread and back (the hand-over,
    the thread taking the GIL, the loop woken again) cost ~10 times that, and more when the
    loop is busy; every request about a run, a stream's first among them, reads it. WAL
    readers never wait for the writer; in the rare moments SQLite would have to wait
    (``SQLITE_BUSY``) this connection does not (no busy timeout, so it never blocks the
    loop) and the read goes to a reader's thread as before (``read_run`` answers None), as
    it does on any other error, which that read then raises as the store raises errors.
    """

    def __init__(self, database: str) -> None:
        self._conn = sqlite3.connect(
            database, timeout=0, isolation_level=None, check_same_thread=False
        )
        self._conn.execute("PRAGMA query_only=1")

    def read_run(self, run_id: str, tenant: str | None) -> tuple[Any] | None:
        """(the run's row, or None when there is none), or None when it could not be read
        here without waiting."""
        try:
            values = _read_run(self._conn, run_id, tenant)
        except sqlite3.Error:  # busy, or worse: the reader's thread reads it, or says why not
            return None
        return (None if values is None else RunRow._make(values),)

    def close(self) -> None:
        self._conn.close()


def state_row(state: RunState) -> Row:
    """A run's state as the values of ``_UPDATE_STATE``, its id still to be added."""
    return tuple(state_columns(state).values())


def insert_events(conn: sqlite3.Connection, rows: Sequence[Row]) -> list[int]:
    """Append event rows (``rows.sqlite_event_rows``); their positions, numbered as
    ``rows.insert_events`` numbers them."""
    positions: list[int] = []
    for sql, values, count in sqlite_event_inserts(rows):
        last = conn.execute(sql, values).lastrowid
        assert last is not None
        positions.extend(range(last - count + 1, last + 1))
    return positions


def write_batch(
    conn: sqlite3.Connection,
    rows: Sequence[Row],
    states: Mapping[str, Row],
    fences: Mapping[str, Fence],
) -> tuple[set[str], list[int]]:
    """The log's commit: the runs whose fence no longer holds (nothing is written for
    them), and the positions of the event rows written, in order."""
    lost = set(fences)
    if fences:
        query = _FENCES.format(", ".join("?" * len(fences)))
        for run_id, worker_id, epoch, status in conn.execute(query, list(fences)):
            fence = fences[run_id]
            if status in ACTIVE_STATUSES and (worker_id, epoch) == (fence.worker_id, fence.epoch):
                lost.discard(run_id)
    if lost:
        rows = [row for row in rows if row[0] not in lost]
    positions = insert_events(conn, rows)
    updates = [(*values, rid) for rid, values in states.items() if rid not in lost]
    if updates:
        conn.executemany(_UPDATE_STATE, updates)
    return lost, positions


def write_starts(
    conn: sqlite3.Connection,
    sessions: Sequence[dict[str, Any]],
    runs: Sequence[dict[str, Any]],
    ended: Sequence[dict[str, Any]],
    events: Sequence[Row],
) -> list[int]:
    """The writes of a group of starts (``RunQueries._write_starts``); the positions of
    the events."""
    if sessions:
        conn.executemany(
            _insert("sessions", list(sessions[0])), [tuple(s.values()) for s in sessions]
        )
    if runs:
        # the lease runs out ``lease_seconds`` (the last value) from now by the database
        keys = [key for key in runs[0] if key != "lease_seconds"]
        sql = _insert("runs", keys, lease_expires_at=f"{_NOW} + ?")
        conn.executemany(sql, [(*(r[k] for k in keys), r["lease_seconds"]) for r in runs])
    if ended:
        keys = [key for key in ended[0] if key != "run_id"]
        sql = "UPDATE runs SET " + ", ".join(f'"{k}" = ?' for k in keys) + " WHERE id = ?"
        conn.executemany(sql, [(*(r[k] for k in keys), r["run_id"]) for r in ended])
    return insert_events(conn, events)


def _insert(table: str, keys: Sequence[str], **expressions: str) -> str:
    names = [*keys, *expressions]
    values = ["?"] * len(keys) + list(expressions.values())
    columns = ", ".join(f'"{name}"' for name in names)
    return f"INSERT INTO {table} ({columns}) VALUES ({', '.join(values)})"
