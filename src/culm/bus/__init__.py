"""Live notifications of committed events, chosen by URL."""

from __future__ import annotations

from culm.bus.base import Bus, run_key, session_key
from culm.bus.fanout import ALL, Subscription
from culm.bus.local import LocalBus

__all__ = ["ALL", "Bus", "LocalBus", "Subscription", "run_key", "session_key"]
