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
their own pool and never wait for the writer. Run queries live in ``runs.py``, schedule
queries in ``schedules.py``; this module holds the connections, sessions, messages and the
log's reads.

No SQLAlchemy error leaves the store for a reason a caller can act on: a database that
cannot be written or reached (disk full, connection gone) raises ``Unavailable``.
"""

from __future__ import annotations

import asyncio
import logging
import zlib
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from culm.errors import Conflict, OwnershipLost, Unavailable
from culm.events import Event
from culm.models import ACTIVE_STATUSES, Message, Session
from culm.store.base import Fence
from culm.store.claims import ClaimQueries
from culm.store.group import WriteGroup
from culm.store.inputs import InputQueries
from culm.store.migrate import upgrade
from culm.store.ownership import OwnershipQueries
from culm.store.probe import ProbeQueries
from culm.store.rows import (
    EVENT_COLUMNS,
    EVENTS_WITH_RUNS,
    dumps,
    event_records,
    insert_events,
    require_session,
    session_columns,
    session_record,
)
from culm.store.runs import RunQueries
from culm.store.schedules import ScheduleQueries
from culm.store.schema import events, messages, run_messages, runs, sessions
from culm.store.sqlite_direct import RunReader, Writer
from culm.store.starts import StartQueries

log = logging.getLogger("culm.store")

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

    async def open(self) -> None:
        self._writer, self._reader = self._make_engines()
        self._direct = Writer(self._writer) if self._writer.dialect.name == "sqlite" else None
        try:
            async with self._writer.begin() as conn:
                if conn.dialect.name == "postgresql":
                    # one key per schema: culm installations sharing a database stay apart
                    schema = (await conn.execute(sa.text("SELECT current_schema()"))).scalar()
                    self._log_lock = _LOG_LOCK ^ zlib.crc32(str(schema).encode())
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

    # sessions

    async def create_session(self, session: Session) -> None:
        async with self._write(appends=False) as conn:
            if session.parent_id is not None:
                await require_session(conn, session.parent_id, session.tenant)
            await conn.execute(sessions.insert().values(**session_columns(session)))

    async def get_session(self, session_id: str, tenant: str | None = None) -> Session:
        async with self._read() as conn:
            return await require_session(conn, session_id, tenant)

    async def list_sessions(
        self,
        tenant: str,
        *,
        limit: int = 50,
        before: str | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> list[Session]:
        query = sessions.select().where(sessions.c.tenant == tenant)
        if before is not None:
            query = query.where(sessions.c.id < before)
        for key, value in (metadata or {}).items():
            field = self._json_field(sessions.c.metadata, key)
            query = query.where(field == str(value))
        query = query.order_by(sessions.c.id.desc()).limit(limit)
        async with self._read() as conn:
            rows = (await conn.execute(query)).all()
        return [session_record(row) for row in rows]

    def _json_field(self, column: sa.Column[Any], key: str) -> sa.ColumnElement[Any]:
        assert self._reader is not None
        if self._reader.dialect.name == "postgresql":
            from sqlalchemy.dialects.postgresql import JSONB

            field: sa.ColumnElement[Any] = sa.cast(column, JSONB)[key].astext
        else:
            field = sa.type_coerce(column, sa.JSON)[key].as_string()
        return field

    async def delete_session(self, session_id: str, tenant: str | None = None) -> None:
        async with self._write(appends=False) as conn:
            await require_session(conn, session_id, tenant)
            tree = [session_id]
            frontier = [session_id]
            while frontier:
                query = sa.select(sessions.c.id).where(sessions.c.parent_id.in_(frontier))
                frontier = list((await conn.execute(query)).scalars())
                tree.extend(frontier)
            active = (
                await conn.execute(
                    sa.select(runs.c.id, runs.c.session_id)
                    .where(runs.c.session_id.in_(tree), runs.c.status.in_(ACTIVE_STATUSES))
                    .limit(1)
                )
            ).first()
            if active is not None:
                raise Conflict(
                    f"session {active.session_id} has an active run {active.id}; "
                    "cancel it or wait for it before deleting the session"
                )
            await conn.execute(events.delete().where(events.c.session_id.in_(tree)))
            in_tree = sa.select(runs.c.id).where(runs.c.session_id.in_(tree))
            await conn.execute(run_messages.delete().where(run_messages.c.run_id.in_(in_tree)))
            await conn.execute(messages.delete().where(messages.c.session_id.in_(tree)))
            await conn.execute(runs.delete().where(runs.c.session_id.in_(tree)))
            # children first, so the parent reference never dangles even without cascades
            for sid in reversed(tree):
                await conn.execute(sessions.delete().where(sessions.c.id == sid))

    # conversation history

    async def append_messages(self, batch: Sequence[Message], fence: Fence | None = None) -> None:
        if not batch:
            return
        async with self._write(appends=False) as conn:
            if fence is not None:
                run_id = batch[0].run_id
                row = (
                    await conn.execute(
                        sa.select(runs.c.worker_id, runs.c.epoch, runs.c.status)
                        .where(runs.c.id == run_id)
                        .with_for_update()
                    )
                ).first()
                if (
                    row is None
                    or (row.worker_id, row.epoch) != (fence.worker_id, fence.epoch)
                    or (row.status not in ACTIVE_STATUSES)
                ):
                    raise OwnershipLost(f"this process no longer executes run {run_id}")
            for message in batch:
                result = await conn.execute(
                    messages.insert().values(
                        session_id=message.session_id,
                        run_id=message.run_id,
                        role=message.role,
                        data=dumps(message.data),
                        created_at=message.created_at,
                    )
                )
                key = result.inserted_primary_key
                assert key is not None
                message.id = key[0]

    async def count_messages(self, session_id: str, run_id: str) -> int:
        query = sa.select(sa.func.count()).where(
            messages.c.session_id == session_id, messages.c.run_id == run_id
        )
        async with self._read() as conn:
            return int((await conn.execute(query)).scalar_one())

    async def read_messages(
        self, session_id: str, *, after: int = 0, limit: int = 1000
    ) -> list[Message]:
        query = (
            messages.select()
            .where(messages.c.session_id == session_id, messages.c.id > after)
            .order_by(messages.c.id)
            .limit(limit)
        )
        async with self._read() as conn:
            rows = (await conn.execute(query)).all()
        return [
            Message(
                session_id=r.session_id,
                role=r.role,
                data=orjson.loads(r.data),
                created_at=r.created_at,
                run_id=r.run_id,
                id=r.id,
            )
            for r in rows
        ]

    # the log

    async def read_events(self, run_id: str, after: int = 0, limit: int = 1000) -> list[Event]:
        query = (
            sa.select(*EVENT_COLUMNS)
            .select_from(EVENTS_WITH_RUNS)
            .where(events.c.run_id == run_id, events.c.seq > after)
            .order_by(events.c.seq)
            .limit(limit)
        )
        async with self._read() as conn:
            return event_records((await conn.execute(query)).all())

    async def read_session_events(
        self, session_ids: Sequence[str], after: int = 0, limit: int = 1000
    ) -> list[Event]:
        query = (
            sa.select(*EVENT_COLUMNS)
            .select_from(EVENTS_WITH_RUNS)
            .where(events.c.session_id.in_(session_ids), events.c.pos > after)
            .order_by(events.c.pos)
            .limit(limit)
        )
        async with self._read() as conn:
            return event_records((await conn.execute(query)).all())

    async def read_log(self, after: int = 0, limit: int = 1000) -> list[Event]:
        query = (
            sa.select(*EVENT_COLUMNS)
            .select_from(EVENTS_WITH_RUNS)
            .where(events.c.pos > after)
            .order_by(events.c.pos)
            .limit(limit)
        )
        async with self._read() as conn:
            return event_records((await conn.execute(query)).all())

    async def last_pos(self) -> int:
        async with self._read() as conn:
            top = (await conn.execute(sa.select(sa.func.max(events.c.pos)))).scalar()
        return int(top or 0)

    async def count_log(self, after: int) -> tuple[int, int]:
        query = sa.select(sa.func.max(events.c.pos), sa.func.count()).where(events.c.pos > after)
        async with self._read() as conn:
            top, count = (await conn.execute(query)).one()
        return (int(top), int(count)) if count else (after, 0)

    async def session_tree(self, session_id: str) -> list[str]:
        async with self._read() as conn:
            tree = [session_id]
            frontier = [session_id]
            while frontier:
                query = (
                    sa.select(sessions.c.id)
                    .where(sessions.c.parent_id.in_(frontier))
                    .order_by(sessions.c.id)
                )
                frontier = list((await conn.execute(query)).scalars())
                tree.extend(frontier)
            return tree


def _reason(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None)
    return str(orig if orig is not None else exc).strip() or type(exc).__name__
