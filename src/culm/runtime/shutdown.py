"""Stopping an executor: draining on SIGTERM (no new work, the runs going on get a
deadline to end) and shutting down (resumable runs handed back, the others interrupted,
every task stopped under one deadline). Mixed into the executor."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Coroutine
from typing import Any

from culm import events as ev
from culm.config import Settings
from culm.errors import CulmError
from culm.runtime.log import EventLog
from culm.runtime.runner import Runner
from culm.store import Store

log = logging.getLogger("culm.executor")

SHUTDOWN = "the server shut down"


class Shutdown:
    """Mixed into ``Executor``."""

    settings: Settings
    store: Store
    log: EventLog
    worker_id: str
    closing: bool
    draining: bool
    _runners: dict[str, Runner]
    _tasks: set[asyncio.Task[Any]]

    async def drain(self, deadline: float) -> int:
        """Stop taking work and give the runs going on up to ``deadline`` seconds to end;
        how many are still going then (``shutdown`` interrupts them)."""
        self.draining = True
        runners = [r for r in self._runners.values() if not r.finalized]
        await _wait_all([r.done.wait() for r in runners], deadline)
        return sum(1 for r in runners if not r.done.is_set())

    async def shutdown(self) -> None:
        """Hand back the runs that can be resumed (their leases lapse at once, so the next
        process to open the database resumes them) and interrupt the others, all at once,
        under one deadline; then stop every task. Returns within about
        ``cancel_grace + 3`` seconds whatever happens."""
        self.closing = True
        handed = {
            rid: r.fence.epoch
            for rid, r in self._runners.items()
            if r.spec.resume and not r.finalized and r.fence.epoch
        }
        for run_id in handed:
            self._runners[run_id].lose(quietly=True)  # stops it; writes no end
        runners = [r for r in self._runners.values() if not r.finalized]
        for runner in runners:
            if runner.task is not None:
                runner.task.cancel()
        deadline = time.monotonic() + self.settings.cancel_grace + 1
        await _wait_all([r.done.wait() for r in runners], self.settings.cancel_grace + 1)
        stuck = [r for r in runners if not r.done.is_set()]
        if stuck:
            log.warning("%d runs ignored shutdown; ending them as interrupted", len(stuck))
            ending = [r.finish(ev.RUN_INTERRUPTED, {"error": SHUTDOWN}) for r in stuck]
            await _wait_all(ending, max(0.5, deadline - time.monotonic()))
        try:
            await asyncio.wait_for(self.log.flush(), timeout=2.0)
        except TimeoutError:
            log.error(
                "shutting down with %d bytes of events the database would not take (%s); "
                "their runs are interrupted when a server opens this database again",
                self.log.queued_bytes,
                self.log.problem,
            )
        if handed:
            with contextlib.suppress(CulmError):
                await asyncio.wait_for(self.store.release_runs(self.worker_id, handed), 2.0)
            log.info("%d runs handed back, to be resumed", len(handed))
        for _ in range(3):  # a task may swallow a cancel; ask again, but never wait forever
            if not self._tasks:
                break
            for task in self._tasks:
                task.cancel()
            await asyncio.wait(self._tasks, timeout=1.0)
        if self._tasks:
            log.warning("%d tasks ignored cancellation at shutdown", len(self._tasks))


async def _wait_all(coros: list[Coroutine[Any, Any, Any]], timeout: float) -> None:
    """Run ``coros`` together for at most ``timeout`` seconds; cancel what is left."""
    if not coros:
        return
    tasks = [asyncio.ensure_future(c) for c in coros]
    _, left = await asyncio.wait(tasks, timeout=timeout)
    for task in left:
        task.cancel()
    if left:
        await asyncio.wait(left, timeout=0.5)
