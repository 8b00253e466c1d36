"""Notices between processes over PostgreSQL's LISTEN/NOTIFY.

One connection of its own per process, outside the store's pool and never inside a write
transaction: a NOTIFY inside every commit would serialise the commits of every process on
the notify queue's lock. Notices are merged and sent at most once per interval instead.
The channel is ``culm`` unless the URL says ``?channel=name`` (processes of one culm
installation must agree on it).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from sqlalchemy.engine import make_url

from culm.bus.remote import RemoteBus


class PostgresBus(RemoteBus):
    def __init__(self, url: str, interval: float = 0.002) -> None:
        super().__init__(interval)
        parsed = make_url(url)
        self.channel = str(parsed.query.get("channel", "culm"))
        parsed = parsed.difference_update_query(["channel"]).set(drivername="postgresql")
        self._dsn = parsed.render_as_string(hide_password=False)
        self._conn: Any = None
        self._cut = asyncio.Event()
        self._sink: Callable[[str | bytes], None] | None = None

    async def _connect(self) -> None:
        import asyncpg  # type: ignore[import-untyped]

        self._cut = asyncio.Event()
        conn = await asyncpg.connect(self._dsn)
        conn.add_termination_listener(lambda _c: self._cut.set())
        await conn.add_listener(self.channel, self._on_message)
        self._conn = conn

    def _on_message(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        if self._sink is not None:
            self._sink(payload)

    async def _disconnect(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None and not conn.is_closed():
            await conn.close(timeout=2)

    async def _send(self, payload: str) -> None:
        if self._conn is None:
            raise ConnectionError("not connected")
        await self._conn.execute("SELECT pg_notify($1, $2)", self.channel, payload)

    async def _listen(self, deliver: Callable[[str | bytes], None]) -> None:
        if self._conn is None:
            raise ConnectionError("not connected")
        self._sink = deliver
        await self._cut.wait()
        raise ConnectionError("the connection to PostgreSQL was lost")
