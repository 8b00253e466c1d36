"""Group commit for small writes: requests that arrive together share one transaction.

Starting a run is a handful of statements and one commit. When many start at once, each
would take the write lock, begin, write and sync the disk in turn; here they queue, and
whoever finds the queue idle drains it: every request waiting is written by one call of
``write_many`` in one transaction (so a few statements serve the whole group) and one
sync. A caller gets its result only once that transaction has committed.

``transaction`` is given the requests it will hold, as it may open one the cheaper way
when none of them reads anything first. ``write_many`` answers each request with its
result or a refusal (a ``CulmError``, decided before anything was written for it), so a
refusal leaves the others untouched.
Any other error rolls the whole group back, and then each request is written alone, so
only the one at fault fails.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Generic, TypeVar

from culm.errors import CulmError

Request = TypeVar("Request")
Result = TypeVar("Result")
Conn = TypeVar("Conn")


class WriteGroup(Generic[Request, Result, Conn]):
    """Writes queued requests in shared transactions, in the order they came."""

    def __init__(
        self,
        transaction: Callable[[Sequence[Request]], AbstractAsyncContextManager[Conn]],
        write_many: Callable[[Conn, Sequence[Request]], Awaitable[list[Result | CulmError]]],
    ) -> None:
        self._transaction = transaction
        self._write_many = write_many
        self._queue: list[tuple[Request, asyncio.Future[Result]]] = []
        self._drainer: asyncio.Task[None] | None = None

    async def run(self, request: Request) -> Result:
        """The request's result, once the transaction it shared has committed."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Result] = loop.create_future()
        self._queue.append((request, future))
        if self._drainer is None or self._drainer.done():
            self._drainer = loop.create_task(self._drain())
        return await future

    async def aclose(self) -> None:
        """Wait for the writes already queued."""
        if self._drainer is not None:
            await asyncio.gather(self._drainer, return_exceptions=True)

    async def _drain(self) -> None:
        while self._queue:
            # a caller that gave up before its turn is not written at all
            batch = [(r, f) for r, f in self._queue if not f.cancelled()]
            self._queue = []
            if batch:
                await self._commit(batch)

    async def _commit(self, batch: list[tuple[Request, asyncio.Future[Result]]]) -> None:
        try:
            requests = [r for r, _ in batch]
            async with self._transaction(requests) as conn:
                outcomes = await self._write_many(conn, requests)
        except Exception as exc:
            if len(batch) == 1:
                _settle(batch[0][1], exc)
                return
            for request, future in batch:  # one at a time, so only the culprit fails
                try:
                    async with self._transaction([request]) as conn:
                        [outcome] = await self._write_many(conn, [request])
                except Exception as alone:
                    _settle(future, alone)
                else:
                    _settle(future, outcome)
            return
        for (_, future), outcome in zip(batch, outcomes, strict=True):
            _settle(future, outcome)


def _settle(future: asyncio.Future[Result], outcome: Result | BaseException) -> None:
    if future.done():  # its caller was cancelled after its turn came
        return
    if isinstance(outcome, BaseException):
        future.set_exception(outcome)
    else:
        future.set_result(outcome)
