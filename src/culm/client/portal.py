"""A private event loop on a daemon thread, so blocking code can drive async code.

The blocking ``Client`` runs its ``AsyncClient`` here: one implementation of every call,
one connection pool that outlives each call. The thread is a daemon so a client that was
never closed cannot keep the interpreter from exiting.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncGenerator, Coroutine, Iterator
from typing import Any, TypeVar

T = TypeVar("T")

_DONE = object()


class Portal:
    """Runs coroutines on its own loop; started on first use, stopped by ``stop()``."""

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def _running_loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                thread = threading.Thread(target=loop.run_forever, name="culm-client", daemon=True)
                thread.start()
                self._loop, self._thread = loop, thread
            return self._loop

    def call(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the loop and return its result here.

        If this thread is interrupted while waiting (Ctrl-C), the coroutine is cancelled.
        """
        future = asyncio.run_coroutine_threadsafe(coro, self._running_loop())
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
        lock = asyncio.Lock()

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
            while (item := self.call(step())) is not _DONE:
                yield item
        finally:
            self.call(close())

    def stop(self) -> None:
        """Stop the loop and its thread; a later call starts a fresh one."""
        with self._lock:
            loop, thread = self._loop, self._thread
            self._loop = self._thread = None
        if loop is None or thread is None:
            return
        # async generators finalised by the garbage collector leave their aclose() as
        # tasks on the loop: let them finish rather than be destroyed pending
        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(_drain(), loop).result(timeout=5)
        loop.call_soon_threadsafe(loop.stop)
        thread.join()
        loop.close()


async def _drain() -> None:
    await asyncio.get_running_loop().shutdown_asyncgens()
    others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    if others:
        await asyncio.wait(others, timeout=2)
