"""A subscriber is a cursor into the log: read what it missed, then follow the live tail.

The live feed is subscribed to before the log is read, so every event lands in one or the
other; duplicates are dropped by position. A feed that lagged, skipped, or stayed quiet
for a while sends the reader back to the log, which is always complete.

Catching up reads the log in slices bounded in bytes, not only in events (``Slices``): a
thousand events are a few hundred kilobytes when small and a gigabyte at the largest an
event may be, and a slow client of a run of large events must not make the server hold
that. The first read assumes events as large as allowed; each later one is sized from the
largest event of the one before (and at most doubles), so a read of events of similar
sizes holds about ``page_bytes``. (A slice of small events followed by large ones can
still pass it: only a read bounded in bytes by the store would close that.)
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Protocol

from culm.bus import Bus, run_key, session_key
from culm.events import Event
from culm.store import Store

PAGE = 1_000
"""Most events one read of the log asks for."""
PAGE_BYTES = 4_194_304
"""What one read of the log may hold, by default (the server passes ``max_page_bytes``)."""
EVENT_BYTES = 1_048_576
"""The largest an event's data may be, by default (the server passes ``max_event_bytes``)."""


class Slices:
    """How many events the next read of the log asks for, so that it holds about
    ``page_bytes`` of event data."""

    def __init__(self, page_bytes: int, event_bytes: int) -> None:
        self._budget = max(1, page_bytes)
        self.count = self._fit(event_bytes)
        """Events to ask for in the next read."""

    def _fit(self, size: int) -> int:
        return max(1, min(PAGE, self._budget // max(1, size)))

    def read(self, page: Sequence[Event]) -> None:
        """Size the next read from the one that returned ``page``."""
        largest = max((len(e.data_json()) for e in page), default=1)
        self.count = min(self._fit(largest), 2 * self.count)


class EventReader(Protocol):
    """What ``follow_run`` reads a run's log through: the store, or recent events."""

    async def read_events(self, run_id: str, after: int = 0, limit: int = 1000) -> list[Event]:
        """The run's events with ``seq > after``, in order."""
        ...


async def follow_run(
    store: EventReader,
    bus: Bus,
    run_id: str,
    after: int,
    *,
    buffer: int,
    idle_poll: float | None,
    page_bytes: int = PAGE_BYTES,
    event_bytes: int = EVENT_BYTES,
) -> AsyncIterator[list[Event]]:
    """Batches of the run's events after ``after``, each once, in order; ends after the
    terminal event. With ``idle_poll`` the log is read again after that many quiet
    seconds; None trusts the bus to announce everything committed. Reads of the log hold
    about ``page_bytes`` each, for events of up to ``event_bytes`` (see ``Slices``)."""
    last = after
    slices = Slices(page_bytes, event_bytes)
    with bus.subscribe((run_key(run_id),), buffer) as feed:
        while True:
            while True:  # catch up from the log
                asked = slices.count
                page = await store.read_events(run_id, after=last, limit=asked)
                slices.read(page)
                if page:
                    last = page[-1].seq
                    yield page
                    if page[-1].terminal:
                        return
                if len(page) < asked:
                    break
            while True:  # follow the live tail
                batch = await feed.next(idle_poll)
                if feed.lagged:
                    feed.resync()
                    break
                fresh = [e for e in batch if e.seq > last]
                if not fresh or fresh[0].seq != last + 1:
                    break  # quiet, or a gap: the log has what is missing
                last = fresh[-1].seq
                yield fresh
                if fresh[-1].terminal:
                    return


async def follow_sessions(
    store: Store,
    bus: Bus,
    session_ids: Callable[[], Awaitable[Sequence[str]]],
    after: int,
    *,
    buffer: int,
    idle_poll: float | None,
    grows: Callable[[Event], bool] | None = None,
    page_bytes: int = PAGE_BYTES,
    event_bytes: int = EVENT_BYTES,
) -> AsyncIterator[list[Event]]:
    """Batches of the events of a set of sessions after log position ``after``, in log
    order, without end. ``session_ids`` is asked again whenever the reader goes back to the
    log, so a growing tree of sessions is followed as it grows.

    ``grows`` marks the events after which the set may have grown, each committed before
    any event of the sessions it adds (spawn's ``child.started``): the reader stops right
    after such an event, asks for the set again and reads on from the log, so the events of
    a session that joins are neither missed nor out of order. Reads of the log are bounded
    in bytes as in ``follow_run``.
    """
    last = after
    slices = Slices(page_bytes, event_bytes)
    ids = list(await session_ids())
    feed = bus.subscribe(tuple(session_key(s) for s in ids), buffer)
    try:
        while True:
            grew = False
            while True:
                asked = slices.count
                read = await store.read_session_events(ids, after=last, limit=asked)
                slices.read(read)
                page, grew = _up_to_growth(read, grows)
                if page:
                    last = page[-1].pos
                    yield page
                if grew or len(read) < asked:
                    break
            while not grew:
                batch = await feed.next(idle_poll)
                if feed.lagged:
                    feed.resync()
                    break
                fresh, grew = _up_to_growth([e for e in batch if e.pos > last], grows)
                if not fresh:
                    break
                last = fresh[-1].pos
                yield fresh
            latest = list(await session_ids())
            if latest != ids:
                ids = latest
                feed.close()
                feed = bus.subscribe(tuple(session_key(s) for s in ids), buffer)
    finally:
        feed.close()


def _up_to_growth(
    batch: list[Event], grows: Callable[[Event], bool] | None
) -> tuple[list[Event], bool]:
    """The batch up to and including its first event that may grow the set, and whether
    there was one."""
    if grows is not None:
        for i, event in enumerate(batch):
            if grows(event):
                return batch[: i + 1], True
    return batch, False
