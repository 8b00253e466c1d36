"""When a schedule fires: cron in a time zone, fixed intervals, one time. Pure functions.

Cron expressions are matched against the wall clock of an IANA time zone, the way people
read them. Daylight saving time makes some wall times happen twice and others never; the
rule is the one Vixie cron follows:

- An expression whose hour field is ``*`` is about the clock's minutes, every real hour:
  a repeated hour fires twice, a skipped hour does not fire (``*/15 * * * *`` keeps firing
  every 15 real minutes through both changes).
- Any other expression names times of day: a wall time that happens twice fires once, at
  its first occurrence; one that never happens fires as much later as the clock jumped
  (``30 2 * * *`` fires at 03:30 on the day 02:00 becomes 03:00).

Intervals are exact elapsed seconds from an anchor (``every=86400`` drifts against the wall
clock across a DST change; use cron for "every day at 9:00").
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter  # type: ignore[import-untyped]  # it ships no type hints

from culm.errors import InvalidInput
from culm.models import ScheduleSpec

_MACROS = frozenset({"@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight"})
_MACROS_HOURLY = frozenset({"@hourly"})
# no UTC offset changes by more than this, and no two changes are closer than twice this
_SHIFT = timedelta(hours=3)
_EPS = 1e-3


@lru_cache(maxsize=256)
def zone(name: str) -> ZoneInfo:
    """The IANA time zone ``name``, or ``InvalidInput``."""
    try:
        if len(name) > 64:
            raise ValueError(name)
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise InvalidInput(
            f"unknown time zone {name!r}; use an IANA name like Europe/Paris"
        ) from None


def check_cron(expr: str) -> None:
    """Raise ``InvalidInput`` unless ``expr`` is a five-field cron expression or a macro."""
    text = expr.strip()
    fields = text.split()
    ok = len(text) <= 256 and (text.lower() in _MACROS | _MACROS_HOURLY or len(fields) == 5)
    if ok:
        try:
            croniter(text, datetime(2000, 1, 1))
        except Exception:  # croniter reports bad input with several exception types
            ok = False
    if not ok:
        raise InvalidInput(
            f"invalid cron expression {expr!r}; use five fields "
            "(minute hour day-of-month month day-of-week), e.g. '0 9 * * 1-5', or @daily"
        )


def cron_times(expr: str, tz: str, after: float) -> Iterator[float]:
    """The fire times of ``expr`` in zone ``tz`` strictly after ``after``, in order, forever
    (it ends only when the expression can never match again, e.g. ``0 0 30 2 *``)."""
    tzinfo = zone(tz)
    itr = croniter(expr.strip(), datetime(2000, 1, 1))
    every_hour = expr.strip().lower() in _MACROS_HOURLY or _all_hours(itr)
    while True:
        t = _next_cron(itr, tzinfo, every_hour, after)
        if t is None:
            return
        yield t
        after = t


def _all_hours(itr: croniter) -> bool:
    hours = itr.expanded[1]
    return hours == ["*"] or len(hours) == 24


def _next_cron(itr: croniter, tz: ZoneInfo, every_hour: bool, after: float) -> float | None:
    # Walk wall-clock matches and map each to instants. Near an offset change the mapping is
    # not monotonic (a fold repeats wall times, a gap shifts them), so there the walk starts
    # earlier and looks a little past the first hit for an earlier instant.
    start = _wall(after, tz)
    if _change_near(tz, after):
        start -= _SHIFT
    itr.set_current(start, force=True)
    best: float | None = None
    best_wall = start
    while True:
        try:
            wall = itr.get_next(datetime)
        except (StopIteration, ValueError, OverflowError):  # no match ever again, or past 9999
            return best
        if best is not None and wall > best_wall + _SHIFT:
            return best
        for t in _instants(wall, tz, every_hour):
            if t > after and (best is None or t < best):
                best, best_wall = t, wall
        if best is not None and wall == best_wall and not _change_near(tz, best):
            return best


def _wall(t: float, tz: ZoneInfo) -> datetime:
    return datetime.fromtimestamp(t, tz).replace(tzinfo=None)


def _change_near(tz: ZoneInfo, t: float) -> bool:
    seconds = _SHIFT.total_seconds()
    before = datetime.fromtimestamp(t - seconds, tz).utcoffset()
    return before != datetime.fromtimestamp(t + seconds, tz).utcoffset()


def _instants(wall: datetime, tz: ZoneInfo, every_hour: bool) -> list[float]:
    """The instants at which wall time ``wall`` fires (see the module docstring)."""
    first = wall.replace(tzinfo=tz, fold=0).timestamp()
    second = wall.replace(tzinfo=tz, fold=1).timestamp()
    if first == second:
        return [first]
    if _wall(first, tz) == wall:  # happens twice; fold=0 is the earlier
        return [first, second] if every_hour else [first]
    # never happens: fold=0 reads it with the offset from before the jump, i.e. shifted
    # later by as much as the clock jumped
    return [] if every_hour else [first]


def interval_times(every: float, anchor: float, after: float) -> Iterator[float]:
    """``anchor + k * every`` for whole ``k``, strictly after ``after``, in order, forever."""
    k = math.floor((after - anchor) / every) + 1
    while anchor + (k - 1) * every > after:  # float rounding
        k -= 1
    while True:
        t = anchor + k * every
        if t > after:
            yield t
        k += 1


def fire_times(spec: ScheduleSpec, created_at: float, after: float) -> Iterator[float]:
    """Every fire time of ``spec`` strictly after ``after``, within its start and end."""
    if spec.start_at is not None:
        after = max(after, spec.start_at - _EPS)
    times: Iterator[float]
    if spec.cron is not None:
        times = cron_times(spec.cron, spec.timezone, after)
    elif spec.every is not None:
        anchor = spec.anchor if spec.anchor is not None else spec.start_at
        times = interval_times(spec.every, created_at if anchor is None else anchor, after)
    else:
        times = iter([spec.at] if spec.at is not None and spec.at > after else [])
    for t in times:
        if spec.end_at is not None and t > spec.end_at:
            return
        yield t


def next_fire(spec: ScheduleSpec, created_at: float, after: float) -> float | None:
    """The first fire time of ``spec`` strictly after ``after``, or None if none is left."""
    return next(fire_times(spec, created_at, after), None)


def utc(text: str) -> float:
    """An ISO 8601 time (naive means UTC) as epoch seconds: a helper for tables and tests."""
    value = datetime.fromisoformat(text)
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.timestamp()
