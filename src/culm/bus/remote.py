"""What the buses between processes share: local fan-out, and notices sent off the write
path, merged, at most one message per ``interval``.

A commit only merges its notice into the pending one (no I/O, no await): the notifier task
sends whatever is pending, then sleeps ``interval``, so a thousand commits a second cost a
few hundred messages at most and no commit ever waits for the network. The listener task
hands each notice from another process to the handler; when the connection drops it tells
the handler that something may have been missed (``Notice(log=-1)``), then reconnects with
backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Callable, Hashable, Sequence

import orjson
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, wait_exponential

from culm.bus.base import Notice, NoticeHandler
from culm.bus.fanout import Hub, Subscription
from culm.events import Event

log = logging.getLogger("culm.bus")

MAX_CANCELS = 100
"""Run ids per message (PostgreSQL's NOTIFY takes under 8,000 bytes); more go next time."""

MISSED = -1
FIRST_PAUSE = 0.1
"""Seconds before the first try to reconnect; each next pause doubles, up to ``MAX_PAUSE``."""
MAX_PAUSE = 5.0
_CANNOT_SEND = "cannot send notices"


def encode(sender: str, notice: Notice) -> str:
    body: dict[str, object] = {"from": sender}
    if notice.log:
        body["log"] = notice.log
    if notice.cancel:
        body["cancel"] = sorted(notice.cancel)
    if notice.work:
        body["work"] = 1
    return orjson.dumps(body).decode()


def decode(payload: str | bytes) -> tuple[str, Notice] | None:
    try:
        body = orjson.loads(payload)
        sender = str(body["from"])
        cancel = {str(r) for r in body.get("cancel", ())}
        return sender, Notice(int(body.get("log", 0)), cancel, bool(body.get("work")))
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        return None


class RemoteBus:
    """Base of the buses that reach other processes; subclasses connect, send, listen."""

    def __init__(self, interval: float = 0.002) -> None:
        self._hub = Hub()
        self._interval = interval
        self._pending = Notice()
        self._dirty = asyncio.Event()
        self._handlers: list[NoticeHandler] = []
        self._tasks: list[asyncio.Task[None]] = []
        self.sender = f"{os.getpid()}-{id(self):x}"
        self.problem: str | None = "not connected yet"

    # what subclasses provide

    async def _connect(self) -> None:
        """Open the connections (raising when the server cannot be reached)."""
        raise NotImplementedError

    async def _disconnect(self) -> None:
        raise NotImplementedError

    async def _send(self, payload: str) -> None:
        raise NotImplementedError

    async def _listen(self, deliver: Callable[[str | bytes], None]) -> None:
        """Pass every message received to ``deliver``; return or raise when cut off."""
        raise NotImplementedError

    # the bus

    async def open(self) -> None:
        """Connect; a server that cannot be reached yet is not fatal: the bus reports it
        (``health``) and keeps trying, and the log carries everything meanwhile."""
        try:
            await self._connect()
            self.problem = None
        except Exception as exc:
            self.problem = f"cannot connect: {exc}"
            log.warning("bus: %s; retrying in the background", self.problem)
        self._tasks = [
            asyncio.get_running_loop().create_task(self._notifier()),
            asyncio.get_running_loop().create_task(self._listener()),
        ]

    async def close(self) -> None:
        if self._pending:  # what was committed last is still worth telling
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._flush(), 1.0)
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks = []
        with contextlib.suppress(Exception):
            await self._disconnect()

    def publish(self, events: Sequence[Event]) -> None:
        self._hub.deliver(events)

    def subscribe(self, keys: tuple[Hashable, ...], limit: int) -> Subscription:
        return self._hub.subscribe(keys, limit)

    @property
    def subscriber_count(self) -> int:
        return self._hub.subscriber_count

    def notify(self, notice: Notice) -> None:
        if notice:
            self._pending.merge(notice)
            self._dirty.set()

    def on_notice(self, handler: NoticeHandler) -> None:
        self._handlers.append(handler)

    def health(self) -> str | None:
        return self.problem

    # tasks

    async def _notifier(self) -> None:
        while True:
            await self._dirty.wait()
            try:
                await self._flush()
                if self.problem is not None and self.problem.startswith(_CANNOT_SEND):
                    self.problem = None
            except Exception as exc:  # the log is the truth: receivers catch up by polling
                self.problem = f"{_CANNOT_SEND}: {exc}"
                log.warning("bus: sending a notice failed: %s", exc)
                await asyncio.sleep(0.5)
            await asyncio.sleep(self._interval)

    async def _flush(self) -> None:
        self._dirty.clear()
        notice, self._pending = self._pending, Notice()
        cancels = sorted(notice.cancel)
        notice.cancel = set(cancels[:MAX_CANCELS])
        if len(cancels) > MAX_CANCELS:
            self.notify(Notice(cancel=set(cancels[MAX_CANCELS:])))
        await self._send(encode(self.sender, notice))

    async def _listener(self) -> None:
        while True:
            try:
                await self._listen(self._deliver)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.problem = f"cut off: {exc}"
                log.warning("bus: listening failed: %s", exc)
            self._dispatch(Notice(log=MISSED))
            await asyncio.sleep(FIRST_PAUSE)
            # tenacity tries until it works, the pauses doubling after the first
            await AsyncRetrying(
                retry=retry_if_exception_type(Exception),
                wait=wait_exponential(multiplier=2 * FIRST_PAUSE, max=MAX_PAUSE),
                before_sleep=self._cannot_reconnect,
            )(self._reconnect)
            self.problem = None
            self._dispatch(Notice(log=MISSED))  # what was sent while we were away

    async def _reconnect(self) -> None:
        await self._disconnect()
        await self._connect()

    def _cannot_reconnect(self, state: RetryCallState) -> None:
        failed = state.outcome.exception() if state.outcome else None
        self.problem = f"cannot reconnect: {failed}"

    def _deliver(self, payload: str | bytes) -> None:
        decoded = decode(payload)
        if decoded is None:
            log.warning("bus: ignoring a message that is not a notice")
            return
        sender, notice = decoded
        if sender != self.sender:
            self._dispatch(notice)

    def _dispatch(self, notice: Notice) -> None:
        for handler in self._handlers:
            try:
                handler(notice)
            except Exception:
                log.exception("bus: a notice handler failed")
