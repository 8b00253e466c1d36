"""Live notifications of committed events, chosen by URL; drivers are imported only for
the bus in use."""

from __future__ import annotations

from culm.bus.base import Bus, Notice, NoticeHandler, run_key, session_key
from culm.bus.fanout import ALL, Subscription
from culm.bus.local import LocalBus
from culm.errors import InvalidInput

__all__ = [
    "ALL",
    "Bus",
    "LocalBus",
    "Notice",
    "NoticeHandler",
    "Subscription",
    "open_bus",
    "run_key",
    "session_key",
]


def open_bus(url: str, interval: float = 0.002) -> Bus:
    """The bus for ``url`` (not yet opened): ``local``, ``postgresql://...`` (LISTEN/NOTIFY)
    or ``redis://...``; ``interval`` is the shortest time between two notices sent."""
    scheme = url.split(":", 1)[0].split("+", 1)[0]
    if url == "local":
        return LocalBus()
    if scheme in ("postgresql", "postgres"):
        from culm.bus.postgres import PostgresBus

        return PostgresBus(url, interval)
    if scheme in ("redis", "rediss", "unix"):
        from culm.bus.redis import RedisBus

        return RedisBus(url, interval)
    raise InvalidInput(f"unsupported bus URL {url!r}; use local, postgresql://... or redis://...")
