"""The storage interface: everything above it works with any backend that passes
``tests/store/contract.py``.

A store knows sessions, runs and events. It knows nothing of agents or HTTP, and it never
delivers events to anyone: callers publish what a store call reports as committed.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from culm.events import Event, iso
from culm.models import (
    Firing,
    FiringOutcome,
    Message,
    Run,
    RunState,
    RunStatus,
    Schedule,
    Session,
)


@dataclass(slots=True, frozen=True)
class RunFilter:
    """Which runs a listing returns; None means any."""

    tenant: str | None = None
    status: RunStatus | None = None
    agent: str | None = None
    session_id: str | None = None
    trigger: str | None = None
    parent_run_id: str | None = None
    schedule_id: str | None = None


@dataclass(slots=True, frozen=True)
class Fence:
    """Who may write for a run: the process that claimed it, at the epoch of that claim."""

    worker_id: str
    epoch: int


@dataclass(slots=True, frozen=True)
class CancelRequest:
    """Who asked a run to stop, and why (stored on the run, for whoever executes it)."""

    by: str
    reason: str | None


@dataclass(slots=True, frozen=True)
class Ownership:
    """Who executes an active run, and whether its lease ran out by the database's clock."""

    run_id: str
    worker_id: str | None
    epoch: int
    expired: bool


@dataclass(slots=True, frozen=True)
class SentMessage:
    """A message sent to a running model agent, until the run takes it in."""

    id: int
    run_id: str
    content: str
    created_at: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "run_id": self.run_id,
            "content": self.content,
            "created_at": iso(self.created_at),
        }


@dataclass(slots=True, frozen=True)
class Created:
    """What ``create_run`` did: the run as stored, whether it is new (False when its
    idempotency key named a run that already existed), and the run ahead of it."""

    run: Run
    created: bool = True
    ahead: str | None = None


class Store(Protocol):
    """Durable sessions, runs and the event log."""

    on_commit: Callable[[Sequence[Event]], None] | None
    """Called with the events each transaction wrote, once it has committed, in commit
    order (the order of their log positions): how an engine announces them."""

    async def open(self) -> None:
        """Connect and bring the schema to the latest version."""

    async def close(self) -> None: ...

    async def ping(self) -> None:
        """Raise if the database cannot be reached."""

    problem: str | None
    """Why the last write failed while the database could not be written (disk full,
    connection gone), or None: set when a write raises ``Unavailable``, cleared by the
    next commit that wrote events, or by ``probe``."""

    async def probe(self) -> None:
        """Write a little and commit it (leaving nothing behind): clears ``problem`` when
        that works, raises ``Unavailable`` when the database still cannot be written."""

    # sessions
    async def create_session(self, session: Session) -> None: ...

    async def get_session(self, session_id: str, tenant: str | None = None) -> Session:
        """The session, or ``NotFound`` (also when it belongs to another tenant)."""

    async def list_sessions(
        self,
        tenant: str,
        *,
        limit: int = 50,
        before: str | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> list[Session]:
        """Newest first; ``before`` is the id of the last session of the previous page."""

    async def delete_session(self, session_id: str, tenant: str | None = None) -> None:
        """Delete a session, its child sessions, their runs and events.

        Refused with ``Conflict`` while any of those sessions has an active run.
        """

    # runs
    async def create_run(
        self,
        run: Run,
        queued: Event,
        *,
        reject_if_busy: bool,
        owner: str,
        lease_seconds: float,
        claim: bool = False,
        new_session: Session | None = None,
        supersede: Callable[[Run], Event] | None = None,
    ) -> Created:
        """Store a new pending run with its first event, atomically, owned by ``owner``.

        When the session has an active run, the new run waits behind it (``ahead``); with
        ``reject_if_busy`` a busy session raises ``SessionBusy`` and nothing is stored.
        With ``claim`` a run with nothing ahead is stored already claimed (status
        ``running``, epoch 1), saving a ``claim_run``. With ``new_session`` that session is
        created in the same transaction. With ``supersede`` every run waiting (pending) on
        the session is ended in the same transaction by the event ``supersede(run)`` makes
        for it (its epoch bumped), so the new run waits only behind a running one. A run
        whose ``idempotency_key`` the tenant used
        before is not stored: the earlier run is returned (``created`` False), or
        ``IdempotencyKeyReused`` when that run has another agent or session.
        """

    async def get_run(self, run_id: str, tenant: str | None = None, *, latest: bool = False) -> Run:
        """The run as committed, never ahead of what was announced; with ``latest`` as last
        committed, which may be a moment ahead of the announcements (for a reader that
        follows the log itself and so does not mind, such as a stream)."""

    async def find_run(self, tenant: str, idempotency_key: str) -> Run | None: ...

    async def list_runs(
        self, where: RunFilter, *, limit: int = 50, before: str | None = None
    ) -> list[Run]:
        """Newest first; ``before`` is the id of the last run of the previous page."""

    async def count_runs(self) -> dict[RunStatus, int]:
        """How many runs are in each status (statuses with none are left out)."""

    async def active_runs(self, session_id: str) -> list[Run]:
        """The session's pending and running runs, oldest first."""

    async def startable_runs(self, limit: int = 100) -> list[Run]:
        """Pending runs first in line on a session with no running run, oldest first."""

    async def claim_run(self, run_id: str, worker_id: str, lease_seconds: float) -> int | None:
        """Take a pending run for execution (status ``running``) and return the new epoch
        that fences its writes; None if it is not pending any more or its session already
        has a running run."""

    async def claim_pending(
        self,
        worker_id: str,
        agents: Collection[str],
        limit: int,
        lease_seconds: float,
        tenant_limit: int | None = None,
    ) -> list[Run]:
        """Claim up to ``limit`` queued runs of ``agents`` that may start now, oldest first
        (skipping rows other claimers hold; each tenant under ``tenant_limit`` running)."""
        ...

    async def request_cancel(self, run_id: str, by: str, reason: str | None) -> bool:
        """Store a cancel request on an active run; False if not active or asked already."""
        ...

    async def cancel_requests(self, run_ids: Sequence[str]) -> dict[str, CancelRequest]:
        """The cancel requests stored on those of ``run_ids`` still active."""
        ...

    async def write_batch(
        self,
        events: Sequence[Event],
        states: Mapping[str, RunState],
        fences: Mapping[str, Fence],
    ) -> set[str]:
        """Append events and the runs' new states in one transaction (group commit), for
        the runs whose ``fences`` still hold (owner and epoch unchanged, run active).

        Returns the runs whose fence did not hold: nothing was written for them. Assigns
        each written event its ``pos``.
        """

    async def end_run(
        self,
        run_id: str,
        only_if: frozenset[RunStatus],
        terminal: Callable[[Run], Event],
        *,
        fence: Fence | None = None,
    ) -> tuple[Run, Event] | None:
        """End a run from outside its runner: if its status is in ``only_if`` (and, with
        ``fence``, its owner and epoch are still those), append ``terminal(run)`` (the next
        event of the stored run) and its projected state atomically and bump its epoch, so
        whoever executed it can write nothing more. Returns the ended run, or None."""

    async def resume_runs(
        self,
        claims: Sequence[tuple[str, Fence | None]],
        worker_id: str,
        lease_seconds: float,
        resumed: Callable[[Run], Event],
        cancelled: Callable[[Run, CancelRequest], Event],
    ) -> list[Run]:
        """Take over running runs whose owner died (each still held under its fence; with
        None, held by nobody: handed back at a shutdown), in one transaction: owner
        ``worker_id``, epoch and attempt bumped, lease renewed, and the event
        ``resumed(run)`` appended to each. A run with a cancel request stored on it is
        not resumed but ended by ``cancelled(run, request)`` (its terminal event), its
        epoch bumped. Returns the runs taken (running) and ended (by their status); one
        no longer running under its fence (someone else took or ended it) is left."""

    async def release_runs(self, worker_id: str, held: Mapping[str, int]) -> None:
        """Hand these running runs (id -> epoch, still ours) back at a shutdown: held by
        nobody, their leases lapsed, so another process, or this one started again,
        resumes them without waiting (and can tell the hand-back from a crash)."""

    # conversation history
    async def append_messages(
        self, messages: Sequence[Message], fence: Fence | None = None
    ) -> None:
        """Add messages to their sessions' histories, in order, in one transaction; with
        ``fence``, only while it holds for the messages' run (else ``Conflict``)."""

    async def count_messages(self, session_id: str, run_id: str) -> int:
        """How many messages of the session's history the run added."""

    async def read_messages(
        self, session_id: str, *, after: int = 0, limit: int = 1000
    ) -> list[Message]:
        """The session's messages with ``id > after``, oldest first."""

    # the log
    async def read_events(self, run_id: str, after: int = 0, limit: int = 1000) -> list[Event]:
        """The run's events with ``seq > after``, in order."""

    async def read_session_events(
        self, session_ids: Sequence[str], after: int = 0, limit: int = 1000
    ) -> list[Event]:
        """Events of these sessions with ``pos > after``, in log order."""

    async def read_log(self, after: int = 0, limit: int = 1000) -> list[Event]:
        """Events of every run with ``pos > after``, in log order."""

    async def last_pos(self) -> int:
        """The highest log position so far (0 for an empty log)."""

    async def count_log(self, after: int) -> tuple[int, int]:
        """The highest log position and the number of events past ``after``; ``(after,
        0)`` when there are none."""

    # trees of spawned runs
    async def session_tree(self, session_id: str) -> list[str]:
        """The session's id and those of its descendant sessions, level by level."""

    async def run_tree(self, run_id: str, tenant: str | None = None) -> list[Run]:
        """The run and its descendant runs (by ``parent_run_id``), level by level;
        ``NotFound`` for an unknown run (or another tenant's)."""

    # ownership and housekeeping
    async def renew_leases(
        self, worker_id: str, lease_seconds: float, held: Mapping[str, int]
    ) -> set[str]:
        """Extend the leases of the active runs ``worker_id`` owns, by the database's
        clock; returns those of ``held`` (run id -> epoch) that it no longer owns."""

    async def runs_owned_elsewhere(self, worker_id: str) -> list[Ownership]:
        """Active runs that another process owns, or nobody does."""

    async def ownership(self, run_id: str) -> Ownership | None:
        """Who owns the run while it is active; None once it ended."""

    # people in the loop

    async def park_run(self, run_id: str, fence: Fence) -> bool:
        """Hand back a run that waits for a person (its ``run.waiting`` event is committed),
        or a queued run whose process died: no process holds it any more. False if
        ``fence`` no longer holds (it was answered, cancelled or taken meanwhile)."""
        ...

    async def answer_run(
        self, run_id: str, call_id: str, answered: Callable[[Run], Event]
    ) -> Run | None:
        """Write the event ``answered(run)`` makes (``input.received``) for a run waiting on
        ``call_id``, in one transaction that bumps its epoch and leaves it pending, held by
        nobody, to be taken up again. None when the run does not wait on ``call_id``."""
        ...

    async def expired_waits(self, now: float, limit: int = 100) -> list[Run]:
        """Waiting runs whose wait timed out at ``now``, soonest first."""
        ...

    async def send_run_message(
        self,
        run_id: str,
        content: str,
        now: float,
        tenant: str | None = None,
        max_unread: int | None = None,
    ) -> SentMessage:
        """Keep a message for an active run until it takes it in; ``Conflict`` once the run
        has ended, or when the run's messages not taken in yet would pass ``max_unread``
        bytes."""
        ...

    async def unread_run_messages(self, run_id: str) -> list[SentMessage]:
        """The messages sent to the run that it has not taken in yet, oldest first."""
        ...

    async def mark_run_messages(self, ids: Sequence[int]) -> None:
        """The run took these messages in (their events are durable)."""
        ...

    async def purge_events(self, finished_before: float) -> int:
        """Delete the events of runs that ended before this time; the count deleted."""

    # schedules and their ledger of firings
    async def create_schedule(self, schedule: Schedule) -> None: ...

    async def get_schedule(self, schedule_id: str, tenant: str | None = None) -> Schedule:
        """The schedule, or ``NotFound`` (also when it belongs to another tenant)."""

    async def list_schedules(
        self, tenant: str, *, limit: int = 50, before: str | None = None
    ) -> list[Schedule]:
        """Newest first; ``before`` is the id of the last schedule of the previous page."""

    async def update_schedule(self, schedule: Schedule) -> bool:
        """Write the spec, paused flag, session and next fire time (never the counters) if
        the stored version is still ``schedule.version``, bumping it; False if it changed."""

    async def delete_schedule(self, schedule_id: str, tenant: str | None = None) -> None:
        """Delete a schedule and its ledger (its runs stay); ``NotFound`` if unknown."""

    async def due_schedules(self, now: float, limit: int = 100) -> list[Schedule]:
        """Unpaused schedules whose next fire time is at or before ``now``, earliest first."""

    async def claim_firings(
        self, schedule: Schedule, next_fire_at: float | None, firings: Sequence[Firing]
    ) -> bool:
        """Atomically advance the schedule to ``next_fire_at`` and add ``firings`` to its
        ledger, if its version is still ``schedule.version`` and none of those fire times is
        in the ledger yet; False (and nothing written) otherwise. Assigns the firings' ids."""

    async def add_firing(self, firing: Firing) -> None:
        """Add a firing that does not move the cadence ("trigger now"); assigns its id."""

    async def resolve_firing(self, firing: Firing, was: FiringOutcome) -> bool:
        """Store the firing's new outcome, run, run status and ``settled``, and move the
        schedule's counters with it, if it still has outcome ``was`` and is not settled;
        else False."""

    async def unsettled_firings(
        self, schedule_id: str | None = None, limit: int = 1000
    ) -> list[tuple[Firing, RunStatus | None]]:
        """Firings (of one schedule, or of all) still claimed, waiting, or whose run's end
        is not counted yet, oldest first, each with its run's current status (None without
        a run)."""

    async def list_firings(
        self, schedule_id: str, *, limit: int = 50, before: int | None = None
    ) -> list[Firing]:
        """The schedule's ledger, newest first; ``before`` is the last id of the previous
        page."""

    async def schedule_active_runs(self, schedule_id: str) -> list[str]:
        """Ids of the schedule's pending and running runs, oldest first."""
