"""The store on SQLAlchemy's async Core: one implementation for every SQL database.

Writes go through one connection, one transaction at a time, so a batch of events from many
runs costs one commit (group commit) and the log's ``pos`` grows in commit order.

On PostgreSQL many processes write at once, and a sequence hands out numbers in the order
they are asked for, not the order their transactions commit: a follower that read up to
position 12 could later find 11 committed. So every transaction that may append to the log
first takes one transaction-level advisory lock (the *log lock*): positions are assigned and
committed one transaction at a time across all processes, and a reader that sees a position
sees every smaller one. It is taken before any row lock, so it cannot join a deadlock.
Transactions that never append events (claims, leases, schedules) do not take it. Reads use
their own pool and never wait for the writer. Each section of queries is a module of its
own, mixed in here (runs, starts, ownership, claims, inputs, schedules, sessions and
messages, the log's reads); this module holds the connections, the write lock and the log
lock.

No SQLAlchemy error leaves the store for a reason a caller can act on: a database that
cannot be written or reached (disk full, connection gone) raises ``Unavailable``.
"""

from __future__ import annotations

import asyncio
import logging
import zlib
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager

import sqlalchemy as sa
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from culm.errors import Unavailable
from culm.events import Event
from culm.store.claims import CLAIM_LOCK, ClaimQueries
from culm.store.group import WriteGroup
from culm.store.inputs import InputQueries
from culm.store.log import LogQueries
from culm.store.migrate import upgrade
from culm.store.ownership import OwnershipQueries
from culm.store.probe import ProbeQueries
from culm.store.rows import insert_events
from culm.store.runs import RunQueries
from culm.store.schedules import ScheduleQueries
from culm.store.sessions import SessionQueries
from culm.store.sqlite_direct import RunReader, Writer
from culm.store.starts import StartQueries

log = logging.getLogger("culm.store")

ANNOUNCE_WAIT = 0.05
"""Longest a run read waits for the transaction under way to be announced before it reads
on a reader's thread instead (``announced``); a group commit takes about a millisecond."""

# advisory lock keys (64-bit, arbitrary but fixed): all culm processes must agree on them
_LOG_LOCK = 0x63756C6D_6C6F6700  # "culmlog"
_MIGRATE_LOCK = 0x63756C6D_6D696700  # "culmmig"

EngineFactory = Callable[[], tuple[AsyncEngine, AsyncEngine]]


def unavailable(exc: BaseException) -> bool:
    """True for errors that say the database cannot be used right now (and may be later),
    as opposed to a statement that is wrong whenever it runs."""
    if isinstance(exc, OperationalError | InterfaceError | OSError | TimeoutError):
        return True
    return isinstance(exc, DBAPIError) and exc.connection_invalidated


class SqlStore(
    StartQueries,
    RunQueries,
    OwnershipQueries,
    ScheduleQueries,
    ClaimQueries,
    InputQueries,
    ProbeQueries,
    SessionQueries,
    LogQueries,
):
    """Sessions, runs and events in a SQL database (see ``culm.store.base.Store``)."""

    def __init__(self, engines: EngineFactory) -> None:
        self._make_engines = engines
        self._writer: AsyncEngine | None = None
        self._reader: AsyncEngine | None = None
        self._direct: Writer | None = None
        """The writer's SQLite connection, for the busiest transactions (SQLite only)."""
        self._here: RunReader | None = None
        """Reads a run on the event loop (a SQLite file only)."""
        self._announced = 0
        """The writer's commits (``Writer.commits``) whose events have been announced."""
        self._announcing: list[asyncio.Future[None]] = []
        """Who waits for the transaction under way to be announced (``announced``)."""
        self._write_lock = asyncio.Lock()
        self._written: list[Event] = []
        self.on_commit: Callable[[Sequence[Event]], None] | None = None
        self._starts = WriteGroup(self._start_transaction, self._create_runs)
        self._may_append = False
        self._log_lock: int | None = None
        """Key of the log lock on PostgreSQL (None on SQLite, whose writer is alone)."""
        self.problem: str | None = None
        """Why the last write failed while the database could not be written (see
        ``Store.problem``); None once a write went through."""
        self._claim_lock: int | None = None
        """Key of the claim lock on PostgreSQL (see ``claims.py``)."""

    async def open(self) -> None:
        self._writer, self._reader = self._make_engines()
        self._direct = Writer(self._writer) if self._writer.dialect.name == "sqlite" else None
        try:
            async with self._writer.begin() as conn:
                if conn.dialect.name == "postgresql":
                    # one key per schema: culm installations sharing a database stay apart
                    schema = (await conn.execute(sa.text("SELECT current_schema()"))).scalar()
                    self._log_lock = _LOG_LOCK ^ zlib.crc32(str(schema).encode())
                    self._claim_lock = CLAIM_LOCK ^ zlib.crc32(str(schema).encode())
                    # processes starting together migrate one at a time
                    await conn.execute(sa.select(sa.func.pg_advisory_xact_lock(_MIGRATE_LOCK)))
                await conn.run_sync(upgrade)
        except Exception as exc:
            if unavailable(exc):
                raise Unavailable(f"the database cannot be opened: {_reason(exc)}") from exc
            raise
        if self._direct is not None and self._direct.driver is not None:
            assert self._writer.url.database is not None  # a file: see ``sqlite_engines``
            self._here = RunReader(self._writer.url.database)
            self._announced = self._direct.commits  # the migrations' commits announce nothing

    async def close(self) -> None:
        await self._starts.aclose()
        if self._here is not None:
            self._here.close()
            self._here = None
        for engine in (self._writer, self._reader):
            if engine is not None:
                await engine.dispose()
        self._writer = self._reader = None
        self._direct = None

    async def ping(self) -> None:
        async with self._read() as conn:
            await conn.execute(sa.text("SELECT 1"))

    @asynccontextmanager
    async def _write(self, *, appends: bool = True) -> AsyncIterator[AsyncConnection]:
        """A write transaction; ``appends=False`` promises it appends no events (and so
        skips the log lock on PostgreSQL)."""
        assert self._writer is not None, "store is not open"
        async with self._locked(appends), self._writer.begin() as conn:
            if appends and self._log_lock is not None:
                await conn.execute(sa.select(sa.func.pg_advisory_xact_lock(self._log_lock)))
            yield conn

    @asynccontextmanager
    async def _write_direct(self) -> AsyncIterator[Writer | None]:
        """The writer's SQLite connection, for one transaction that appends events run
        straight on it (``Writer.commit_after``); None on PostgreSQL, or while the pool
        has no connection open or has handed it out: then the caller writes through
        ``_write``."""
        async with self._locked(appends=True):
            writer = self._direct
            usable = writer is not None and writer.driver is not None and not writer.taken
            yield writer if usable else None

    @asynccontextmanager
    async def _locked(self, appends: bool) -> AsyncIterator[None]:
        """The write lock, held for one transaction: its errors raised as ``Unavailable``
        when the database cannot be written (and kept in ``problem``), its events announced
        once committed. Only a commit that wrote events clears ``problem`` (or ``probe``): a
        transaction that changed nothing commits even on a full disk."""
        async with self._write_lock:
            self._written = []
            self._may_append = appends
            try:
                try:
                    yield
                except Unavailable as exc:
                    self.problem = exc.message
                    raise
                except Exception as exc:
                    if unavailable(exc):
                        self.problem = f"the database cannot be written: {_reason(exc)}"
                        raise Unavailable(self.problem) from exc
                    raise
                finally:
                    written, self._written = self._written, []
                if written:  # events were committed: the database can be written again
                    self.problem = None
                # still under the lock: announcements follow commit order exactly
                if written and self.on_commit is not None:
                    try:
                        self.on_commit(written)
                    except Exception:  # the log is the truth: followers catch up from it
                        log.exception("announcing %d committed events failed", len(written))
            finally:  # whatever was committed under the lock has been announced now
                if self._direct is not None:
                    self._announced = self._direct.commits
                waiting, self._announcing = self._announcing, []
                for waiter in waiting:
                    if not waiter.done():
                        waiter.set_result(None)

    async def announced(self) -> bool:
        """Wait until the transaction under way in the store has been committed and
        announced; False at once when there is none (a commit not announced yet was then
        made outside the store, and nothing here will announce it), or after
        ``ANNOUNCE_WAIT`` seconds (a long transaction, such as a purge)."""
        if not self._write_lock.locked():
            return False
        waiter = asyncio.get_running_loop().create_future()
        self._announcing.append(waiter)
        try:
            await asyncio.wait_for(waiter, ANNOUNCE_WAIT)
        except TimeoutError:
            return False
        return True

    def settled(self) -> bool:
        """No commit has begun that is not announced yet: a read on the loop made just
        before this is true saw only announced commits (``RunQueries.get_run``)."""
        return self._direct is not None and self._direct.commits == self._announced

    async def _insert_events(self, conn: AsyncConnection, batch: Sequence[Event]) -> None:
        assert self._may_append, "events appended in a transaction without the log lock"
        await insert_events(conn, batch)
        self._written.extend(batch)

    def _written_in_one_trip(self, batch: Sequence[Event], positions: Sequence[int]) -> None:
        """What ``_insert_events`` does after its insert, for events inserted by a
        transaction that ran in one trip (``sqlite_direct``)."""
        assert self._may_append, "events appended in a transaction without the log lock"
        for event, pos in zip(batch, positions, strict=True):
            event.pos = pos
        self._written.extend(batch)

    @asynccontextmanager
    async def _read(self) -> AsyncIterator[AsyncConnection]:
        assert self._reader is not None, "store is not open"
        try:
            async with self._reader.connect() as conn:
                yield conn
        except Exception as exc:
            if unavailable(exc):
                raise Unavailable(f"the database cannot be read: {_reason(exc)}") from exc
            raise


def _reason(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None)
    return str(orig if orig is not None else exc).strip() or type(exc).__name__
