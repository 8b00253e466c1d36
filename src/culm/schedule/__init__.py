"""Schedules: turning time into ``start_run`` calls.

``cadence`` and ``policy`` are pure (fire times; misfire and overlap rules), ``spec``
checks what users give, ``scheduler`` claims and fires due times, ``book`` keeps a
tenant's schedules.
"""

from __future__ import annotations

from culm.schedule.book import ScheduleBook
from culm.schedule.scheduler import RunDoor, Scheduler

__all__ = ["RunDoor", "ScheduleBook", "Scheduler"]
