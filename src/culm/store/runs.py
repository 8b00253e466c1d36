"""Run queries for the SQL store: starts, reads, claims, fenced writes and ends.

Every write for a run names the fence its writer holds (the owner and the epoch of its
claim); the write happens only while the stored run still has that owner and epoch and is
active. A claim and every end written from outside the run's runner bump the epoch, so a
process that lost a run (its lease ran out while it was stopped, say) can write nothing
more for it, whatever it still believes.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, replace
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from culm.errors import CulmError, IdempotencyKeyReused, NotFound, SessionBusy
from culm.events import Event
from culm.models import ACTIVE_STATUSES, Run, RunState, RunStatus, Session
from culm.projection import advance
from culm.store import sqlite_direct
from culm.store.base import Created, Fence, RunFilter
from culm.store.group import WriteGroup
from culm.store.ownership import lost_runs
from culm.store.rows import (
    db_now,
    require_run,
    run_columns,
    run_record,
    session_columns,
    sqlite_event_rows,
    state_columns,
)
from culm.store.schema import events, runs, sessions
from culm.store.sqlite_direct import RunReader, Writer, commit_after, one_trip, read_run, state_row

# the statements every event batch runs, built once (building one cost more than running it)
_UPDATE_STATE = runs.update().where(runs.c.id == sa.bindparam("run_id"))


@dataclass(slots=True, frozen=True)
class Start:
    """One ``create_run`` call, waiting for its group's transaction."""

    run: Run
    queued: Event
    reject_if_busy: bool
    owner: str
    lease_seconds: float
    claim: bool
    new_session: Session | None
    supersede: Callable[[Run], Event] | None = None


_HOLDING = (RunStatus.RUNNING.value, RunStatus.WAITING.value)
"""The statuses in which a run holds its session: nothing else starts on it."""


class RunQueries:
    """Mixed into ``SqlStore``; see ``culm.store.base.Store`` for what each call promises."""

    _starts: WriteGroup[Start, Created, AsyncConnection | Writer]
    _here: RunReader | None
    _write_lock: asyncio.Lock

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

    # starts

    async def create_run(
        self,
        run: Run,
        queued: Event,
        *,
        reject_if_busy: bool,
        owner: str,
        lease_seconds: float,
        claim: bool = False,
        new_session: Session | None = None,
        supersede: Callable[[Run], Event] | None = None,
    ) -> Created:
        # runs are started in bursts: starts that arrive together share one commit
        start = Start(
            run, queued, reject_if_busy, owner, lease_seconds, claim, new_session, supersede
        )
        try:
            return await self._starts.run(start)
        except IntegrityError:
            # another process stored the same idempotency key (or claimed the session)
            # between our check and our insert: asked again, the check now sees it
            return await self._starts.run(start)

    @asynccontextmanager
    async def _start_transaction(
        self, starts: Sequence[Start]
    ) -> AsyncIterator[AsyncConnection | Writer]:
        """The transaction of a group of starts. A start on a new session without an
        idempotency key reads nothing first: a group of only those is written straight
        on SQLite's writer connection, in one trip (``_write_starts``)."""
        if all(s.new_session is not None and s.run.idempotency_key is None for s in starts):
            async with self._write_direct() as direct:
                if direct is not None:
                    yield direct
                    return
        async with self._write() as conn:
            yield conn

    async def _create_runs(
        self, conn: AsyncConnection | Writer, starts: Sequence[Start]
    ) -> list[Created | CulmError]:
        """Write a group of starts with a few statements in all, not a few per start."""
        wanted = {s.run.session_id for s in starts if s.new_session is None}
        known: dict[str, str] = {}
        line: dict[str, list[Run]] = {}  # each session's active runs, oldest first
        if wanted:
            assert isinstance(conn, AsyncConnection), "a start that reads in a direct write"
            rows = await conn.execute(
                sa.select(sessions.c.id, sessions.c.tenant).where(sessions.c.id.in_(wanted))
            )
            known = {row.id: row.tenant for row in rows}
            active = await conn.execute(
                runs.select()
                .where(runs.c.session_id.in_(wanted), runs.c.status.in_(ACTIVE_STATUSES))
                .order_by(runs.c.id)
                # a claim elsewhere waits until the runs this group may supersede are ended
                .with_for_update()
            )
            for row in active:
                line.setdefault(row.session_id, []).append(run_record(row))
        keyed = await _runs_by_key(conn, starts) if isinstance(conn, AsyncConnection) else {}
        outcomes: list[Created | CulmError] = []
        new_sessions: list[dict[str, Any]] = []
        new_runs: dict[str, tuple[Run, Start]] = {}
        ended: dict[str, tuple[Run, Event]] = {}  # runs this group cancels, and how
        for start in starts:
            run = start.run
            key = (run.tenant, run.idempotency_key)
            earlier = keyed.get(key) if run.idempotency_key is not None else None
            if earlier is not None:
                outcomes.append(_replay(earlier, start))
                continue
            if start.new_session is not None:
                known[run.session_id] = run.tenant
            elif known.get(run.session_id) != run.tenant:
                outcomes.append(NotFound(f"no session {run.session_id}"))
                continue
            waiting = line.setdefault(run.session_id, [])
            if start.supersede is not None:
                # the runs waiting on the session are cancelled in this very transaction,
                # so of many concurrent interrupts the last one stored is the one that runs
                for queued in [r for r in waiting if r.status is RunStatus.PENDING]:
                    event = start.supersede(queued)
                    queued.state = advance(queued.state, event)
                    queued.epoch += 1
                    ended[queued.id] = (queued, event)
                    waiting.remove(queued)
            ahead = waiting[0].id if waiting else None
            if ahead is not None and start.reject_if_busy:
                outcomes.append(SessionBusy(run.session_id, ahead))
                continue
            if start.new_session is not None:
                new_sessions.append(session_columns(start.new_session))
            stored = run
            if start.claim and ahead is None:
                state = replace(run.state, status=RunStatus.RUNNING)
                stored = replace(run, state=state, epoch=1)
            waiting.append(stored)
            new_runs[stored.id] = (stored, start)
            if run.idempotency_key is not None:
                keyed[key] = stored
            outcomes.append(Created(stored, True, ahead))
        stored_before = [r for rid, (r, _) in ended.items() if rid not in new_runs]
        # each run's queued event before its cancellation, when both are written here
        written = [start.queued for _, start in new_runs.values()]
        written += [event for _, event in ended.values()]
        await self._write_starts(
            conn,
            new_sessions,
            [
                {
                    **run_columns(stored),
                    "worker_id": start.owner,
                    "lease_seconds": start.lease_seconds,
                }
                for stored, start in new_runs.values()
            ],
            [{"run_id": r.id, "epoch": r.epoch, **state_columns(r.state)} for r in stored_before],
            written,
        )
        return outcomes

    async def _write_starts(
        self,
        conn: AsyncConnection | Writer,
        new_sessions: list[dict[str, Any]],
        new_runs: list[dict[str, Any]],
        ended: list[dict[str, Any]],
        written: list[Event],
    ) -> None:
        """The writes of a group of starts: sessions, runs (their leases judged by the
        database's clock), the runs they ended, and the events of both."""
        if isinstance(conn, Writer):  # SQLite, straight on the writer's connection
            rows = sqlite_event_rows(written)
            positions = await conn.commit_after(
                sqlite_direct.write_starts, new_sessions, new_runs, ended, rows
            )
            self._written_in_one_trip(written, positions)
            return
        driver = one_trip(conn)
        if driver is not None:  # SQLite: the writes and the commit in one trip
            rows = sqlite_event_rows(written)
            positions = await commit_after(
                driver, sqlite_direct.write_starts, new_sessions, new_runs, ended, rows
            )
            self._written_in_one_trip(written, positions)
            return
        if new_sessions:
            await conn.execute(sessions.insert(), new_sessions)
        if new_runs:
            lease = db_now(conn) + sa.bindparam("lease_seconds", type_=sa.Float)
            await conn.execute(runs.insert().values(lease_expires_at=lease), new_runs)
        if ended:
            await conn.execute(runs.update().where(runs.c.id == sa.bindparam("run_id")), ended)
        if written:
            await self._insert_events(conn, written)

    # reads

    async def get_run(self, run_id: str, tenant: str | None = None) -> Run:
        # on the loop only while no write is in flight: a commit it could see would not have
        # been announced yet, and what is read must never be ahead of what was announced
        here = None if self._write_lock.locked() else self._here
        read = None if here is None else here.read_run(run_id, tenant)
        if read is not None:  # SQLite, read on the loop itself
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
        async with self._write() as conn:
            query = runs.select().where(runs.c.id == run_id).with_for_update()
            row = (await conn.execute(query)).first()
            if row is None:
                raise NotFound(f"no run {run_id}")
            run = run_record(row)
            if run.status not in only_if:
                return None
            if fence is not None and (row.worker_id, row.epoch) != (fence.worker_id, fence.epoch):
                return None
            event = terminal(run)
            run.state = advance(run.state, event)
            run.epoch += 1
            await self._insert_events(conn, [event])
            await conn.execute(
                runs.update()
                .where(runs.c.id == run_id)
                .values(epoch=run.epoch, **state_columns(run.state))
            )
            return run, event

    async def purge_events(self, finished_before: float) -> int:
        ended = sa.select(runs.c.id).where(
            runs.c.completed_at < finished_before, runs.c.status.not_in(ACTIVE_STATUSES)
        )
        async with self._write(appends=False) as conn:
            result = await conn.execute(events.delete().where(events.c.run_id.in_(ended)))
            return result.rowcount


async def _runs_by_key(
    conn: AsyncConnection, starts: Sequence[Start]
) -> dict[tuple[str, str | None], Run]:
    """The stored runs whose (tenant, idempotency key) a start of the group names."""
    keys = {(s.run.tenant, s.run.idempotency_key) for s in starts if s.run.idempotency_key}
    if not keys:
        return {}
    query = runs.select().where(
        sa.tuple_(runs.c.tenant, runs.c.idempotency_key).in_([tuple(k) for k in keys])
    )
    rows = (await conn.execute(query)).all()
    return {(row.tenant, row.idempotency_key): run_record(row) for row in rows}


def replay(earlier: Run, agent: str, session_id: str | None) -> Run:
    """The earlier run a retried start names (``session_id`` None: any session), or
    ``IdempotencyKeyReused`` when the key started a run of another agent or session."""
    if earlier.agent != agent or session_id not in (None, earlier.session_id):
        raise IdempotencyKeyReused(
            f"the Idempotency-Key {earlier.idempotency_key!r} was already used to start run "
            f"{earlier.id} of agent {earlier.agent!r} on session {earlier.session_id}"
        )
    return earlier


def _replay(earlier: Run, start: Start) -> Created | CulmError:
    run = start.run
    session_id = None if start.new_session is not None else run.session_id
    try:
        return Created(replay(earlier, run.agent, session_id), False, None)
    except IdempotencyKeyReused as exc:
        return exc
