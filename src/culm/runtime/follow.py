"""A subscriber is a cursor into the log: read what it missed, then follow the live tail.

The live feed is subscribed to before the log is read, so every event lands in one or the
other; duplicates are dropped by position. A feed that lagged, skipped, or stayed quiet
for a while sends the reader back to the log, which is always complete.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Protocol

from culm.bus import Bus, run_key, session_key
from culm.events import Event
from culm.store import Store

PAGE = 1_000


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
) -> AsyncIterator[list[Event]]:
    """Batches of the run's events after ``after``, each once, in order; ends after the
    terminal event. With ``idle_poll`` the log is read again after that many quiet
    seconds; None trusts the bus to announce everything committed."""
    last = after
    with bus.subscribe((run_key(run_id),), buffer) as feed:
        while True:
            while True:  # catch up from the log
                page = await store.read_events(run_id, after=last, limit=PAGE)
                if page:
                    last = page[-1].seq
                    yield page
                    if page[-1].terminal:
                        return
                if len(page) < PAGE:
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
) -> AsyncIterator[list[Event]]:
    """Batches of the events of a set of sessions after log position ``after``, in log
    order, without end. ``session_ids`` is asked again whenever the reader goes back to the
    log, so a growing tree of sessions is followed as it grows.

    ``grows`` marks the events after which the set may have grown, each committed before
    any event of the sessions it adds (spawn's ``child.started``): the reader stops right
    after such an event, asks for the set again and reads on from the log, so the events of
    a session that joins are neither missed nor out of order.
    """
    last = after
    ids = list(await session_ids())
    feed = bus.subscribe(tuple(session_key(s) for s in ids), buffer)
    try:
        while True:
            grew = False
            while True:
                page, grew = _up_to_growth(
                    await store.read_session_events(ids, after=last, limit=PAGE), grows
                )
                if page:
                    last = page[-1].pos
                    yield page
                if grew or len(page) < PAGE:
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
