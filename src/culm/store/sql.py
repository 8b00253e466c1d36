"""The store on SQLAlchemy's async Core: one implementation for every SQL database.

Writes go through one connection, one transaction at a time, so a batch of events from many
runs costs one commit (group commit) and the log's ``pos`` grows in commit order. Reads use
their own pool and never wait for the writer.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from culm.errors import Conflict, CulmError, NotFound, SessionBusy
from culm.events import Event
from culm.models import (
    ACTIVE_STATUSES,
    Message,
    Run,
    RunState,
    RunStatus,
    Session,
    ToolPhase,
    Trigger,
)
from culm.projection import advance
from culm.store.base import Ownership, RunFilter
from culm.store.group import WriteGroup
from culm.store.migrate import upgrade
from culm.store.schedules import ScheduleQueries
from culm.store.schema import events, messages, runs, sessions

log = logging.getLogger("culm.store")

EngineFactory = Callable[[], tuple[AsyncEngine, AsyncEngine]]


def dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


def _loads(text: str | None) -> Any:
    return None if text is None else orjson.loads(text)


@dataclass(slots=True, frozen=True)
class _Start:
    """One ``create_run`` call, waiting for its group's transaction."""

    run: Run
    queued: Event
    reject_if_busy: bool
    owner: str
    lease_until: float
    claim: bool
    new_session: Session | None


class SqlStore(ScheduleQueries):
    """Sessions, runs and events in a SQL database (see ``culm.store.base.Store``)."""

    def __init__(self, engines: EngineFactory) -> None:
        self._make_engines = engines
        self._writer: AsyncEngine | None = None
        self._reader: AsyncEngine | None = None
        self._write_lock = asyncio.Lock()
        self._written: list[Event] = []
        self.on_commit: Callable[[Sequence[Event]], None] | None = None
        self._starts = WriteGroup(self._write, self._create_runs)

    async def open(self) -> None:
        self._writer, self._reader = self._make_engines()
        async with self._writer.begin() as conn:
            await conn.run_sync(upgrade)

    async def close(self) -> None:
        await self._starts.aclose()
        for engine in (self._writer, self._reader):
            if engine is not None:
                await engine.dispose()
        self._writer = self._reader = None

    async def ping(self) -> None:
        async with self._read() as conn:
            await conn.execute(sa.text("SELECT 1"))

    @asynccontextmanager
    async def _write(self) -> AsyncIterator[AsyncConnection]:
        assert self._writer is not None, "store is not open"
        async with self._write_lock:
            self._written = []
            try:
                async with self._writer.begin() as conn:
                    yield conn
            finally:
                written, self._written = self._written, []
            # still under the lock: announcements follow commit order exactly
            if written and self.on_commit is not None:
                try:
                    self.on_commit(written)
                except Exception:  # the log is the truth: followers catch up from it
                    log.exception("announcing %d committed events failed", len(written))

    async def _insert_events(self, conn: AsyncConnection, batch: Sequence[Event]) -> None:
        await _insert_events(conn, batch)
        self._written.extend(batch)

    @asynccontextmanager
    async def _read(self) -> AsyncIterator[AsyncConnection]:
        assert self._reader is not None, "store is not open"
        async with self._reader.connect() as conn:
            yield conn

    # sessions

    async def create_session(self, session: Session) -> None:
        async with self._write() as conn:
            if session.parent_id is not None:
                await _require_session(conn, session.parent_id, session.tenant)
            await conn.execute(sessions.insert().values(**_session_columns(session)))

    async def get_session(self, session_id: str, tenant: str | None = None) -> Session:
        async with self._read() as conn:
            return await _require_session(conn, session_id, tenant)

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
        return [_session(row) for row in rows]

    def _json_field(self, column: sa.Column[Any], key: str) -> sa.ColumnElement[Any]:
        assert self._reader is not None
        if self._reader.dialect.name == "postgresql":
            from sqlalchemy.dialects.postgresql import JSONB

            field: sa.ColumnElement[Any] = sa.cast(column, JSONB)[key].astext
        else:
            field = sa.type_coerce(column, sa.JSON)[key].as_string()
        return field

    async def delete_session(self, session_id: str, tenant: str | None = None) -> None:
        async with self._write() as conn:
            await _require_session(conn, session_id, tenant)
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
            await conn.execute(messages.delete().where(messages.c.session_id.in_(tree)))
            await conn.execute(runs.delete().where(runs.c.session_id.in_(tree)))
            # children first, so the parent reference never dangles even without cascades
            for sid in reversed(tree):
                await conn.execute(sessions.delete().where(sessions.c.id == sid))

    # runs

    async def create_run(
        self,
        run: Run,
        queued: Event,
        *,
        reject_if_busy: bool,
        owner: str,
        lease_until: float,
        claim: bool = False,
        new_session: Session | None = None,
    ) -> str | None:
        # runs are started in bursts: starts that arrive together share one commit
        start = _Start(run, queued, reject_if_busy, owner, lease_until, claim, new_session)
        return await self._starts.run(start)

    async def _create_runs(
        self, conn: AsyncConnection, starts: Sequence[_Start]
    ) -> list[str | CulmError | None]:
        """Write a group of starts with a few statements in all, not a few per start."""
        wanted = {s.run.session_id for s in starts if s.new_session is None}
        known: dict[str, str] = {}
        oldest: dict[str, str] = {}
        if wanted:
            rows = await conn.execute(
                sa.select(sessions.c.id, sessions.c.tenant).where(sessions.c.id.in_(wanted))
            )
            known = {row.id: row.tenant for row in rows}
            rows = await conn.execute(
                sa.select(runs.c.session_id, sa.func.min(runs.c.id).label("first"))
                .where(runs.c.session_id.in_(wanted), runs.c.status.in_(ACTIVE_STATUSES))
                .group_by(runs.c.session_id)
            )
            oldest = {row.session_id: row.first for row in rows}
        outcomes: list[str | CulmError | None] = []
        new_sessions: list[dict[str, Any]] = []
        new_runs: list[dict[str, Any]] = []
        new_events: list[Event] = []
        for start in starts:
            run = start.run
            if start.new_session is not None:
                new_sessions.append(_session_columns(start.new_session))
                known[run.session_id] = run.tenant
            elif known.get(run.session_id) != run.tenant:
                outcomes.append(NotFound(f"no session {run.session_id}"))
                continue
            ahead = oldest.get(run.session_id)
            if ahead is not None and start.reject_if_busy:
                outcomes.append(SessionBusy(run.session_id, ahead))
                continue
            oldest.setdefault(run.session_id, run.id)
            columns = _state_columns(run.state)
            if start.claim and ahead is None:
                columns["status"] = RunStatus.RUNNING.value
            new_runs.append(
                {
                    "id": run.id,
                    "session_id": run.session_id,
                    "tenant": run.tenant,
                    "agent": run.agent,
                    "input": dumps(run.input),
                    "trigger": run.trigger.value,
                    "parent_run_id": run.parent_run_id,
                    "schedule_id": run.schedule_id,
                    "idempotency_key": run.idempotency_key,
                    "created_at": run.created_at,
                    "worker_id": start.owner,
                    "lease_expires_at": start.lease_until,
                    **columns,
                }
            )
            new_events.append(start.queued)
            outcomes.append(ahead)
        if new_sessions:
            await conn.execute(sessions.insert(), new_sessions)
        if new_runs:
            await conn.execute(runs.insert(), new_runs)
            await self._insert_events(conn, new_events)
        return outcomes

    async def get_run(self, run_id: str, tenant: str | None = None) -> Run:
        async with self._read() as conn:
            return await _require_run(conn, run_id, tenant)

    async def find_run(self, tenant: str, idempotency_key: str) -> Run | None:
        query = runs.select().where(
            runs.c.tenant == tenant, runs.c.idempotency_key == idempotency_key
        )
        async with self._read() as conn:
            row = (await conn.execute(query)).first()
        return None if row is None else _run(row)

    async def list_runs(
        self, where: RunFilter, *, limit: int = 50, before: str | None = None
    ) -> list[Run]:
        query = runs.select()
        for name in ("tenant", "agent", "session_id", "trigger", "parent_run_id", "schedule_id"):
            value = getattr(where, name)
            if value is not None:
                query = query.where(runs.c[name] == value)
        if where.status is not None:
            query = query.where(runs.c.status == where.status.value)
        if before is not None:
            query = query.where(runs.c.id < before)
        query = query.order_by(runs.c.id.desc()).limit(limit)
        async with self._read() as conn:
            return [_run(row) for row in (await conn.execute(query)).all()]

    async def count_runs(self) -> dict[RunStatus, int]:
        query = sa.select(runs.c.status, sa.func.count()).group_by(runs.c.status)
        async with self._read() as conn:
            rows = (await conn.execute(query)).all()
        return {RunStatus(status): count for status, count in rows}

    async def active_runs(self, session_id: str) -> list[Run]:
        query = (
            runs.select()
            .where(runs.c.session_id == session_id, runs.c.status.in_(ACTIVE_STATUSES))
            .order_by(runs.c.id)
        )
        async with self._read() as conn:
            return [_run(row) for row in (await conn.execute(query)).all()]

    async def startable_runs(self, limit: int = 100) -> list[Run]:
        other = runs.alias("other")
        earlier_or_running = sa.exists().where(
            other.c.session_id == runs.c.session_id,
            sa.or_(
                other.c.status == RunStatus.RUNNING.value,
                sa.and_(other.c.status == RunStatus.PENDING.value, other.c.id < runs.c.id),
            ),
        )
        query = (
            runs.select()
            .where(runs.c.status == RunStatus.PENDING.value, ~earlier_or_running)
            .order_by(runs.c.id)
            .limit(limit)
        )
        async with self._read() as conn:
            return [_run(row) for row in (await conn.execute(query)).all()]

    async def claim_run(self, run_id: str, worker_id: str, lease_until: float) -> bool:
        query = (
            runs.update()
            .where(runs.c.id == run_id, runs.c.status == RunStatus.PENDING.value)
            .values(
                status=RunStatus.RUNNING.value, worker_id=worker_id, lease_expires_at=lease_until
            )
        )
        try:
            async with self._write() as conn:
                return (await conn.execute(query)).rowcount == 1
        except IntegrityError:  # another run of the session is running
            return False

    async def write_batch(self, events: Sequence[Event], states: Mapping[str, RunState]) -> None:
        async with self._write() as conn:
            if events:
                await self._insert_events(conn, events)
            if states:
                await conn.execute(
                    runs.update().where(runs.c.id == sa.bindparam("run_id")),
                    [{"run_id": rid, **_state_columns(s)} for rid, s in states.items()],
                )

    async def end_run(
        self, run_id: str, only_if: frozenset[RunStatus], terminal: Callable[[Run], Event]
    ) -> tuple[Run, Event] | None:
        async with self._write() as conn:
            run = await _require_run(conn, run_id, None)
            if run.status not in only_if:
                return None
            event = terminal(run)
            run.state = advance(run.state, event)
            await self._insert_events(conn, [event])
            await conn.execute(
                runs.update().where(runs.c.id == run_id).values(**_state_columns(run.state))
            )
            return run, event

    # conversation history

    async def append_messages(self, batch: Sequence[Message]) -> None:
        if not batch:
            return
        async with self._write() as conn:
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
            sa.select(*_EVENT_COLUMNS)
            .select_from(_EVENTS_WITH_RUNS)
            .where(events.c.run_id == run_id, events.c.seq > after)
            .order_by(events.c.seq)
            .limit(limit)
        )
        async with self._read() as conn:
            return _events((await conn.execute(query)).all())

    async def read_session_events(
        self, session_ids: Sequence[str], after: int = 0, limit: int = 1000
    ) -> list[Event]:
        query = (
            sa.select(*_EVENT_COLUMNS)
            .select_from(_EVENTS_WITH_RUNS)
            .where(events.c.session_id.in_(session_ids), events.c.pos > after)
            .order_by(events.c.pos)
            .limit(limit)
        )
        async with self._read() as conn:
            return _events((await conn.execute(query)).all())

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

    async def run_tree(self, run_id: str, tenant: str | None = None) -> list[Run]:
        async with self._read() as conn:
            tree = [await _require_run(conn, run_id, tenant)]
            frontier = [run_id]
            while frontier:
                query = runs.select().where(runs.c.parent_run_id.in_(frontier)).order_by(runs.c.id)
                level = [_run(row) for row in (await conn.execute(query)).all()]
                tree.extend(level)
                frontier = [r.id for r in level]
            return tree

    # ownership and housekeeping

    async def renew_leases(self, worker_id: str, until: float) -> None:
        async with self._write() as conn:
            await conn.execute(
                runs.update()
                .where(runs.c.worker_id == worker_id, runs.c.status.in_(ACTIVE_STATUSES))
                .values(lease_expires_at=until)
            )

    async def runs_owned_elsewhere(self, worker_id: str) -> list[Ownership]:
        query = sa.select(runs.c.id, runs.c.worker_id, runs.c.lease_expires_at).where(
            runs.c.status.in_(ACTIVE_STATUSES),
            sa.or_(runs.c.worker_id.is_(None), runs.c.worker_id != worker_id),
        )
        async with self._read() as conn:
            rows = (await conn.execute(query)).all()
        return [Ownership(r.id, r.worker_id, r.lease_expires_at) for r in rows]

    async def purge_events(self, finished_before: float) -> int:
        ended = sa.select(runs.c.id).where(
            runs.c.completed_at < finished_before, runs.c.status.not_in(ACTIVE_STATUSES)
        )
        async with self._write() as conn:
            result = await conn.execute(events.delete().where(events.c.run_id.in_(ended)))
            return result.rowcount


async def _insert_events(conn: AsyncConnection, batch: Sequence[Event]) -> None:
    # the database numbers the log; one transaction writes at a time, so in commit order
    rows = [
        {
            "run_id": event.run_id,
            "seq": event.seq,
            "session_id": event.session_id,
            "type": event.type,
            "ts": event.ts,
            "data": dumps(event.data),
        }
        for event in batch
    ]
    if conn.dialect.name == "sqlite":
        # AUTOINCREMENT numbers rows one by one; nobody else writes inside our transaction
        await conn.execute(events.insert(), rows)
        last = (await conn.execute(sa.text("SELECT last_insert_rowid()"))).scalar_one()
        positions: Sequence[int] = range(last - len(rows) + 1, last + 1)
    else:
        query = events.insert().returning(events.c.pos, sort_by_parameter_order=True)
        positions = (await conn.execute(query, rows)).scalars().all()
    for event, pos in zip(batch, positions, strict=True):
        event.pos = pos


async def _require_session(conn: AsyncConnection, session_id: str, tenant: str | None) -> Session:
    query = sessions.select().where(sessions.c.id == session_id)
    if tenant is not None:
        query = query.where(sessions.c.tenant == tenant)
    row = (await conn.execute(query)).first()
    if row is None:
        raise NotFound(f"no session {session_id}")
    return _session(row)


async def _require_run(conn: AsyncConnection, run_id: str, tenant: str | None) -> Run:
    query = runs.select().where(runs.c.id == run_id)
    if tenant is not None:
        query = query.where(runs.c.tenant == tenant)
    row = (await conn.execute(query)).first()
    if row is None:
        raise NotFound(f"no run {run_id}")
    return _run(row)


def _session_columns(session: Session) -> dict[str, Any]:
    return {
        "id": session.id,
        "tenant": session.tenant,
        "parent_id": session.parent_id,
        "metadata": dumps(session.metadata),
        "created_at": session.created_at,
    }


def _state_columns(state: RunState) -> dict[str, Any]:
    return {
        "status": state.status.value,
        "last_seq": state.last_seq,
        "last_event_at": state.last_event_at,
        "started_at": state.started_at,
        "completed_at": state.completed_at,
        "round": state.round,
        "last_tool": state.last_tool,
        "last_tool_phase": state.last_tool_phase.value if state.last_tool_phase else None,
        "usage": None if state.usage is None else dumps(state.usage),
        "children_usage": None if state.children_usage is None else dumps(state.children_usage),
        "output": None if state.output is None else dumps(state.output),
        "error": state.error,
    }


def _session(row: sa.Row[Any]) -> Session:
    return Session(
        id=row.id,
        tenant=row.tenant,
        created_at=row.created_at,
        metadata=orjson.loads(row.metadata),
        parent_id=row.parent_id,
    )


def _run(row: sa.Row[Any]) -> Run:
    state = RunState(
        status=RunStatus(row.status),
        last_seq=row.last_seq,
        last_event_at=row.last_event_at,
        started_at=row.started_at,
        completed_at=row.completed_at,
        round=row.round,
        last_tool=row.last_tool,
        last_tool_phase=ToolPhase(row.last_tool_phase) if row.last_tool_phase else None,
        usage=_loads(row.usage),
        children_usage=_loads(row.children_usage),
        output=_loads(row.output),
        error=row.error,
    )
    return Run(
        id=row.id,
        session_id=row.session_id,
        tenant=row.tenant,
        agent=row.agent,
        input=orjson.loads(row.input),
        trigger=Trigger(row.trigger),
        created_at=row.created_at,
        state=state,
        parent_run_id=row.parent_run_id,
        schedule_id=row.schedule_id,
        idempotency_key=row.idempotency_key,
    )


_EVENT_COLUMNS = (
    events.c.pos,
    events.c.run_id,
    events.c.seq,
    events.c.session_id,
    events.c.type,
    events.c.ts,
    events.c.data,
    runs.c.parent_run_id,  # every event carries its run's parent; no event row stores it
)
_EVENTS_WITH_RUNS = events.outerjoin(runs, runs.c.id == events.c.run_id)


def _events(rows: Sequence[tuple[Any, ...]]) -> list[Event]:
    # unpacked by position: catch-up reads build thousands of events per page
    loads = orjson.loads
    return [
        Event(seq, run_id, session_id, type, loads(data), ts, pos, parent)
        for pos, run_id, seq, session_id, type, ts, data, parent in rows
    ]
