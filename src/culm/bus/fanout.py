"""In-process fan-out of committed events to live subscribers, with bounded buffers.

A subscriber that falls more than its buffer behind is not cut off and does not slow
anyone: its buffer is dropped and it is marked ``lagged``, which tells its reader to
continue from the durable log.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Hashable, Sequence

from culm.events import Event, by_run

ALL: Hashable = ("all",)
"""Key of subscribers that receive every event of this process's bus."""


class Subscription:
    """A cursor's live feed: events pushed by the hub, read in batches."""

    __slots__ = ("_batches", "_hub", "_keys", "_limit", "_size", "_wake", "lagged")

    def __init__(self, hub: Hub, keys: tuple[Hashable, ...], limit: int) -> None:
        self._hub = hub
        self._keys = keys
        self._limit = limit
        self._batches: list[Sequence[Event]] = []
        self._size = 0
        self._wake = asyncio.Event()
        self.lagged = False

    def push(self, batch: Sequence[Event]) -> None:
        if self.lagged:
            return
        if self._size + len(batch) > self._limit:
            self.lagged = True
            self._batches.clear()
            self._size = 0
        else:
            self._batches.append(batch)
            self._size += len(batch)
        self._wake.set()

    async def next(self, timeout: float | None = None) -> list[Event]:
        """Everything pushed since the last call; empty after ``timeout`` or when lagged."""
        if not self._batches and not self.lagged:
            self._wake.clear()
            try:
                async with asyncio.timeout(timeout):
                    await self._wake.wait()
            except TimeoutError:
                return []
        batches, self._batches, self._size = self._batches, [], 0
        if len(batches) == 1:
            return list(batches[0])
        return [event for batch in batches for event in batch]

    def resync(self) -> None:
        """Start buffering again after a lag; call before reading the log to catch up."""
        self.lagged = False
        self._batches.clear()
        self._size = 0

    def close(self) -> None:
        self._hub.remove(self)

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Hub:
    """Subscriptions by key (a run, a session, or everything) and delivery to them."""

    def __init__(self) -> None:
        self._subs: defaultdict[Hashable, set[Subscription]] = defaultdict(set)

    def subscribe(self, keys: tuple[Hashable, ...], limit: int) -> Subscription:
        sub = Subscription(self, keys, limit)
        for key in keys:
            self._subs[key].add(sub)
        return sub

    def remove(self, sub: Subscription) -> None:
        for key in sub._keys:
            subs = self._subs.get(key)
            if subs is not None:
                subs.discard(sub)
                if not subs:
                    del self._subs[key]

    @property
    def subscriber_count(self) -> int:
        return len({sub for subs in self._subs.values() for sub in subs})

    def deliver(self, events: Sequence[Event]) -> None:
        """Push committed events to everyone subscribed to their run, session or to all."""
        if not self._subs:
            return
        by_key: defaultdict[Hashable, list[Event]] = defaultdict(list)
        for group in by_run(events):  # a run's events share its session too
            by_key[("run", group[0].run_id)].extend(group)
            by_key[("session", group[0].session_id)].extend(group)
        if ALL in self._subs:
            by_key[ALL] = list(events)
        for key, batch in by_key.items():
            for sub in self._subs.get(key, ()):
                sub.push(batch)
