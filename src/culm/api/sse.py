"""Server-Sent Events: batches of events from the engine become chunks of a streaming response.

One chunk per batch, joined into one bytes object: a subscriber catching up on thousands of
events costs one write, not thousands. Each event's JSON is encoded once however many
clients receive it (``Event.to_json``). While nothing happens the stream sends a comment
line every ``heartbeat`` seconds, so proxies keep it open and a vanished client is noticed.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from starlette.responses import StreamingResponse

from culm.api.metrics import Metrics
from culm.errors import NotFound
from culm.events import Event

Encoder = Callable[[Sequence[Event]], bytes]

FIRST = asyncio.FIRST_COMPLETED
PING = b": ping\n\n"
RETRY = b"retry: 1000\n\n"
"""Tells an ``EventSource`` to reconnect after a second; it resumes by ``Last-Event-ID``."""

HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}

_types: dict[str, bytes] = {}


def _type(name: str) -> bytes:
    # a line break inside a user-chosen type would end the field early: flatten it
    encoded = _types.get(name)
    if encoded is None:
        encoded = name.replace("\r", " ").replace("\n", " ").encode()
        if len(_types) < 10_000:
            _types[name] = encoded
    return encoded


def encode_run(events: Sequence[Event]) -> bytes:
    """A run's events, ``id:`` being the sequence number."""
    return b"".join(
        [b"id: %d\nevent: %b\ndata: %b\n\n" % (e.seq, _type(e.type), e.to_json()) for e in events]
    )


def with_pos(event: Event) -> bytes:
    """The event's JSON with its log position added as ``pos`` (a session's cursor)."""
    return b'%b,"pos":%d}' % (event.to_json()[:-1], event.pos)


def encode_session(events: Sequence[Event]) -> bytes:
    """A session's events, ``id:`` being the log position, which the data carries as ``pos``."""
    return b"".join(
        [b"id: %d\nevent: %b\ndata: %b\n\n" % (e.pos, _type(e.type), with_pos(e)) for e in events]
    )


class Shutdown:
    """The signal that ends every open stream when the server stops, so clients get a clean
    end of stream (and resume by cursor) instead of a connection cut after a grace period."""

    def __init__(self) -> None:
        self._signal: asyncio.Future[None] | None = None

    @property
    def signal(self) -> asyncio.Future[None]:
        if self._signal is None:
            self._signal = asyncio.get_running_loop().create_future()
        return self._signal

    def trigger(self) -> None:
        if not self.signal.done():
            self.signal.set_result(None)


class Deletions:
    """Sessions deleted through this process: their open streams end at once. (A session
    deleted by another process is noticed by the stream's own periodic check, ``Until``.)"""

    def __init__(self) -> None:
        self._watchers: dict[str, set[asyncio.Future[None]]] = {}

    def watch(self, session_id: str) -> asyncio.Future[None]:
        """A future resolved when ``session_id`` is deleted here; ``unwatch`` it when done."""
        future = asyncio.get_running_loop().create_future()
        self._watchers.setdefault(session_id, set()).add(future)
        return future

    def unwatch(self, session_id: str, future: asyncio.Future[None]) -> None:
        watchers = self._watchers.get(session_id)
        if watchers is not None:
            watchers.discard(future)
            if not watchers:
                del self._watchers[session_id]

    def deleted(self, session_ids: Iterable[str]) -> None:
        for session_id in session_ids:
            for future in self._watchers.pop(session_id, ()):
                if not future.done():
                    future.set_result(None)


@dataclass(slots=True)
class Until:
    """What ends a session's stream, which would not end by itself: the session's deletion
    through this process (``deletions``), or ``alive`` answering False when asked every
    ``every`` heartbeats of quiet (a deletion by another process)."""

    deletions: Deletions
    session_id: str
    alive: Callable[[], Awaitable[bool]]
    every: int


async def _chunks(
    batches: AsyncIterator[list[Event]],
    encode: Encoder,
    heartbeat: float,
    metrics: Metrics,
    shutdown: Shutdown,
    until: Until | None,
    chunk_bytes: int,
) -> AsyncIterator[bytes]:
    since = time.time()
    metrics.streams += 1
    pending: asyncio.Future[list[Event]] | None = None
    stops: tuple[asyncio.Future[None], ...] = (shutdown.signal,)
    if until is not None:
        stops += (until.deletions.watch(until.session_id),)
    quiet = 0
    try:
        yield RETRY
        while not any(s.done() for s in stops):
            if pending is None:
                pending = asyncio.ensure_future(anext(batches))
            waits: list[asyncio.Future[Any]] = [pending, *stops]
            await asyncio.wait(waits, timeout=heartbeat, return_when=FIRST)
            if not pending.done():
                if any(s.done() for s in stops):
                    return
                quiet += 1
                if until is not None and quiet % until.every == 0 and not await until.alive():
                    return
                yield PING
                continue
            future, pending = pending, None
            try:
                batch = future.result()
            except (StopAsyncIteration, NotFound):
                return  # the end, or what was followed has been deleted meanwhile
            _observe(metrics, batch, since)
            for piece in _pieces(batch, chunk_bytes):
                yield encode(piece)
    finally:
        metrics.streams -= 1
        if until is not None:
            until.deletions.unwatch(until.session_id, stops[1])
        if pending is not None:
            # cancelling the pending read throws into the generator, which closes it (and
            # its subscription); awaiting here could itself be cancelled by the disconnect
            pending.cancel()
        else:
            aclose = getattr(batches, "aclose", None)
            if aclose is not None:
                await aclose()


def _observe(metrics: Metrics, batch: Sequence[Event], since: float) -> None:
    # only events emitted while this client was connected: older ones are a replay, and
    # how old they are says nothing about delivery. A chunk's events count with the delay
    # of its oldest live event, an upper bound that costs one sample per chunk.
    if not batch or batch[-1].ts < since:
        return
    oldest = batch[0] if batch[0].ts >= since else batch[-1]
    metrics.delivery.observe(max(0.0, time.time() - oldest.ts), len(batch))


def _pieces(batch: list[Event], limit: int) -> Iterator[list[Event]]:
    """The batch in runs of events of at most ``limit`` bytes of JSON (at least one each):
    a catch-up batch of large events is written as several chunks, each encoded when the
    previous one has been taken by the client, not as one copy of the whole batch."""
    start = size = 0
    for i, event in enumerate(batch):
        length = len(event.to_json())
        if size and size + length > limit:
            yield batch[start:i]
            start, size = i, 0
        size += length
    yield batch if start == 0 else batch[start:]


def event_stream(
    batches: AsyncIterator[list[Event]],
    encode: Encoder,
    *,
    heartbeat: float,
    metrics: Metrics,
    shutdown: Shutdown,
    until: Until | None = None,
    chunk_bytes: int = 4_194_304,
) -> StreamingResponse:
    """A ``text/event-stream`` response; Starlette ends it (and closes ``batches``) when the
    client disconnects, ``shutdown`` when the server stops, and ``until`` says when else.
    Each chunk written holds at most ``chunk_bytes`` of events' JSON (or one event)."""
    return StreamingResponse(
        _chunks(batches, encode, heartbeat, metrics, shutdown, until, chunk_bytes),
        media_type="text/event-stream",
        headers=HEADERS,
    )
