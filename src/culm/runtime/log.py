"""Group commit: events of every run are queued, written in one transaction, then announced.

Nobody is shown an event before it is durable: the store announces a batch (its
``on_commit``, which the engine points at the bus) only once it has committed it, in
commit order. ``append`` never waits for the disk; ``flush`` does.

What can go wrong, and what happens then:

- The database cannot be written (disk full, connection gone: ``Unavailable``). Nothing is
  dropped: the events stay queued, the log reports itself unhealthy with the reason, and
  it retries with backoff, writing fewer runs per attempt, so whatever fits gets through
  when a little space returns. Emitters wait once the queue holds ``max_bytes``.
- A write fails otherwise (a value the database refuses, a duplicate ``seq``). Retrying
  would fail forever and stall every run, so the batch is split by run and each run is
  written alone: only the run at fault is refused (``on_refused``), the others commit.
- A run's fence no longer holds (another process took the run over): its events are not
  written and its runner is told (``on_lost``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace

from culm.errors import Unavailable
from culm.events import Event
from culm.models import RunState
from culm.payload import DEFAULT_LIMITS, Limits
from culm.store import Store
from culm.store.base import Fence

log = logging.getLogger("culm.log")

_BACKOFF = (0.05, 2.0)
YIELD_EVENTS = 256
YIELD_BYTES = 1_048_576
"""An emitter lets the event loop run (``backpressure``) after this many events, or bytes
of their data, appended while the writer did not run. ``emit`` does not wait for the disk,
so a run emitting as fast as it can would otherwise hold the whole process until the
queue is full (5,000 events: tens of milliseconds in which no other run moves and no
request is answered). The writer itself lets such a burst go on before it takes the
queue: a commit begun mid-burst waits on SQLite's thread for the interpreter, which the
emitting run holds, until the burst ends (measured: 30 ms for 112 events), and then the
rest needs a commit of its own."""


@dataclass(slots=True)
class _Pending:
    """What one run has queued: its events in order, its newest state, its fence."""

    fence: Fence
    events: list[Event] = field(default_factory=list)
    state: RunState | None = None
    size: int = 0
    done: asyncio.Future[None] | None = None


class EventLog:
    """The write path of every runner in this process."""

    def __init__(
        self,
        store: Store,
        max_batch: int = 5_000,
        *,
        max_bytes: int = 64 * 1_048_576,
        limits: Limits = DEFAULT_LIMITS,
    ) -> None:
        self._store = store
        self._max_batch = max_batch
        self._max_bytes = max_bytes
        self.limits = limits
        """What every event's data is checked against before it is queued."""
        self._queue: dict[str, _Pending] = {}
        self._inflight: dict[str, asyncio.Future[None]] = {}
        self._taken: dict[str, _Pending] = {}
        """What the writer took from the queue and has not settled yet."""
        self._count = 0
        self._bytes = 0
        self._wake = asyncio.Event()
        self._room = asyncio.Event()
        self._room.set()
        self.problem: str | None = None
        """Why the last write failed while the database could not be written; None when
        the last write went through."""
        self.on_lost: Callable[[str], None] = lambda run_id: None
        """Told of a run whose events were not written because its fence no longer holds."""
        self.on_refused: Callable[[str, Fence, str], None] = lambda run_id, fence, why: None
        """Told of a run whose events the database refused (and were dropped), and why."""
        self.appended = 0
        self.commits = 0
        self._unyielded = 0
        self._unyielded_bytes = 0
        self._bursting = False
        """An emitter let the loop run in the middle of a burst (``backpressure``)."""

    @property
    def store(self) -> Store:
        """The store this log writes to (runners keep their session's messages there too)."""
        return self._store

    @property
    def queued_bytes(self) -> int:
        return self._bytes

    def append(self, event: Event, state: RunState, fence: Fence) -> None:
        """Queue ``event`` and its run's new ``state`` for the next commit. ``state`` may be
        changed in place by the caller afterwards: it is copied when a commit takes it."""
        pending = self._queue.get(event.run_id)
        # a runner passes the same fence object every time: compared by identity first
        if pending is not None and pending.fence is not fence and pending.fence != fence:
            # the run was claimed again: what the old claim queued could not be written
            self._count -= len(pending.events)
            self._bytes -= pending.size
            _settle(pending.done)
            pending = None
        if pending is None:
            pending = self._queue[event.run_id] = _Pending(fence)
        size = len(event.data_json())
        pending.events.append(event)
        pending.state = state
        pending.size += size
        self._count += 1
        self._bytes += size
        self._unyielded += 1
        self._unyielded_bytes += size
        if self._count >= self._max_batch or self._bytes >= self._max_bytes:
            self._room.clear()
        self._wake.set()

    async def backpressure(self) -> None:
        """Wait while the queue is full, so a fast emitter cannot outrun the disk unboundedly
        (in events or in bytes); otherwise let the event loop run once in a while
        (``YIELD_EVENTS``), so a fast emitter cannot hold the process either."""
        if not self._room.is_set():
            await self._room.wait()  # the writer's take, which makes room, counts anew
        elif self._unyielded >= YIELD_EVENTS or self._unyielded_bytes >= YIELD_BYTES:
            self._unyielded = self._unyielded_bytes = 0
            self._bursting = True
            await asyncio.sleep(0)

    async def flush(self, run_id: str | None = None) -> None:
        """Return when everything appended so far (for ``run_id``, or by anyone) has been
        committed and published, or dropped because it could not be written."""
        ids: Iterable[str] = (
            list(self._queue) + list(self._inflight) if run_id is None else (run_id,)
        )
        waits = []
        for rid in set(ids):
            inflight = self._inflight.get(rid)
            if inflight is not None:
                waits.append(inflight)
            pending = self._queue.get(rid)
            if pending is not None:
                if pending.done is None:
                    pending.done = asyncio.get_running_loop().create_future()
                waits.append(pending.done)
        for future in waits:
            await asyncio.shield(future)

    @property
    def idle(self) -> bool:
        """True when nothing is queued or being written."""
        return not self._queue and not self._inflight

    def recovered(self) -> None:
        """Forget ``problem`` once the database was written by someone else (the engine's
        probe) while this log had nothing left to write: with events queued, only their
        own commit clears it."""
        if self.idle:
            self.problem = None

    async def run(self) -> None:
        """Write queued events until cancelled. A bug in the writer itself does not stop
        it: it is logged, shown as ``problem`` (so the server reports itself unhealthy),
        what it held is queued again, and it goes on after a pause."""
        delay = _BACKOFF[0]
        while True:
            try:
                await self._run()
            except Exception as exc:
                log.exception("the event log's writer failed; it goes on in %.2f s", delay)
                self.problem = f"the event log's writer failed: {type(exc).__name__}: {exc}"
                held, self._taken = self._taken, {}
                self._put_back({r: p for r, p in held.items() if r in self._inflight})
                self._wake.set()
                await asyncio.sleep(delay)
                delay = min(delay * 2, _BACKOFF[1])

    async def _run(self) -> None:
        delay = _BACKOFF[0]
        share = 0  # runs per attempt after a failure; 0: everything queued
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._bursting:  # one turn of the loop after each of the burst's own
                self._bursting = False
                await asyncio.sleep(0)
            while self._queue:
                taken = self._taken = self._take(share)
                try:
                    await self._write(taken)
                except Unavailable as exc:
                    if self.problem is None:
                        log.error("cannot write the event log (%s); retrying", exc.message)
                    self.problem = exc.message
                    # what was written (or refused) before the failure is out of flight
                    self._taken = {}
                    self._put_back({r: p for r, p in taken.items() if r in self._inflight})
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, _BACKOFF[1])
                    share = max(1, (share or len(taken)) // 2)
                    continue
                self._taken = {}
                if self.problem is not None:
                    log.warning("the event log is written again")
                self.problem = None
                delay, share = _BACKOFF[0], 0

    def _take(self, share: int) -> dict[str, _Pending]:
        self._unyielded = self._unyielded_bytes = 0  # the loop has turned since
        ids = list(self._queue)
        if share:
            ids = ids[:share]
        taken = {rid: self._queue.pop(rid) for rid in ids}
        for rid, pending in taken.items():
            if pending.state is not None:
                # the runner changes its state in place as it emits: what is written with
                # these events is the state as of the last of them
                pending.state = replace(pending.state)
            self._count -= len(pending.events)
            self._bytes -= pending.size
            if pending.done is None:
                pending.done = asyncio.get_running_loop().create_future()
            self._inflight[rid] = pending.done
        if self._count < self._max_batch and self._bytes < self._max_bytes:
            self._room.set()
        return taken

    def _put_back(self, taken: dict[str, _Pending]) -> None:
        """Queue what could not be written in front of what came meanwhile, in order."""
        merged: dict[str, _Pending] = {}
        for rid, pending in taken.items():
            later = self._queue.pop(rid, None)
            self._inflight.pop(rid, None)
            if later is not None and later.fence == pending.fence:
                pending.events.extend(later.events)
                pending.state = later.state
                pending.size += later.size
                if later.done is not None:
                    _chain(pending.done, later.done)
            elif later is not None:  # claimed again meanwhile: the old queue is stale
                _settle(pending.done)
                pending = later
            merged[rid] = pending
        for rid, pending in self._queue.items():
            merged[rid] = pending
        self._queue = merged
        self._count = sum(len(p.events) for p in merged.values())
        self._bytes = sum(p.size for p in merged.values())
        if self._count >= self._max_batch or self._bytes >= self._max_bytes:
            self._room.clear()

    async def _write(self, taken: dict[str, _Pending]) -> None:
        try:
            await self._write_group(taken)
        except Unavailable:
            raise
        except Exception:
            # one run's data broke the transaction: write each alone, so only it fails
            for rid, pending in taken.items():
                await self._write_group({rid: pending})

    async def _write_group(self, taken: dict[str, _Pending]) -> None:
        events = [e for p in taken.values() for e in p.events]
        states = {rid: p.state for rid, p in taken.items() if p.state is not None}
        fences = {rid: p.fence for rid, p in taken.items()}
        try:
            lost = await self._store.write_batch(events, states, fences)
        except Unavailable:
            raise
        except Exception as exc:
            if len(taken) == 1:
                [(rid, pending)] = taken.items()
                self._refuse(rid, pending, exc)
                return
            raise
        self.appended += len(events)
        self.commits += 1
        for rid, pending in taken.items():
            self._inflight.pop(rid, None)
            _settle(pending.done)
            if rid in lost:
                self.on_lost(rid)

    def _refuse(self, run_id: str, pending: _Pending, exc: Exception) -> None:
        log.error(
            "the database refused %d events of run %s; the run fails",
            len(pending.events),
            run_id,
            exc_info=exc,
        )
        self._inflight.pop(run_id, None)
        _settle(pending.done)
        why = f"its events could not be stored: {type(exc).__name__}: {exc}"
        self.on_refused(run_id, pending.fence, why[:2000])


def _settle(future: asyncio.Future[None] | None) -> None:
    if future is not None and not future.done():
        future.set_result(None)


def _chain(first: asyncio.Future[None] | None, then: asyncio.Future[None]) -> None:
    """Settle ``then`` when ``first`` settles."""
    if first is None:
        return
    first.add_done_callback(lambda _: _settle(then))
