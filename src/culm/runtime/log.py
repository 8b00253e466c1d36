"""Group commit: events of every run are queued, written in one transaction, then announced.

Nobody is shown an event before it is durable: the store announces a batch (its
``on_commit``, which the engine points at the bus) only once it has committed it, in
commit order. ``append`` never waits for the disk; ``flush`` does.
"""

from __future__ import annotations

import asyncio
import logging

from culm.events import Event
from culm.models import RunState
from culm.store import Store

log = logging.getLogger("culm.log")


class EventLog:
    """The write path of every runner in this process."""

    def __init__(self, store: Store, max_batch: int = 5_000) -> None:
        self._store = store
        self._max_batch = max_batch
        self._events: list[Event] = []
        self._states: dict[str, RunState] = {}
        self._queued: asyncio.Future[None] | None = None
        self._writing: asyncio.Future[None] | None = None
        self._wake = asyncio.Event()
        self.appended = 0
        self.commits = 0

    @property
    def store(self) -> Store:
        """The store this log writes to (runners keep their session's messages there too)."""
        return self._store

    def append(self, event: Event, state: RunState) -> None:
        """Queue ``event`` and its run's new ``state`` for the next commit."""
        self._events.append(event)
        self._states[event.run_id] = state
        if self._queued is None:
            self._queued = asyncio.get_running_loop().create_future()
            self._wake.set()

    async def backpressure(self) -> None:
        """Wait while the queue is full, so a fast emitter cannot outrun the disk unboundedly."""
        if len(self._events) >= self._max_batch:
            await self.flush()

    async def flush(self) -> None:
        """Return when everything appended so far is committed and published."""
        pending = self._queued or self._writing
        if pending is not None:
            await asyncio.shield(pending)

    async def run(self) -> None:
        """Write queued events until cancelled; a failed write is retried, never dropped."""
        delay = 0.05
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._events:
                events, states, done = self._events, self._states, self._queued
                self._events, self._states, self._queued = [], {}, None
                assert done is not None
                self._writing = done
                try:
                    await self._store.write_batch(events, states)
                except Exception:
                    log.exception("writing %d events failed; retrying in %.2fs", len(events), delay)
                    self._requeue(events, states, done)
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 2.0)
                    continue
                finally:
                    self._writing = None
                delay = 0.05
                self.appended += len(events)
                self.commits += 1
                done.set_result(None)

    def _requeue(
        self, events: list[Event], states: dict[str, RunState], done: asyncio.Future[None]
    ) -> None:
        # the failed batch goes back in front; a newer state of the same run wins
        states.update(self._states)
        self._events, self._states = events + self._events, states
        if self._queued is not None:
            later = self._queued
            done.add_done_callback(lambda _: None if later.done() else later.set_result(None))
        self._queued = done
