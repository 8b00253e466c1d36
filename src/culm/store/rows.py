"""Rows to records and back, and the expressions every SQL dialect spells its own way."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from itertools import chain
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from culm.errors import NotFound
from culm.events import Event
from culm.models import Run, RunState, RunStatus, Session, ToolPhase, Trigger
from culm.store.base import CancelRequest
from culm.store.schema import events, runs, sessions


def dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


def loads(text: str | None) -> Any:
    return None if text is None else orjson.loads(text)


def cancel_request(stored: str | None) -> CancelRequest | None:
    """The cancel request stored on a run (``runs.cancel_request``), if any."""
    if stored is None:
        return None
    body = orjson.loads(stored)
    return CancelRequest(str(body.get("by", "user")), body.get("reason"))


def db_now(conn: AsyncConnection) -> sa.ColumnElement[Any]:
    """The database's clock in epoch seconds: leases are judged by it, never by the clock
    of whichever process happens to look, so processes whose clocks differ still agree."""
    if conn.dialect.name == "postgresql":
        # extract() answers numeric: as float, it adds to the lease seconds we bind
        return sa.cast(sa.extract("epoch", sa.func.clock_timestamp()), sa.Float)
    return (sa.func.julianday("now") - 2440587.5) * 86400.0


async def require_session(conn: AsyncConnection, session_id: str, tenant: str | None) -> Session:
    query = sessions.select().where(sessions.c.id == session_id)
    if tenant is not None:
        query = query.where(sessions.c.tenant == tenant)
    row = (await conn.execute(query)).first()
    if row is None:
        raise NotFound(f"no session {session_id}")
    return session_record(row)


# built once: building a query (and its cache key) cost more than running it
_RUN = runs.select().where(runs.c.id == sa.bindparam("run_id"))
_TENANT_RUN = _RUN.where(runs.c.tenant == sa.bindparam("tenant"))


async def require_run(conn: AsyncConnection, run_id: str, tenant: str | None) -> Run:
    if tenant is None:
        row = (await conn.execute(_RUN, {"run_id": run_id})).first()
    else:
        row = (await conn.execute(_TENANT_RUN, {"run_id": run_id, "tenant": tenant})).first()
    if row is None:
        raise NotFound(f"no run {run_id}")
    return run_record(row)


def session_columns(session: Session) -> dict[str, Any]:
    return {
        "id": session.id,
        "tenant": session.tenant,
        "parent_id": session.parent_id,
        "metadata": dumps(session.metadata),
        "created_at": session.created_at,
    }


def state_columns(state: RunState) -> dict[str, Any]:
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
        "waiting": None if state.waiting is None else dumps(state.waiting),
        "input_deadline": state.input_deadline,
    }


def run_columns(run: Run) -> dict[str, Any]:
    return {
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
        "epoch": run.epoch,
        "grant": None if run.grant is None else dumps(run.grant),
        "depth": run.depth,
        "attempt": run.attempt,
        **state_columns(run.state),
    }


def session_record(row: sa.Row[Any]) -> Session:
    return Session(
        id=row.id,
        tenant=row.tenant,
        created_at=row.created_at,
        metadata=orjson.loads(row.metadata),
        parent_id=row.parent_id,
    )


def run_record(row: sa.Row[Any]) -> Run:
    state = RunState(
        status=RunStatus(row.status),
        last_seq=row.last_seq,
        last_event_at=row.last_event_at,
        started_at=row.started_at,
        completed_at=row.completed_at,
        round=row.round,
        last_tool=row.last_tool,
        last_tool_phase=ToolPhase(row.last_tool_phase) if row.last_tool_phase else None,
        usage=loads(row.usage),
        children_usage=loads(row.children_usage),
        output=loads(row.output),
        error=row.error,
        waiting=loads(row.waiting),
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
        epoch=row.epoch,
        grant=loads(row.grant),
        depth=row.depth,
        attempt=row.attempt,
    )


EVENT_COLUMNS = (
    events.c.pos,
    events.c.run_id,
    events.c.seq,
    events.c.session_id,
    events.c.type,
    events.c.ts,
    events.c.data,
    runs.c.parent_run_id,  # every event carries its run's parent; no event row stores it
)
_SQLITE_INSERT_EVENTS = "INSERT INTO events (run_id, seq, session_id, type, ts, data) VALUES "
_SQLITE_ROW = "(?, ?, ?, ?, ?, ?)"
_SQLITE_ROWS = 1_000
"""Rows per statement: 6,000 parameters, under SQLite's limit of 32,766."""
EVENTS_WITH_RUNS = events.outerjoin(runs, runs.c.id == events.c.run_id)


def event_records(rows: Sequence[tuple[Any, ...]]) -> list[Event]:
    # unpacked by position: catch-up reads build thousands of events per page
    decode = orjson.loads
    return [
        Event(seq, run_id, session_id, type, decode(data), ts, pos, parent)
        for pos, run_id, seq, session_id, type, ts, data, parent in rows
    ]


async def insert_events(conn: AsyncConnection, batch: Sequence[Event]) -> None:
    """Append events; each gets its ``pos``, which grows in commit order (one writer
    transaction at a time)."""
    if conn.dialect.name == "sqlite":
        positions: Sequence[int] = await _insert_sqlite(conn, batch)
    else:
        rows = [
            {
                "run_id": event.run_id,
                "seq": event.seq,
                "session_id": event.session_id,
                "type": event.type,
                "ts": event.ts,
                "data": event.data_json().decode(),
            }
            for event in batch
        ]
        query = events.insert().returning(events.c.pos, sort_by_parameter_order=True)
        positions = (await conn.execute(query, rows)).scalars().all()
    for event, pos in zip(batch, positions, strict=True):
        event.pos = pos


def sqlite_event_rows(batch: Sequence[Event]) -> list[tuple[Any, ...]]:
    """The events as SQLite rows, in the order of ``sqlite_event_inserts``."""
    return [(e.run_id, e.seq, e.session_id, e.type, e.ts, e.data_json().decode()) for e in batch]


def sqlite_event_inserts(rows: Sequence[tuple[Any, ...]]) -> Iterator[tuple[str, list[Any], int]]:
    """The statements that insert ``rows`` on SQLite, several rows per statement (a burst
    of thousands of events would otherwise spend more in building each row's parameters
    than SQLite spends storing them): each statement, its parameters and its row count."""
    for start in range(0, len(rows), _SQLITE_ROWS):
        chunk = rows[start : start + _SQLITE_ROWS]
        sql = _SQLITE_INSERT_EVENTS + ", ".join([_SQLITE_ROW] * len(chunk))
        yield sql, list(chain.from_iterable(chunk)), len(chunk)


async def _insert_sqlite(conn: AsyncConnection, batch: Sequence[Event]) -> list[int]:
    """Insert events as plain rows straight to the driver; their positions. A statement's
    last row id numbers all its rows: AUTOINCREMENT numbers them one by one, and nobody
    else writes inside our transaction."""
    positions: list[int] = []
    for sql, values, count in sqlite_event_inserts(sqlite_event_rows(batch)):
        last = (await conn.exec_driver_sql(sql, tuple(values))).lastrowid
        positions.extend(range(last - count + 1, last + 1))
    return positions
