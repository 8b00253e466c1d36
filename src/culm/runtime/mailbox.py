"""The messages sent to a run, as its agent reads them: kept by the store (see
``culm.agent.inbox``)."""

from __future__ import annotations

from collections.abc import Sequence

from culm.store import Store
from culm.store.base import SentMessage


class StoreMailbox:
    __slots__ = ("_run_id", "_store")

    def __init__(self, store: Store, run_id: str) -> None:
        self._store = store
        self._run_id = run_id

    async def unread(self) -> Sequence[SentMessage]:
        return await self._store.unread_run_messages(self._run_id)

    async def mark(self, ids: Sequence[int]) -> None:
        await self._store.mark_run_messages(ids)
