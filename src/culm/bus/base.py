"""The bus interface: live notice of committed events, between the parts of one process
or between processes. The log stays the truth; the bus only says "look, there is more"."""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import Protocol

from culm.bus.fanout import Subscription
from culm.events import Event


def run_key(run_id: str) -> Hashable:
    return ("run", run_id)


def session_key(session_id: str) -> Hashable:
    return ("session", session_id)


class Bus(Protocol):
    async def open(self) -> None: ...

    async def close(self) -> None: ...

    def publish(self, events: Sequence[Event]) -> None:
        """Announce events that are already committed to the log."""

    def subscribe(self, keys: tuple[Hashable, ...], limit: int) -> Subscription:
        """A live feed of events for any of ``keys`` (see ``run_key``, ``session_key``)."""

    @property
    def subscriber_count(self) -> int: ...
