"""People in the loop, for the SQL store: a run that waits for a person is handed back
(held by no process), answered, and taken up again; messages sent to a running model
agent wait here until it takes them in.

A waiting run is a row and its log. Its answer is written from outside any runner, like an
end: the event and the state in one transaction that bumps the epoch, so a process that
still believed it held the run can write nothing more for it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from culm.errors import Conflict
from culm.events import Event
from culm.models import ACTIVE_STATUSES, Run, RunStatus
from culm.store.base import Fence, SentMessage
from culm.store.rows import require_run, run_record
from culm.store.schema import run_messages, runs


def _bytes(conn: AsyncConnection) -> sa.ColumnElement[int]:
    """A message's length in bytes (SQLite's ``length`` of text counts characters)."""
    if conn.dialect.name == "postgresql":
        return sa.func.octet_length(run_messages.c.content)
    return sa.func.length(sa.cast(run_messages.c.content, sa.LargeBinary))


class InputQueries:
    """Mixed into ``SqlStore``; see ``culm.store.base.Store`` for what each call promises."""

    def _write(self, *, appends: bool = True) -> AbstractAsyncContextManager[AsyncConnection]:
        raise NotImplementedError

    def _read(self) -> AbstractAsyncContextManager[AsyncConnection]:
        raise NotImplementedError

    async def _append_outside(
        self,
        conn: AsyncConnection,
        run_id: str,
        allowed: Callable[[Run, sa.Row[Any]], bool],
        make: Callable[[Run], Event],
        **values: Any,
    ) -> tuple[Run, Event] | None:
        raise NotImplementedError

    async def park_run(self, run_id: str, fence: Fence) -> bool:
        query = (
            runs.update()
            .where(
                runs.c.id == run_id,
                runs.c.worker_id == fence.worker_id,
                runs.c.epoch == fence.epoch,
                runs.c.status.in_([RunStatus.WAITING.value, RunStatus.PENDING.value]),
            )
            .values(worker_id=None, lease_expires_at=None)
        )
        async with self._write(appends=False) as conn:
            return bool((await conn.execute(query)).rowcount)

    async def answer_run(
        self, run_id: str, call_id: str, answered: Callable[[Run], Event]
    ) -> Run | None:
        def allowed(run: Run, _row: sa.Row[Any]) -> bool:
            waiting = run.state.waiting
            return run.status is RunStatus.WAITING and (waiting or {}).get("call_id") == call_id

        async with self._write() as conn:
            # held by nobody until a process takes it up again
            written = await self._append_outside(
                conn, run_id, allowed, answered, worker_id=None, lease_expires_at=None
            )
        return None if written is None else written[0]

    async def expired_waits(self, now: float, limit: int = 100) -> list[Run]:
        query = (
            runs.select()
            .where(
                runs.c.input_deadline.is_not(None),
                runs.c.input_deadline <= now,
                runs.c.status == RunStatus.WAITING.value,
            )
            .order_by(runs.c.input_deadline)
            .limit(limit)
        )
        async with self._read() as conn:
            return [run_record(row) for row in (await conn.execute(query)).all()]

    # messages sent to a running model agent

    async def send_run_message(
        self,
        run_id: str,
        content: str,
        now: float,
        tenant: str | None = None,
        max_unread: int | None = None,
    ) -> SentMessage:
        async with self._write(appends=False) as conn:
            run = await require_run(conn, run_id, tenant)
            if run.status.value not in ACTIVE_STATUSES:
                raise Conflict(f"run {run_id} has ended ({run.status.value}): it takes no message")
            if max_unread is not None:
                unread = sa.select(sa.func.coalesce(sa.func.sum(_bytes(conn)), 0)).where(
                    run_messages.c.run_id == run_id, run_messages.c.taken.is_(False)
                )
                held = int((await conn.execute(unread)).scalar_one())
                if held + len(content.encode()) > max_unread:
                    raise Conflict(
                        f"run {run_id} has {held:,} bytes of messages it has not taken in yet; "
                        f"more would pass {max_unread:,} bytes: send again once it has "
                        "taken them in (message.injected)"
                    )
            result = await conn.execute(
                run_messages.insert()
                .values(run_id=run_id, content=content, created_at=now)
                .returning(run_messages.c.id)
            )
            return SentMessage(int(result.scalar_one()), run_id, content, now)

    async def unread_run_messages(self, run_id: str) -> list[SentMessage]:
        query = (
            sa.select(run_messages)
            .where(run_messages.c.run_id == run_id, run_messages.c.taken.is_(False))
            .order_by(run_messages.c.id)
        )
        async with self._read() as conn:
            rows = (await conn.execute(query)).all()
        return [SentMessage(r.id, r.run_id, r.content, r.created_at) for r in rows]

    async def mark_run_messages(self, ids: Sequence[int]) -> None:
        if not ids:
            return
        query = run_messages.update().where(run_messages.c.id.in_(list(ids))).values(taken=True)
        async with self._write(appends=False) as conn:
            await conn.execute(query)
