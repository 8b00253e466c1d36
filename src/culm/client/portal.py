"""anyio's blocking portal on a daemon thread, so blocking code can drive async code.

The blocking ``Client`` runs its ``AsyncClient`` through it: one implementation of every
call, one connection pool that outlives each call. The portal's event loop runs on a
daemon thread of its own (not anyio's thread pool, whose threads are joined at exit), so
a client that was never closed cannot keep the interpreter from exiting.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterator
from typing import Any, TypeVar

import anyio
from anyio.from_thread import BlockingPortal

T = TypeVar("T")

_DONE = object()


class Portal:
    """Runs coroutines on its own event loop; started on first use, stopped by ``stop()``."""

    def __init__(self) -> None:
        self._portal: BlockingPortal | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def _running(self) -> BlockingPortal:
        with self._lock:
            if self._portal is None:
                handed: queue.Queue[BlockingPortal] = queue.Queue()
                thread = threading.Thread(
                    target=anyio.run, args=(_serve, handed), name="culm-client", daemon=True
                )
                thread.start()
                self._portal, self._thread = handed.get(), thread
            return self._portal

    def call(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        """Run ``fn(*args)`` on the loop and return its result here.

        If this thread is interrupted while waiting (Ctrl-C), the call is cancelled.
        """
        future = self._running().start_task_soon(fn, *args)
        try:
            return future.result()
        except BaseException:
            future.cancel()
            raise

    def iterate(self, agen: AsyncGenerator[T, None]) -> Iterator[T]:
        """Iterate an async generator from this thread; closing the iterator (or breaking
        out of the loop, or Ctrl-C) closes the generator on the loop."""
        # Serialises steps and the final close: a step cancelled by Ctrl-C may still be
        # unwinding on the loop when the close is sent.
        lock = anyio.Lock()

        async def step() -> Any:
            async with lock:
                try:
                    return await agen.__anext__()
                except StopAsyncIteration:
                    return _DONE

        async def close() -> None:
            async with lock:
                await agen.aclose()

        try:
            while (item := self.call(step)) is not _DONE:
                yield item
        finally:
            self.call(close)

    def stop(self) -> None:
        """Stop the loop and its thread; a later call starts a fresh one."""
        with self._lock:
            portal, thread = self._portal, self._thread
            self._portal = self._thread = None
        if portal is None or thread is None:
            return
        portal.call(portal.stop, True)  # cancels what still runs there
        thread.join()


async def _serve(handed: queue.Queue[BlockingPortal]) -> None:
    async with BlockingPortal() as portal:
        handed.put(portal)
        await portal.sleep_until_stopped()
