"""The latest committed events of recent runs, kept in memory for their followers.

When a hundred clients open a run's stream just after it started, each would otherwise
read the same rows from the database and decode them into its own copies, encoding each
event's JSON a hundred times. Here they share one copy of each event (``Event.to_json``
is then computed once), and the database is read only for what is not in memory.

Events are recorded as the bus publishes them, inside ``publish`` itself, so everything a
subscriber could have missed on its live feed is already here when it reads: a stream
reading from this cache never waits for a live event that was published before it
subscribed. Only what the store has committed is ever published, so nothing here is ahead
of the log; for each run it holds one gap-free range of sequence numbers, and a read
outside that range goes to the store.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable, Sequence

from culm.bus import Bus, Notice, NoticeHandler, Subscription
from culm.events import Event, by_run
from culm.store import Store

EVENT_OVERHEAD = 450
"""Bytes an event costs in memory besides its data's JSON, twice over (the object, its
strings, the decoded data, and the rest of its own JSON, which a runner encodes as it
emits): an estimate that keeps the budget honest for small events."""


def event_cost(event: Event) -> int:
    """What keeping ``event`` costs, in bytes, as the cache counts it: its data's JSON is
    kept alone (for the log) and within the event's JSON (for its streams)."""
    return EVENT_OVERHEAD + 2 * len(event.data_json())


class RecentEvents:
    """Gap-free tails of recent runs' streams, at most ``max_bytes`` in all (counted by
    ``event_cost``); the runs read or written least recently are forgotten first."""

    def __init__(self, store: Store, max_bytes: int = 32 * 1_048_576) -> None:
        self._store = store
        self._limit = max_bytes
        self._runs: OrderedDict[str, list[Event]] = OrderedDict()
        self._count = 0
        self.bytes = 0

    def record(self, events: Sequence[Event]) -> None:
        """Remember committed events (in the order they were committed)."""
        for group in by_run(events):  # a run's events in order: its range grows by a slice
            run_id = group[0].run_id
            tail = self._runs.get(run_id)
            gap_free = group[-1].seq - group[0].seq == len(group) - 1
            if tail is None and gap_free:
                self._runs[run_id] = list(group)
            elif tail is not None and gap_free and group[0].seq == tail[-1].seq + 1:
                tail.extend(group)
            else:
                self._record_each(group)
                continue
            self._count += len(group)
            self.bytes += sum(map(event_cost, group))
            self._runs.move_to_end(run_id)
        if self.bytes > self._limit:
            self._shrink(self._limit * 9 // 10)  # some room, so trimming is not per event

    def _record_each(self, events: Sequence[Event]) -> None:
        for event in events:
            tail = self._runs.get(event.run_id)
            if tail is not None and event.seq <= tail[-1].seq:
                continue  # announced twice (by this process and by the log's tail)
            if tail is None or tail[-1].seq + 1 != event.seq:
                # a run first seen mid-stream, or a gap: start its range here
                if tail is not None:
                    self._forget(tail, len(tail))
                tail = self._runs[event.run_id] = []
            tail.append(event)
            self._count += 1
            self.bytes += event_cost(event)
            self._runs.move_to_end(event.run_id)

    def _forget(self, tail: list[Event], n: int) -> None:
        self._count -= n
        self.bytes -= sum(event_cost(e) for e in tail[:n])
        del tail[:n]

    def _shrink(self, target: int) -> None:
        while self.bytes > target and self._runs:
            run_id, tail = next(iter(self._runs.items()))
            n, freed = 0, 0
            while n < len(tail) and self.bytes - freed > target:
                freed += event_cost(tail[n])
                n += 1
            self._forget(tail, n)  # the oldest part of the least recent run's range
            if not tail:
                del self._runs[run_id]

    async def read_events(self, run_id: str, after: int = 0, limit: int = 1000) -> list[Event]:
        """The run's events with ``seq > after``, from memory when it holds ``after + 1``."""
        tail = self._runs.get(run_id)
        if tail is not None and tail[0].seq <= after + 1 <= tail[-1].seq:
            self._runs.move_to_end(run_id)
            start = after + 1 - tail[0].seq
            return tail[start : start + limit]
        return await self._store.read_events(run_id, after=after, limit=limit)

    def clear(self) -> None:
        """Forget everything: after events were deleted from the log, memory must not keep
        serving them."""
        self._runs.clear()
        self._count = 0
        self.bytes = 0

    def __len__(self) -> int:
        return self._count


class RecordingBus:
    """A bus that records what it publishes in ``recent`` before delivering it."""

    def __init__(self, inner: Bus, recent: RecentEvents) -> None:
        self._inner = inner
        self.recent = recent

    async def open(self) -> None:
        await self._inner.open()

    async def close(self) -> None:
        await self._inner.close()

    def publish(self, events: Sequence[Event]) -> None:
        self.recent.record(events)
        self._inner.publish(events)

    def subscribe(self, keys: tuple[Hashable, ...], limit: int) -> Subscription:
        return self._inner.subscribe(keys, limit)

    @property
    def subscriber_count(self) -> int:
        return self._inner.subscriber_count

    def notify(self, notice: Notice) -> None:
        self._inner.notify(notice)

    def on_notice(self, handler: NoticeHandler) -> None:
        self._inner.on_notice(handler)

    def health(self) -> str | None:
        return self._inner.health()
