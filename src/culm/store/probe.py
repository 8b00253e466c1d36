"""The store's probe: a small real write that tells whether the database can be written again.

While the disk is full nothing may be emitting, so no write of the log would ever learn
that space came back: the engine probes every second or so instead (``Engine``). The probe
writes a session row holding ``PROBE_BYTES`` of data and deletes it in the same
transaction, then commits: the pages it needs are allocated and written (on SQLite, to the
write-ahead log at commit), so it fails where a start of an ordinary run would, and leaves
no row behind, whatever the database.
"""

from __future__ import annotations

import os
from contextlib import AbstractAsyncContextManager

from sqlalchemy.ext.asyncio import AsyncConnection

from culm.store.schema import sessions

PROBE_BYTES = 64 * 1024
"""How much the probe writes: a run's start (its session, run and first event) fits."""


class ProbeQueries:
    """Mixed into ``SqlStore``; see ``culm.store.base.Store`` for what each call promises."""

    problem: str | None

    def _write(self, *, appends: bool = True) -> AbstractAsyncContextManager[AsyncConnection]:
        raise NotImplementedError

    async def probe(self) -> None:
        # random, so that a database that compresses what it stores still allocates it
        data = os.urandom(PROBE_BYTES // 2).hex()
        probe_id = f"probe_{os.urandom(8).hex()}"
        async with self._write(appends=False) as conn:
            await conn.execute(
                sessions.insert().values(
                    id=probe_id, tenant="", parent_id=None, metadata=data, created_at=0.0
                )
            )
            await conn.execute(sessions.delete().where(sessions.c.id == probe_id))
        self.problem = None
