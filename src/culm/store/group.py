"""Group commit for small writes: concurrent callers share one transaction.

Starting a run is a handful of statements and one commit. When many start at once, each
would take the write lock, begin, write and sync the disk in turn; here they queue, and
whoever finds the queue idle drains it: every write waiting joins one transaction and one
sync. A caller gets its result only once that transaction has committed.

An operation may refuse (raise a ``CulmError``) only before it writes anything, so a
refusal leaves the shared transaction clean. Any other error rolls the whole group back,
and then each operation runs alone, so only the one at fault fails.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any, TypeVar, cast

from sqlalchemy.ext.asyncio import AsyncConnection

from culm.errors import CulmError

T = TypeVar("T")
Op = Callable[[AsyncConnection], Awaitable[Any]]
Transaction = Callable[[], AbstractAsyncContextManager[AsyncConnection]]


class WriteGroup:
    """Runs queued write operations in shared transactions, in the order they came."""

    def __init__(self, transaction: Transaction) -> None:
        self._transaction = transaction
        self._queue: list[tuple[Op, asyncio.Future[Any]]] = []
        self._drainer: asyncio.Task[None] | None = None

    async def run(self, op: Callable[[AsyncConnection], Awaitable[T]]) -> T:
        """``op(connection)``'s result, once the transaction it shared has committed."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._queue.append((op, future))
        if self._drainer is None or self._drainer.done():
            self._drainer = loop.create_task(self._drain())
        return cast(T, await future)

    async def aclose(self) -> None:
        """Wait for the writes already queued."""
        if self._drainer is not None:
            await asyncio.gather(self._drainer, return_exceptions=True)

    async def _drain(self) -> None:
        while self._queue:
            # a caller that gave up before its turn is not written at all
            batch = [(op, f) for op, f in self._queue if not f.cancelled()]
            self._queue = []
            if batch:
                await self._commit(batch)

    async def _commit(self, batch: list[tuple[Op, asyncio.Future[Any]]]) -> None:
        outcomes: list[tuple[asyncio.Future[Any], Any, BaseException | None]] = []
        try:
            async with self._transaction() as conn:
                for op, future in batch:
                    try:
                        outcomes.append((future, await op(conn), None))
                    except CulmError as refusal:  # refused before writing: the rest go on
                        outcomes.append((future, None, refusal))
        except Exception as exc:
            if len(batch) == 1:
                _settle(batch[0][1], None, exc)
                return
            for op, future in batch:  # one at a time, so only the culprit fails
                try:
                    async with self._transaction() as conn:
                        result = await op(conn)
                except Exception as alone:
                    _settle(future, None, alone)
                else:
                    _settle(future, result, None)
            return
        for future, result, error in outcomes:
            _settle(future, result, error)


def _settle(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.done():  # its caller was cancelled after its turn came
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)
