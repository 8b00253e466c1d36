"""Starts in the SQL store: the starts that arrive together are written in one transaction.

A start is refused (busy session, unknown session) or replays the run its idempotency key
already started before anything is written for it; the rest of its group is written with a
few statements in all, and on SQLite, when no start of the group has to read first, straight
on the writer's connection in one trip (``sqlite_direct.Writer``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, replace
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from culm.errors import CulmError, IdempotencyKeyReused, NotFound, SessionBusy, StartClashed
from culm.events import Event
from culm.models import ACTIVE_STATUSES, Run, RunStatus, Session
from culm.projection import advance
from culm.store import sqlite_direct
from culm.store.base import Created
from culm.store.group import WriteGroup
from culm.store.rows import (
    db_now,
    run_columns,
    run_record,
    session_columns,
    sqlite_event_rows,
    state_columns,
)
from culm.store.schema import runs, sessions
from culm.store.sqlite_direct import Writer, commit_after, one_trip

START_ATTEMPTS = 3
"""How many times a start is written when concurrent starts keep clashing with it."""


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


class StartQueries:
    """Mixed into ``SqlStore``; see ``culm.store.base.Store`` for what each call promises."""

    _starts: WriteGroup[Start, Created, AsyncConnection | Writer]

    def _write(self, *, appends: bool = True) -> AbstractAsyncContextManager[AsyncConnection]:
        raise NotImplementedError

    def _write_direct(self) -> AbstractAsyncContextManager[Writer | None]:
        raise NotImplementedError

    async def _insert_events(self, conn: AsyncConnection, batch: Sequence[Event]) -> None:
        raise NotImplementedError

    def _written_in_one_trip(self, batch: Sequence[Event], positions: Sequence[int]) -> None:
        raise NotImplementedError

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
        for _ in range(START_ATTEMPTS):
            try:
                return await self._starts.run(start)
            except IntegrityError:
                # another process stored the same idempotency key (or claimed the session)
                # between our check and our insert: asked again, the check now sees it
                continue
        raise StartClashed(
            f"starting run {run.id} clashed with other starts {START_ATTEMPTS} times; "
            "try again (with the same idempotency key, a retry is safe)"
        )

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
