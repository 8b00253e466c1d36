"""What to do with due fire times (misfire) and with a firing that meets an active run
(overlap). Pure functions of plain values, so tables can test every case.
"""

from __future__ import annotations

import enum
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from culm.models import Misfire, Overlap

SCAN_LIMIT = 10_000
"""Fire times counted one by one after a downtime; past this the count is a lower bound."""


@dataclass(slots=True, frozen=True)
class Due:
    """The fire times that have come due: how many, the first, and the latest few."""

    count: int
    first: float
    latest: tuple[float, ...]
    """The most recent ones, oldest first (as many as a plan can need)."""


def collect_due(times: Iterable[float], now: float, keep: int) -> Due | None:
    """Walk ``times`` (increasing) up to ``now``, reading at most ``SCAN_LIMIT`` of them;
    None when none is due."""
    tail: deque[float] = deque(maxlen=keep)
    count = 0
    first = 0.0
    for t in times:
        if t > now or count >= SCAN_LIMIT:
            break
        if count == 0:
            first = t
        tail.append(t)
        count += 1
    return None if count == 0 else Due(count, first, tuple(tail))


def scan_due(
    times_after: Callable[[float], Iterable[float]], after: float, now: float, keep: int
) -> Due | None:
    """The fire times in ``(after, now]`` of a cadence (``times_after(t)`` yields its times
    after ``t``, in order); None when none is due.

    A long downtime of a dense cadence is not walked tick by tick: past ``SCAN_LIMIT`` the
    walk jumps to just before ``now``, so ``latest`` is still right and ``count`` becomes a
    lower bound.
    """
    total, first, last = 0, 0.0, after
    tail: deque[float] = deque(maxlen=keep)
    pos, span = after, 0.0
    while True:
        due = collect_due(times_after(pos), now, keep)
        if due is not None:
            first = first if total else due.first
            total += due.count
            tail.extend(due.latest)
            if due.count < SCAN_LIMIT:
                break
            last = due.latest[-1]
            spacing = (last - due.first) / (due.count - 1)
            span = max(spacing, 1e-3) * (keep + 1) * 4
        elif span == 0.0 or pos <= last:
            break
        else:  # nothing in the recent window: the cadence is uneven, look further back
            span *= 16
        pos = max(last, now - span)
    return Due(total, first, tuple(tail)) if total else None


@dataclass(slots=True, frozen=True)
class Plan:
    """Which due fire times start a run now; the rest (``missed`` of them, from
    ``missed_from`` to ``missed_to``) are recorded as missed, in one ledger entry."""

    fire: tuple[float, ...]
    missed: int = 0
    missed_from: float | None = None
    missed_to: float | None = None


def plan(
    due: Due,
    now: float,
    policy: Misfire,
    *,
    grace: float,
    max_catch_up: int,
    max_lateness: float,
) -> Plan:
    """Decide what ``due`` turns into; never more than one run, except under ``catch_up``
    and then at most ``max_catch_up``.

    A lone fire time at most ``grace`` late is simply on time. Otherwise the scheduler was
    away (or fell behind) and ``policy`` decides.
    """
    latest = due.latest[-1]
    on_time = now - latest <= grace
    fire: tuple[float, ...]
    if (due.count == 1 and on_time) or policy is Misfire.RUN_ONCE:
        fire = (latest,)
    elif policy is Misfire.SKIP:
        fire = (latest,) if on_time else ()
    else:
        window = max(max_lateness, grace)
        eligible = [t for t in due.latest if now - t <= window]
        fire = tuple(eligible[-max_catch_up:]) if max_catch_up > 0 else ()
    missed = due.count - len(fire)
    if missed == 0:
        return Plan(fire)
    before = [t for t in due.latest if not fire or t < fire[0]]
    return Plan(fire, missed, due.first, before[-1] if before else due.first)


def keep_for(policy: Misfire, max_catch_up: int) -> int:
    """How many of the latest due times ``plan`` needs: enough to fire and name the last
    missed one."""
    return (max_catch_up if policy is Misfire.CATCH_UP else 1) + 1


class Action(enum.StrEnum):
    """What a firing does, given the schedule's active runs."""

    START = "start"
    SKIP = "skip"
    WAIT = "wait"
    CANCEL_AND_START = "cancel_and_start"


def overlap(policy: Overlap, active: int, waiting: bool) -> Action:
    """The action for a firing while ``active`` runs of its schedule are pending or running
    and another firing is (``waiting``) or is not already waiting to start."""
    if active == 0 and not waiting:
        return Action.START
    if policy is Overlap.ALLOW:
        return Action.START
    if policy is Overlap.SKIP:
        return Action.SKIP
    if policy is Overlap.ENQUEUE:
        return Action.SKIP if waiting else Action.WAIT
    return Action.CANCEL_AND_START
