"""The bus of a single process: delivery is a function call, and there is nobody else to
notify."""

from __future__ import annotations

from collections.abc import Hashable, Sequence

from culm.bus.base import Notice, NoticeHandler
from culm.bus.fanout import Hub, Subscription
from culm.events import Event


class LocalBus:
    def __init__(self) -> None:
        self._hub = Hub()

    async def open(self) -> None:
        pass

    async def close(self) -> None:
        pass

    def publish(self, events: Sequence[Event]) -> None:
        self._hub.deliver(events)

    def subscribe(self, keys: tuple[Hashable, ...], limit: int) -> Subscription:
        return self._hub.subscribe(keys, limit)

    @property
    def subscriber_count(self) -> int:
        return self._hub.subscriber_count

    def notify(self, notice: Notice) -> None:
        pass

    def on_notice(self, handler: NoticeHandler) -> None:
        pass

    def health(self) -> str | None:
        return None
