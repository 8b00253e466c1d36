"""Claims of queued runs by the processes that execute them, and cancel requests.

A worker claims the oldest runs it can execute that are first in line on their session,
up to its free capacity, in one transaction: ``FOR UPDATE SKIP LOCKED`` lets workers claim
side by side without waiting on each other's rows. With a per-tenant limit, a tenant's
runs are claimed only while fewer than the limit run; claims then take one advisory lock
so that two workers never both take a tenant's last place. A tenant over its limit waits
in order (oldest first) and never blocks another tenant's runs behind its own.

A cancel asked for in any process is stored on the run; the process executing it reads it
at its next look (it is also told on the bus) and stops the run at a safe point.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from contextlib import AbstractAsyncContextManager

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from culm.models import ACTIVE_STATUSES, Run, RunStatus
from culm.store.base import CancelRequest
from culm.store.rows import cancel_request, db_now, dumps, run_record
from culm.store.schema import runs

CLAIM_LOCK = 0x63756C6D_636C6D00  # "culmclm": claims under a per-tenant limit
"""The claim lock's base key; each schema's key is derived from it (``SqlStore.open``)."""

_HOLDING = (RunStatus.RUNNING.value, RunStatus.WAITING.value)
"""The statuses in which a run holds its session: nothing else starts on it."""


class ClaimQueries:
    """Mixed into ``SqlStore``."""

    _claim_lock: int | None
    """Key of this schema's claim lock on PostgreSQL: installations sharing a database
    never wait for each other's claims."""

    def _write(self, *, appends: bool = True) -> AbstractAsyncContextManager[AsyncConnection]:
        raise NotImplementedError

    def _read(self) -> AbstractAsyncContextManager[AsyncConnection]:
        raise NotImplementedError

    async def claim_pending(
        self,
        worker_id: str,
        agents: Collection[str],
        limit: int,
        lease_seconds: float,
        tenant_limit: int | None = None,
    ) -> list[Run]:
        """Claim up to ``limit`` queued runs of ``agents`` that may start now (first in line
        on a free session; their tenant under ``tenant_limit``), oldest first. Each comes
        back running, owned by ``worker_id`` at its new epoch. [] when another process
        claimed a run of the same session meanwhile: the caller asks again later."""
        if limit <= 0 or not agents:
            return []
        try:
            async with self._write(appends=False) as conn:
                postgres = conn.dialect.name == "postgresql"
                if tenant_limit is not None and postgres and self._claim_lock is not None:
                    lock = sa.func.pg_advisory_xact_lock(self._claim_lock)
                    await conn.execute(sa.select(lock))
                wanted = _startable(sorted(agents))
                if tenant_limit is not None:
                    ids = await _within_tenant_limits(conn, wanted, limit, tenant_limit)
                    if not ids:
                        return []
                    wanted = sa.and_(wanted, runs.c.id.in_(ids))
                query = (
                    sa.select(runs.c.id)
                    .where(wanted)
                    .order_by(runs.c.id)
                    .limit(limit)
                    .with_for_update(skip_locked=True, of=runs)
                )
                locked = list((await conn.execute(query)).scalars())
                if not locked:
                    return []
                claim = (
                    runs.update()
                    .where(runs.c.id.in_(locked), runs.c.status == RunStatus.PENDING.value)
                    .values(
                        status=RunStatus.RUNNING.value,
                        worker_id=worker_id,
                        lease_expires_at=db_now(conn) + lease_seconds,
                        epoch=runs.c.epoch + 1,
                    )
                    .returning(*runs.c)
                )
                claimed = [run_record(row) for row in (await conn.execute(claim)).all()]
        except IntegrityError:  # a run of one of these sessions was claimed elsewhere
            return []
        return sorted(claimed, key=lambda r: r.id)

    async def request_cancel(self, run_id: str, by: str, reason: str | None) -> bool:
        """Store a cancel request on an active run (the first one asked stays). False if the
        run is not active or was asked already."""
        query = (
            runs.update()
            .where(
                runs.c.id == run_id,
                runs.c.status.in_(ACTIVE_STATUSES),
                runs.c.cancel_request.is_(None),
            )
            .values(cancel_request=dumps({"by": by, "reason": reason}))
        )
        async with self._write(appends=False) as conn:
            return bool((await conn.execute(query)).rowcount)

    async def cancel_requests(self, run_ids: Sequence[str]) -> dict[str, CancelRequest]:
        """The cancel requests stored on those of ``run_ids`` still active."""
        if not run_ids:
            return {}
        query = sa.select(runs.c.id, runs.c.cancel_request).where(
            runs.c.id.in_(list(run_ids)),
            runs.c.status.in_(ACTIVE_STATUSES),
            runs.c.cancel_request.is_not(None),
        )
        async with self._read() as conn:
            rows = (await conn.execute(query)).all()
        found = {}
        for row in rows:
            asked = cancel_request(row.cancel_request)
            if asked is not None:
                found[row.id] = asked
        return found


def _startable(agents: list[str]) -> sa.ColumnElement[bool]:
    """Queued runs of these agents that are first in line on a session nothing runs on."""
    other = runs.alias("other")
    ahead = sa.exists().where(
        other.c.session_id == runs.c.session_id,
        sa.or_(
            other.c.status.in_(_HOLDING),
            sa.and_(other.c.status == RunStatus.PENDING.value, other.c.id < runs.c.id),
        ),
    )
    return sa.and_(runs.c.status == RunStatus.PENDING.value, runs.c.agent.in_(agents), ~ahead)


async def _within_tenant_limits(
    conn: AsyncConnection, wanted: sa.ColumnElement[bool], limit: int, tenant_limit: int
) -> list[str]:
    """The oldest startable runs, each tenant's only up to its free places."""
    running = (
        sa.select(runs.c.tenant, sa.func.count().label("n"))
        .where(runs.c.status == RunStatus.RUNNING.value)
        .group_by(runs.c.tenant)
        .subquery("running")
    )
    place = sa.func.row_number().over(partition_by=runs.c.tenant, order_by=runs.c.id)
    ranked = sa.select(runs.c.id, runs.c.tenant, place.label("place")).where(wanted).subquery()
    query = (
        sa.select(ranked.c.id)
        .select_from(ranked.outerjoin(running, running.c.tenant == ranked.c.tenant))
        .where(ranked.c.place + sa.func.coalesce(running.c.n, 0) <= tenant_limit)
        .order_by(ranked.c.id)
        .limit(limit)
    )
    return list((await conn.execute(query)).scalars())
