"""The log's tail: events other processes committed, announced on this process's bus.

Followers here wake only on the bus; they never poll the log on a timer (a thousand idle
streams would otherwise re-read it hundreds of times a second). What this process commits
its store announces itself. What another process sharing the database commits (a run it
executes, a run it cancels or recovers) this process learns here: every ``period``
seconds one query counts the log's new events, and only when there are more than this
process announced are they read and published. Followers drop what they already have, so
an event announced twice costs nothing but the repeat.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence

from culm.events import Event
from culm.store import Store

log = logging.getLogger("culm.tail")

PAGE = 1_000


class LogTail:
    """Counts what this process announces, and publishes what others committed."""

    def __init__(self, store: Store, publish: Callable[[Sequence[Event]], None]) -> None:
        self._store = store
        self._publish = publish
        self._seen = 0
        """Every event at or below this position has been announced here."""
        self._mine: list[tuple[int, int]] = []
        """(highest position, count) of each batch announced here since ``_seen``."""
        self._wake = asyncio.Event()

    @property
    def seen(self) -> int:
        """Every event at or below this position has been announced here."""
        return self._seen

    def wake(self) -> None:
        """Look at the log now (another process said it committed something)."""
        self._wake.set()

    async def run(self, period: float) -> None:
        """Poll when woken, and every ``period`` seconds in any case (a notice may be lost)."""
        while True:
            try:
                async with asyncio.timeout(period):
                    await self._wake.wait()
            except TimeoutError:
                pass
            self._wake.clear()
            try:
                await self.poll()
            except Exception as exc:
                log.warning("reading the log's tail failed: %s", exc)
                await asyncio.sleep(min(period, 1.0))

    async def open(self) -> None:
        self._seen = await self._store.last_pos()

    def announce(self, events: Sequence[Event]) -> None:
        """Publish a batch this process committed, and remember it was announced."""
        if events:
            self._mine.append((max(e.pos for e in events), len(events)))
        self._publish(events)

    async def poll(self) -> None:
        """Publish what other processes committed since the last poll."""
        top, count = await self._store.count_log(self._seen)
        if count == 0:
            return
        mine = sum(n for last, n in self._mine if self._seen < last <= top)
        if count > mine:
            after = self._seen
            while after < top:
                page = await self._store.read_log(after, min(PAGE, 1 + top - after))
                page = [e for e in page if e.pos <= top]
                if not page:
                    break
                self._publish(page)
                after = page[-1].pos
        self._seen = top
        self._mine = [(last, n) for last, n in self._mine if last > top]
