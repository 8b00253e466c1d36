"""Sessions and their conversation history, for the SQL store: create, read, list (by
metadata too), delete a session with its children, and the messages runs add to it.

None of these transactions appends events, so none takes the log lock (see ``sql.py``).
Deleting a session refuses while any run of its tree is active: the rows of a run that a
process still executes must not vanish under it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from culm.errors import Conflict, OwnershipLost
from culm.models import ACTIVE_STATUSES, Message, Session
from culm.store.base import Fence
from culm.store.rows import dumps, require_session, session_columns, session_record
from culm.store.schema import events, messages, run_messages, runs, sessions


class SessionQueries:
    """Mixed into ``SqlStore``; see ``culm.store.base.Store`` for what each call promises."""

    _reader: AsyncEngine | None

    def _write(self, *, appends: bool = True) -> AbstractAsyncContextManager[AsyncConnection]:
        raise NotImplementedError

    def _read(self) -> AbstractAsyncContextManager[AsyncConnection]:
        raise NotImplementedError

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
