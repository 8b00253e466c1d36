"""Identifiers that sort by creation time, so lists can page by id alone."""

from __future__ import annotations

import os
import time

_last = 0


def new_id(prefix: str) -> str:
    """A new id like ``run_0190f3a2b4c5d6e7f8a9b0c1``: 12 hex digits of microseconds, 12 random.

    Ids made in one process are strictly increasing; across processes they sort by time.
    """
    global _last
    now = max(time.time_ns() // 1000, _last + 1)
    _last = now
    return f"{prefix}_{now:013x}{os.urandom(6).hex()}"
