"""The bus interface: live notice of committed events, between the parts of one process
or between processes. The log stays the truth; the bus only says "look, there is more".

Two things travel on a bus. Inside a process, committed events are *published* to live
subscribers (``publish``/``subscribe``). Between processes only short *notices* travel
(``notify``/``on_notice``): "the log has grown to position P", "run R was asked to stop",
"there is work to claim". A process that receives a notice reads the log (or the runs
table) itself, so a lost notice only delays it until its next periodic look, and nothing
is ever lost with one.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from culm.bus.fanout import Subscription
from culm.events import Event


def run_key(run_id: str) -> Hashable:
    return ("run", run_id)


def session_key(session_id: str) -> Hashable:
    return ("session", session_id)


@dataclass(slots=True)
class Notice:
    """What one process tells the others; notices merge (see ``merge``)."""

    log: int = 0
    """The highest log position the sender committed (0: nothing new)."""
    cancel: set[str] = field(default_factory=set)
    """Runs someone asked to stop: whoever executes one stops it at its next safe point."""
    work: bool = False
    """Runs were queued for any process that executes them to claim."""

    def merge(self, other: Notice) -> None:
        self.log = max(self.log, other.log)
        self.cancel |= other.cancel
        self.work = self.work or other.work

    def __bool__(self) -> bool:
        return bool(self.log or self.cancel or self.work)


NoticeHandler = Callable[[Notice], None]


class Bus(Protocol):
    async def open(self) -> None: ...

    async def close(self) -> None: ...

    def publish(self, events: Sequence[Event]) -> None:
        """Announce events that are already committed to the log, in this process."""

    def subscribe(self, keys: tuple[Hashable, ...], limit: int) -> Subscription:
        """A live feed of events for any of ``keys`` (see ``run_key``, ``session_key``)."""

    @property
    def subscriber_count(self) -> int: ...

    def notify(self, notice: Notice) -> None:
        """Tell the other processes on this bus; never blocks (sent later, merged with
        other notices). A bus of one process drops it."""

    def on_notice(self, handler: NoticeHandler) -> None:
        """Call ``handler`` with each notice another process sends (``Notice()`` with
        ``log`` of -1 after the bus was cut off: anything may have been missed)."""

    def health(self) -> str | None:
        """Why the bus cannot carry notices now, or None when it can."""
