"""A session's conversation backed by the store: what a run's ``RunContext.history`` is."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from culm.models import Message
from culm.store import Store
from culm.store.base import Fence

_PAGE = 1000


class SessionHistory:
    """Reads a session's stored messages and appends a run's new ones, tagged with the run."""

    __slots__ = ("_clock", "_fence", "_flush", "_run_id", "_session_id", "_store")

    def __init__(
        self,
        store: Store,
        session_id: str,
        run_id: str,
        clock: Callable[[], float],
        fence: Fence | None = None,
        flush: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        """With ``fence``, messages are added only while this process still owns the run.
        With ``flush``, the run's events so far are committed before messages are added:
        the history never holds what the log does not (a resumed run relies on it)."""
        self._store = store
        self._fence = fence
        self._flush = flush
        self._session_id = session_id
        self._run_id = run_id
        self._clock = clock

    async def read(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        after = 0
        while True:
            page = await self._store.read_messages(self._session_id, after=after, limit=_PAGE)
            out.extend({**m.data, "role": m.role} for m in page)
            if len(page) < _PAGE:
                return out
            after = page[-1].id

    async def written(self) -> int:
        return await self._store.count_messages(self._session_id, self._run_id)

    async def append(self, messages: Sequence[dict[str, Any]]) -> None:
        if self._flush is not None:
            await self._flush()
        now = self._clock()
        await self._store.append_messages(
            [
                Message(
                    session_id=self._session_id,
                    role=str(m["role"]),
                    data={k: v for k, v in m.items() if k != "role"},
                    created_at=now,
                    run_id=self._run_id,
                )
                for m in messages
            ],
            self._fence,
        )
