"""Ownership queries for the SQL store: who holds a run, leases judged by the database's
clock, taking over a dead process's runs and handing runs back.

A process holds a run under a ``Fence`` (its worker id and the epoch of its claim). The
fence check (``lost_runs``) runs inside the write transaction that it guards.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from culm.events import Event
from culm.models import ACTIVE_STATUSES, Run, RunStatus
from culm.projection import advance
from culm.store.base import CancelRequest, Fence, Ownership
from culm.store.rows import cancel_request, db_now, run_record, state_columns
from culm.store.schema import runs


class OwnershipQueries:
    """Mixed into ``SqlStore``; see ``culm.store.base.Store`` for what each call promises."""

    def _write(self, *, appends: bool = True) -> AbstractAsyncContextManager[AsyncConnection]:
        raise NotImplementedError

    def _read(self) -> AbstractAsyncContextManager[AsyncConnection]:
        raise NotImplementedError

    async def _insert_events(self, conn: AsyncConnection, batch: Sequence[Event]) -> None:
        raise NotImplementedError

    async def resume_runs(
        self,
        claims: Sequence[tuple[str, Fence | None]],
        worker_id: str,
        lease_seconds: float,
        resumed: Callable[[Run], Event],
        cancelled: Callable[[Run, CancelRequest], Event],
    ) -> list[Run]:
        if not claims:
            return []
        async with self._write() as conn:
            fences = dict(claims)
            query = runs.select().where(runs.c.id.in_(list(fences))).order_by(runs.c.id)
            rows = await conn.execute(query.with_for_update())
            taken: list[Run] = []
            ended: list[Run] = []
            written: list[Event] = []
            for row in rows:
                if row.status != RunStatus.RUNNING.value or not _held(row, fences[row.id]):
                    continue
                run = run_record(row)
                asked = cancel_request(row.cancel_request)
                event = resumed(run) if asked is None else cancelled(run, asked)
                run.state = advance(run.state, event)
                run.epoch += 1
                if asked is None:
                    run.attempt += 1
                    taken.append(run)
                else:
                    ended.append(run)
                written.append(event)
            if not written:
                return []
            now = await db_time(conn)
            await self._insert_events(conn, written)
            update = runs.update().where(runs.c.id == sa.bindparam("run_id"))
            if taken:
                await conn.execute(
                    update,
                    [
                        {
                            "run_id": run.id,
                            "epoch": run.epoch,
                            "attempt": run.attempt,
                            "worker_id": worker_id,
                            "lease_expires_at": now + lease_seconds,
                            **state_columns(run.state),
                        }
                        for run in taken
                    ],
                )
            if ended:
                await conn.execute(
                    update,
                    [
                        {"run_id": run.id, "epoch": run.epoch, **state_columns(run.state)}
                        for run in ended
                    ],
                )
            return taken + ended

    async def release_runs(self, worker_id: str, held: Mapping[str, int]) -> None:
        if not held:
            return
        async with self._write() as conn:
            # held by nobody from now on: what tells a hand-back from a crash
            await conn.execute(
                runs.update()
                .where(
                    runs.c.id == sa.bindparam("run_id"),
                    runs.c.worker_id == worker_id,
                    runs.c.epoch == sa.bindparam("held_epoch"),
                    runs.c.status == RunStatus.RUNNING.value,
                )
                .values(worker_id=None, lease_expires_at=db_now(conn) - 1.0),
                [{"run_id": rid, "held_epoch": epoch} for rid, epoch in held.items()],
            )

    # leases

    async def renew_leases(
        self, worker_id: str, lease_seconds: float, held: Mapping[str, int]
    ) -> set[str]:
        async with self._write(appends=False) as conn:
            await conn.execute(
                runs.update()
                .where(runs.c.worker_id == worker_id, runs.c.status.in_(ACTIVE_STATUSES))
                .values(lease_expires_at=db_now(conn) + lease_seconds)
            )
            held_fences = {rid: Fence(worker_id, e) for rid, e in held.items()}
            return await lost_runs(conn, held_fences, lock=False)

    async def runs_owned_elsewhere(self, worker_id: str) -> list[Ownership]:
        # a waiting or answered (pending) run held by nobody needs nobody to take it over:
        # it waits for a person, or for any process to take it up
        return await self._ownership(
            runs.c.status.in_(ACTIVE_STATUSES),
            sa.or_(
                sa.and_(runs.c.worker_id.is_(None), runs.c.status == RunStatus.RUNNING.value),
                runs.c.worker_id != worker_id,
            ),
        )

    async def ownership(self, run_id: str) -> Ownership | None:
        found = await self._ownership(runs.c.id == run_id, runs.c.status.in_(ACTIVE_STATUSES))
        return found[0] if found else None

    async def _ownership(self, *where: sa.ColumnElement[bool]) -> list[Ownership]:
        async with self._read() as conn:
            expired = sa.or_(
                runs.c.lease_expires_at.is_(None), runs.c.lease_expires_at < db_now(conn)
            )
            query = sa.select(
                runs.c.id, runs.c.worker_id, runs.c.epoch, expired.label("expired")
            ).where(*where)
            rows = (await conn.execute(query)).all()
        return [Ownership(r.id, r.worker_id, r.epoch, bool(r.expired)) for r in rows]


def _held(row: sa.Row[Any], fence: Fence | None) -> bool:
    """Whether a running run is still held under ``fence``: by that owner at that epoch, or,
    without one, by nobody (it was handed back at a shutdown). Two processes that race to
    take the same run over: the second finds it held by the first."""
    if fence is None:
        return row.worker_id is None
    return (row.worker_id, row.epoch) == (fence.worker_id, fence.epoch)


async def db_time(conn: AsyncConnection) -> float:
    now: float = (await conn.execute(sa.select(db_now(conn)))).scalar_one()
    return now


async def lost_runs(
    conn: AsyncConnection, fences: Mapping[str, Fence], *, lock: bool = True
) -> set[str]:
    """The runs among ``fences`` that their fence no longer lets write: ended, claimed
    again, owned by another process, or gone. With ``lock`` the rows stay locked until the
    transaction ends (``FOR UPDATE`` on PostgreSQL; SQLite's writer is alone anyway), so no
    other process can claim or end them between this check and the writes it allows."""
    if not fences:
        return set()
    query = (
        sa.select(runs.c.id, runs.c.worker_id, runs.c.epoch, runs.c.status)
        .where(runs.c.id.in_(list(fences)))
        .order_by(runs.c.id)  # one lock order for every writer: no deadlock between two
    )
    if lock:
        query = query.with_for_update()
    rows = await conn.execute(query)
    holding = {
        row.id
        for row in rows
        if row.status in ACTIVE_STATUSES
        and row.worker_id == fences[row.id].worker_id
        and row.epoch == fences[row.id].epoch
    }
    return set(fences) - holding
