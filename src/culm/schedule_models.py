"""Records of schedules: what a user sets (``ScheduleSpec`` and its policies), the stored
schedule and its ledger of fire times (``Firing``). Plain data, like ``culm.models``, which
re-exports every name here."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from culm.events import iso

if TYPE_CHECKING:  # only named in annotations: models.py imports this module
    from culm.models import RunStatus


class SessionMode(enum.StrEnum):
    """Which session a schedule's runs use."""

    NEW = "new"
    """Each firing starts a new session."""
    SHARED = "shared"
    """Every firing continues one session, created with the schedule."""


class Overlap(enum.StrEnum):
    """What a firing does while a run of the same schedule is still active."""

    ALLOW = "allow"
    """Start anyway (on a shared session the run waits its turn on the session)."""
    SKIP = "skip"
    """Do not start; the firing is recorded as ``skipped_overlap``."""
    ENQUEUE = "enqueue"
    """Wait until the active runs end, then start; at most one firing waits, later ones skip."""
    CANCEL_PREVIOUS = "cancel_previous"
    """Cancel the schedule's active runs, then start."""


class Misfire(enum.StrEnum):
    """What happens to fire times that passed while no scheduler was running."""

    RUN_ONCE = "run_once"
    """Start one run for the latest of them; the others are recorded as missed."""
    SKIP = "skip"
    """Start nothing for them; fire times within the grace period still count as on time."""
    CATCH_UP = "catch_up"
    """Start the latest ``max_catch_up`` of those at most ``max_lateness`` seconds late."""


class FiringOutcome(enum.StrEnum):
    """What became of one fire time. The last four are final."""

    CLAIMED = "claimed"
    """Taken by a scheduler, which is starting its run (lasts milliseconds)."""
    WAITING = "waiting"
    """Overlap ``enqueue``: starts when the schedule's active runs end."""
    STARTED = "started"
    SKIPPED_OVERLAP = "skipped_overlap"
    MISSED = "missed"
    FAILED_TO_START = "failed_to_start"


@dataclass(slots=True, frozen=True)
class ScheduleSpec:
    """Everything a user sets on a schedule: when it fires and what it runs.

    Exactly one of ``cron`` (five fields or ``@daily``-style, in ``timezone``), ``every``
    (seconds, aligned on ``anchor``, else ``start_at``, else the creation time) or ``at``
    (one instant) says when. Times are epoch seconds; ``start_at``/``end_at`` bound the fire
    times, inclusive.
    """

    agent: str
    input: Any = None
    cron: str | None = None
    timezone: str = "UTC"
    every: float | None = None
    anchor: float | None = None
    at: float | None = None
    start_at: float | None = None
    end_at: float | None = None
    session: SessionMode = SessionMode.NEW
    overlap: Overlap = Overlap.SKIP
    misfire: Misfire = Misfire.RUN_ONCE
    misfire_grace: float = 60.0
    """A fire time at most this many seconds late is on time, not missed."""
    max_catch_up: int = 10
    max_lateness: float = 3600.0
    name: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "agent": self.agent,
            "input": self.input,
            "cron": self.cron,
            "timezone": self.timezone,
            "every": self.every,
            "anchor": iso(self.anchor),
            "at": iso(self.at),
            "start_at": iso(self.start_at),
            "end_at": iso(self.end_at),
            "session": self.session.value,
            "overlap": self.overlap.value,
            "misfire": self.misfire.value,
            "misfire_grace": self.misfire_grace,
            "max_catch_up": self.max_catch_up,
            "max_lateness": self.max_lateness,
        }


@dataclass(slots=True, frozen=True)
class FiringCounts:
    """Totals over a schedule's life; ``consecutive_failures`` resets when a run completes."""

    started: int = 0
    skipped_overlap: int = 0
    missed: int = 0
    failed_to_start: int = 0
    completed: int = 0
    failed: int = 0
    """Runs that ended ``failed`` or ``interrupted``."""
    consecutive_failures: int = 0

    def to_dict(self) -> dict[str, int]:
        return {
            "started": self.started,
            "skipped_overlap": self.skipped_overlap,
            "missed": self.missed,
            "failed_to_start": self.failed_to_start,
            "completed": self.completed,
            "failed": self.failed,
            "consecutive_failures": self.consecutive_failures,
        }


@dataclass(slots=True)
class Schedule:
    """A stored schedule: its spec and where it stands.

    ``next_fire_at`` is None once no fire time is left (a one-time schedule that fired, or
    past ``end_at``). ``version`` grows with every change; claims compare it.
    """

    id: str
    tenant: str
    spec: ScheduleSpec
    created_at: float
    updated_at: float
    next_fire_at: float | None
    paused: bool = False
    session_id: str | None = None
    """The session every firing continues (``session: shared``)."""
    version: int = 1
    last_fired_at: float | None = None
    last_run_id: str | None = None
    counts: FiringCounts = field(default_factory=FiringCounts)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            **self.spec.to_dict(),
            "session_id": self.session_id,
            "paused": self.paused,
            "next_fire_at": iso(self.next_fire_at),
            "created_at": iso(self.created_at),
            "updated_at": iso(self.updated_at),
            "last_fired_at": iso(self.last_fired_at),
            "last_run_id": self.last_run_id,
            "counts": self.counts.to_dict(),
        }


@dataclass(slots=True)
class Firing:
    """One entry of a schedule's ledger: a fire time and what became of it.

    A ``missed`` entry stands for ``count`` consecutive fire times, the first of which is
    ``scheduled_at``, so that a long downtime costs one row. ``manual`` entries come from
    "trigger now" and do not move the schedule's cadence.
    """

    schedule_id: str
    scheduled_at: float
    fired_at: float
    outcome: FiringOutcome
    run_id: str | None = None
    detail: str | None = None
    manual: bool = False
    count: int = 1
    run_status: RunStatus | None = None
    """The run's final status, once its end was counted."""
    settled: bool = False
    """Nothing is left to do for it: its outcome is final and, if it started a run, that
    run's end is counted."""
    claimed_by: str | None = None
    """The worker that claimed it, so another can tell when that worker died mid-way."""
    id: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "schedule_id": self.schedule_id,
            "scheduled_at": iso(self.scheduled_at),
            "fired_at": iso(self.fired_at),
            "outcome": self.outcome.value,
            "run_id": self.run_id,
            "run_status": None if self.run_status is None else self.run_status.value,
            "manual": self.manual,
            "count": self.count,
            "detail": self.detail,
        }
