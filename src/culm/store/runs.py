"""Run queries for the SQL store: reads, claims, fenced writes and ends (starts: ``starts``).

Every write for a run names the fence its writer holds (the owner and the epoch of its
claim); the write happens only while the stored run still has that owner and epoch and is
active. A claim and every end written from outside the run's runner bump the epoch, so a
process that lost a run (its lease ran out while it was stopped, say) can write nothing
more for it, whatever it still believes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from culm.errors import NotFound
from culm.events import Event
from culm.models import ACTIVE_STATUSES, Run, RunState, RunStatus
from culm.projection import advance
from culm.store import sqlite_direct
from culm.store.base import Fence, RunFilter
from culm.store.ownership import lost_runs
from culm.store.rows import (
    db_now,
    require_run,
    run_record,
    sqlite_event_rows,
    state_columns,
)
from culm.store.schema import events, runs
from culm.store.sqlite_direct import RunReader, Writer, one_trip, read_run, state_row

# the statements every event batch runs, built once (building one cost more than running it)
_UPDATE_STATE = runs.update().where(runs.c.id == sa.bindparam("run_id"))


_HOLDING = (RunStatus.RUNNING.value, RunStatus.WAITING.value)
"""The statuses in which a run holds its session: nothing else starts on it."""


class RunQueries:
    """Mixed into ``SqlStore``; see ``culm.store.base.Store`` for what each call promises."""

    _here: RunReader | None

    _write_lock: asyncio.Lock

    def settled(self) -> bool:
        raise NotImplementedError

    async def announced(self) -> bool:
        raise NotImplementedError

    def _write(self, *, appends: bool = True) -> AbstractAsyncContextManager[AsyncConnection]:
        raise NotImplementedError

    def _write_direct(self) -> AbstractAsyncContextManager[Writer | None]:
        raise NotImplementedError

    def _read(self) -> AbstractAsyncContextManager[AsyncConnection]:
        raise NotImplementedError

    async def _insert_events(self, conn: AsyncConnection, batch: Sequence[Event]) -> None:
        raise NotImplementedError

    def _written_in_one_trip(self, batch: Sequence[Event], positions: Sequence[int]) -> None:
        raise NotImplementedError

    # reads

    async def get_run(self, run_id: str, tenant: str | None = None, *, latest: bool = False) -> Run:
        # on the loop, kept only when no commit began that is not announced yet (checked
        # after the read): what is read must never be ahead of what was announced, unless
        # the caller does not mind (``latest``: a stream, which waits for what it follows).
        # While the store's own transaction is under way, the read waits for it to be
        # announced and is made again: a read on a reader's thread costs ten times the CPU
        here = self._here
        if here is not None:  # SQLite, read on the loop
            read = here.read_run(run_id, tenant)
            if read is not None and not (latest or self.settled()) and await self.announced():
                read = here.read_run(run_id, tenant)
            if read is not None and (latest or self.settled()):
                if read[0] is None:
                    raise NotFound(f"no run {run_id}")
                return run_record(read[0])
        async with self._read() as conn:
            driver = one_trip(conn)
            if driver is None:
                return await require_run(conn, run_id, tenant)
            # SQLite: every request about a run reads it; straight to the driver
            row = await read_run(driver, run_id, tenant)
        if row is None:
            raise NotFound(f"no run {run_id}")
        return run_record(row)

    async def find_run(self, tenant: str, idempotency_key: str) -> Run | None:
        query = runs.select().where(
            runs.c.tenant == tenant, runs.c.idempotency_key == idempotency_key
        )
        async with self._read() as conn:
            row = (await conn.execute(query)).first()
        return None if row is None else run_record(row)

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
            return [run_record(row) for row in (await conn.execute(query)).all()]

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
            return [run_record(row) for row in (await conn.execute(query)).all()]

    async def startable_runs(self, limit: int = 100) -> list[Run]:
        other = runs.alias("other")
        earlier_or_running = sa.exists().where(
            other.c.session_id == runs.c.session_id,
            sa.or_(
                other.c.status.in_(_HOLDING),
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
            return [run_record(row) for row in (await conn.execute(query)).all()]

    async def run_tree(self, run_id: str, tenant: str | None = None) -> list[Run]:
        async with self._read() as conn:
            tree = [await require_run(conn, run_id, tenant)]
            frontier = [run_id]
            while frontier:
                query = runs.select().where(runs.c.parent_run_id.in_(frontier)).order_by(runs.c.id)
                level = [run_record(row) for row in (await conn.execute(query)).all()]
                tree.extend(level)
                frontier = [r.id for r in level]
            return tree

    # fenced writes

    async def claim_run(self, run_id: str, worker_id: str, lease_seconds: float) -> int | None:
        try:
            async with self._write(appends=False) as conn:
                query = (
                    runs.update()
                    .where(runs.c.id == run_id, runs.c.status == RunStatus.PENDING.value)
                    .values(
                        status=RunStatus.RUNNING.value,
                        worker_id=worker_id,
                        lease_expires_at=db_now(conn) + lease_seconds,
                        epoch=runs.c.epoch + 1,
                    )
                    .returning(runs.c.epoch)
                )
                epoch: int | None = (await conn.execute(query)).scalar_one_or_none()
                return epoch
        except IntegrityError:  # another run of the session is running
            return None

    async def write_batch(
        self,
        events: Sequence[Event],
        states: Mapping[str, RunState],
        fences: Mapping[str, Fence],
    ) -> set[str]:
        async with self._write_direct() as direct:
            if direct is not None:  # SQLite: the whole transaction in one trip
                rows = sqlite_event_rows(events)
                values = {rid: state_row(s) for rid, s in states.items()}
                lost, positions = await direct.commit_after(
                    sqlite_direct.write_batch, rows, values, fences
                )
                written = [e for e in events if e.run_id not in lost] if lost else events
                self._written_in_one_trip(written, positions)
                return lost
        async with self._write() as conn:
            lost = await lost_runs(conn, fences)
            if lost:
                events = [e for e in events if e.run_id not in lost]
                states = {rid: s for rid, s in states.items() if rid not in lost}
            if events:
                await self._insert_events(conn, events)
            if states:
                await conn.execute(
                    _UPDATE_STATE,
                    [{"run_id": rid, **state_columns(s)} for rid, s in states.items()],
                )
            return lost

    async def end_run(
        self,
        run_id: str,
        only_if: frozenset[RunStatus],
        terminal: Callable[[Run], Event],
        *,
        fence: Fence | None = None,
    ) -> tuple[Run, Event] | None:
        def allowed(run: Run, row: sa.Row[Any]) -> bool:
            if run.status not in only_if:
                return False
            return fence is None or (row.worker_id, row.epoch) == (fence.worker_id, fence.epoch)

        async with self._write() as conn:
            return await self._append_outside(conn, run_id, allowed, terminal)

    async def _append_outside(
        self,
        conn: AsyncConnection,
        run_id: str,
        allowed: Callable[[Run, sa.Row[Any]], bool],
        make: Callable[[Run], Event],
        **values: Any,
    ) -> tuple[Run, Event] | None:
        """Write the next event of a run from outside its runner (an end, an answer), with
        its state and ``values``, in ``conn``'s transaction, when ``allowed`` by the locked
        row. The epoch is bumped: a process that still believes it holds the run writes
        nothing more for it."""
        query = runs.select().where(runs.c.id == run_id).with_for_update()
        row = (await conn.execute(query)).first()
        if row is None:
            raise NotFound(f"no run {run_id}")
        run = run_record(row)
        if not allowed(run, row):
            return None
        event = make(run)
        run.state = advance(run.state, event)
        run.epoch += 1
        await self._insert_events(conn, [event])
        await conn.execute(
            runs.update()
            .where(runs.c.id == run_id)
            .values(epoch=run.epoch, **values, **state_columns(run.state))
        )
        return run, event

    async def purge_events(self, finished_before: float) -> int:
        ended = sa.select(runs.c.id).where(
            runs.c.completed_at < finished_before, runs.c.status.not_in(ACTIVE_STATUSES)
        )
        async with self._write(appends=False) as conn:
            result = await conn.execute(events.delete().where(events.c.run_id.in_(ended)))
            return result.rowcount
