"""Reads of the event log, for the SQL store: a run's events by ``seq``, sessions' and
the whole log's by ``pos``, and where the log ends.

They read through the reader pool and never wait for the writer. A position read here is
safe to resume from: positions become visible in order (the log lock, see ``sql.py``).
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from culm.events import Event
from culm.store.rows import EVENT_COLUMNS, EVENTS_WITH_RUNS, event_records
from culm.store.schema import events


class LogQueries:
    """Mixed into ``SqlStore``; see ``culm.store.base.Store`` for what each call promises."""

    def _read(self) -> AbstractAsyncContextManager[AsyncConnection]:
        raise NotImplementedError

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
