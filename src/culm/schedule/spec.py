"""Checking a schedule spec before anything is stored: every mistake is one clear
``InvalidInput`` (or ``NotFound`` for an unknown agent)."""

from __future__ import annotations

import dataclasses
import enum
import math
from collections.abc import Mapping
from typing import Any, TypeVar

from culm.agent.app import App
from culm.errors import InvalidInput
from culm.models import Misfire, Overlap, ScheduleSpec, SessionMode
from culm.payload import DEFAULT_LIMITS, Limits
from culm.schedule.cadence import check_cron, next_fire, zone

MIN_EVERY = 1.0
MAX_CATCH_UP = 1000
EARLIEST, LATEST = -2208988800.0, 32503680000.0
"""Times a schedule may name: 1900 to 3000, so every fire time has a calendar date."""
LONGEST = 100 * 365.25 * 86400
"""Longest duration a schedule may name (100 years)."""
_FIELDS = frozenset(f.name for f in dataclasses.fields(ScheduleSpec))
_E = TypeVar("_E", bound=enum.Enum)


def validate(spec: ScheduleSpec, app: App, limits: Limits = DEFAULT_LIMITS) -> ScheduleSpec:
    """``spec`` with its enums and numbers normalized and its input copied, or the first
    thing wrong with it (the cadence is checked before the agent and its input). An input
    the log could not store is refused here, not at every firing."""
    kinds = [name for name in ("cron", "every", "at") if getattr(spec, name) is not None]
    if len(kinds) != 1:
        raise InvalidInput("give exactly one of cron, every or at")
    if spec.cron is not None:
        check_cron(spec.cron)
    zone(spec.timezone)
    every = _seconds("every", spec.every, MIN_EVERY, LONGEST)
    if spec.anchor is not None and every is None:
        raise InvalidInput("anchor only applies to schedules with every")
    start, end = _time("start_at", spec.start_at), _time("end_at", spec.end_at)
    if start is not None and end is not None and end < start:
        raise InvalidInput("end_at is before start_at")
    grace = _seconds("misfire_grace", spec.misfire_grace, 0.0, LONGEST)
    lateness = _seconds("max_lateness", spec.max_lateness, 1.0, LONGEST)
    if grace is None or lateness is None:
        raise InvalidInput("misfire_grace and max_lateness must be numbers of seconds")
    catch_up = spec.max_catch_up
    if isinstance(catch_up, bool) or not isinstance(catch_up, int):
        raise InvalidInput("max_catch_up must be a whole number")
    if not 1 <= catch_up <= MAX_CATCH_UP:
        raise InvalidInput(f"max_catch_up must be between 1 and {MAX_CATCH_UP}")
    if spec.name is not None and (not isinstance(spec.name, str) or len(spec.name) > 256):
        raise InvalidInput("name must be a string of at most 256 characters")
    value = app.get(spec.agent).validate_input(spec.input, limits)
    return dataclasses.replace(
        spec,
        input=value,
        cron=None if spec.cron is None else spec.cron.strip(),
        every=every,
        anchor=_time("anchor", spec.anchor),
        at=_time("at", spec.at),
        start_at=start,
        end_at=end,
        session=_choice(SessionMode, "session", spec.session),
        overlap=_choice(Overlap, "overlap", spec.overlap),
        misfire=_choice(Misfire, "misfire", spec.misfire),
        misfire_grace=grace,
        max_lateness=lateness,
    )


def first_fire(spec: ScheduleSpec, created_at: float, now: float) -> float:
    """The first fire time after ``now``, or ``InvalidInput`` when there is none."""
    t = next_fire(spec, created_at, now)
    if t is None:
        raise InvalidInput(
            "this schedule would never fire: it has no fire time after now "
            "(check at, end_at and the cron expression)"
        )
    return t


def changed(spec: ScheduleSpec, changes: Mapping[str, Any]) -> ScheduleSpec:
    """``spec`` with ``changes`` applied; unknown fields are ``InvalidInput``.

    Setting one of ``cron``, ``every`` or ``at`` clears the other two, so a schedule can
    change kind in one update.
    """
    unknown = sorted(set(changes) - _FIELDS)
    if unknown:
        raise InvalidInput(f"unknown schedule fields: {', '.join(unknown)}")
    merged = dict(changes)
    for kind in ("cron", "every", "at"):
        if merged.get(kind) is not None:
            for other in {"cron", "every", "at"} - {kind}:
                merged.setdefault(other, None)
    return dataclasses.replace(spec, **merged)


def cadence_changed(old: ScheduleSpec, new: ScheduleSpec) -> bool:
    """Whether the fire times may differ (so the next one must be computed again)."""
    names = ("cron", "timezone", "every", "anchor", "at", "start_at", "end_at")
    return any(getattr(old, n) != getattr(new, n) for n in names)


def _seconds(name: str, value: Any, least: float, most: float) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InvalidInput(f"{name} must be a number of seconds")
    if not least <= value <= most:
        raise InvalidInput(f"{name} must be between {least:g} and {most:g} seconds")
    return float(value)


def _time(name: str, value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InvalidInput(f"{name} must be a time in seconds since the epoch")
    if not EARLIEST <= value <= LATEST:
        raise InvalidInput(f"{name} must be between the years 1900 and 3000")
    return float(value)


def _choice(kind: type[_E], name: str, value: Any) -> _E:
    try:
        return kind(value)
    except ValueError:
        allowed = ", ".join(str(m.value) for m in kind)
        raise InvalidInput(f"{name} must be one of {allowed}; got {value!r}") from None
