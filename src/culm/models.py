"""Records: sessions, runs and their live state. Plain data, no behaviour beyond shape.

The schedules' records live in ``culm.schedule_models`` and are re-exported here."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

from culm.events import iso
from culm.schedule_models import (
    Firing,
    FiringCounts,
    FiringOutcome,
    Misfire,
    Overlap,
    Schedule,
    ScheduleSpec,
    SessionMode,
)


class RunStatus(enum.StrEnum):
    """Where a run is in its life."""

    PENDING = "pending"
    """Created and durable, not started yet (waiting behind the session's active run)."""
    RUNNING = "running"
    """Its agent is executing in some process."""
    WAITING = "waiting"
    """Stopped until a person answers (an approval, a question): a row and its log, held
    by no process; ``waiting`` says what it waits for."""
    COMPLETED = "completed"
    """The agent returned; ``output`` holds what it returned."""
    CANCELLED = "cancelled"
    """Someone asked it to stop; ``error`` says who and why."""
    FAILED = "failed"
    """The agent raised; ``error`` holds the message."""
    INTERRUPTED = "interrupted"
    """The process that ran it died or shut down before it ended."""

    @property
    def terminal(self) -> bool:
        return self not in _ACTIVE


_ACTIVE = frozenset({RunStatus.PENDING, RunStatus.RUNNING, RunStatus.WAITING})
ACTIVE_STATUSES = tuple(s.value for s in _ACTIVE)


class Trigger(enum.StrEnum):
    """What started a run."""

    HTTP = "http"
    SPAWN = "spawn"
    SCHEDULE = "schedule"
    PYTHON = "python"
    """Started by Python code holding the engine, in process."""


class ToolPhase(enum.StrEnum):
    BEGIN = "begin"
    FINISHED = "finished"
    ERROR = "error"


class BusyPolicy(enum.StrEnum):
    """What ``start_run`` does when the session already has an active run."""

    REJECT = "reject"
    """Refuse with ``SessionBusy`` naming the active run."""
    ENQUEUE = "enqueue"
    """Create the run as pending; it starts after the runs ahead of it, in order."""
    INTERRUPT = "interrupt"
    """Cancel the active (and queued) runs, then start."""
    STEER = "steer"
    """Give the input to the active run as a message it takes in at its next round (a
    model agent's); start a run as usual when the session is free."""


@dataclass(slots=True)
class RunState:
    """The part of a run that its events change: a projection of its stream.

    Changed in place only by its owner: a runner's own copy, which ``projection.apply``
    advances event by event; everyone else gets a copy (``projection.advance``)."""

    status: RunStatus = RunStatus.PENDING
    last_seq: int = 0
    last_event_at: float | None = None
    started_at: float | None = None
    completed_at: float | None = None
    round: int = 0
    last_tool: str | None = None
    last_tool_phase: ToolPhase | None = None
    usage: dict[str, Any] | None = None
    children_usage: dict[str, Any] | None = None
    """What its ended children's trees used, added up from its ``child.completed`` events."""
    output: Any = None
    error: str | None = None
    waiting: dict[str, Any] | None = None
    """While the run waits for a person: its ``run.waiting`` data (what it asks)."""

    @property
    def input_deadline(self) -> float | None:
        """When an unanswered wait times out (epoch seconds), if it does."""
        if self.waiting is None:
            return None
        deadline = self.waiting.get("deadline")
        return float(deadline) if isinstance(deadline, int | float) else None

    @property
    def tree_usage(self) -> dict[str, Any] | None:
        """Its own usage and its children's trees' together."""
        return add_usage(self.usage, self.children_usage)


def add_usage(a: dict[str, Any] | None, b: dict[str, Any] | None) -> dict[str, Any] | None:
    """Two usages added up key by key (numbers only); None when both are None."""
    if a is None or b is None:
        return a if b is None else b
    total = dict(a)
    for key, value in b.items():
        if isinstance(value, int | float) and not isinstance(value, bool):
            mine = total.get(key, 0)
            total[key] = (mine if isinstance(mine, int | float) else 0) + value
        else:
            total.setdefault(key, value)
    return total


@dataclass(slots=True)
class Session:
    """A conversation: durable history, owner, metadata; a child session has a parent."""

    id: str
    tenant: str
    created_at: float
    metadata: dict[str, Any] = field(default_factory=dict)
    parent_id: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "tenant": self.tenant,
            "created_at": iso(self.created_at),
            "metadata": self.metadata,
            "parent_id": self.parent_id,
        }


@dataclass(slots=True)
class Run:
    """One execution of an agent on a session, with its live state."""

    id: str
    session_id: str
    tenant: str
    agent: str
    input: Any
    trigger: Trigger
    created_at: float
    state: RunState = field(default_factory=RunState)
    parent_run_id: str | None = None
    schedule_id: str | None = None
    idempotency_key: str | None = None
    epoch: int = 0
    """Bumped by every claim of the run and by every end written from outside its runner:
    a process may write for the run only while the epoch it claimed is still current."""
    grant: dict[str, int | None] | None = None
    """What its parent granted a spawned run (``tokens``, ``rounds``); None: no limit."""
    depth: int = 0
    """Levels below its root run (0 for a root)."""
    attempt: int = 0
    """0 for its first execution; each resume (after its process died, or handed it back
    at a shutdown) adds one."""

    @property
    def status(self) -> RunStatus:
        return self.state.status

    def to_dict(self) -> dict[str, Any]:
        s = self.state
        return {
            "id": self.id,
            "session_id": self.session_id,
            "agent": self.agent,
            "input": self.input,
            "status": s.status.value,
            "trigger": self.trigger.value,
            "parent_run_id": self.parent_run_id,
            "schedule_id": self.schedule_id,
            "created_at": iso(self.created_at),
            "started_at": iso(s.started_at),
            "completed_at": iso(s.completed_at),
            "round": s.round,
            "last_tool": s.last_tool,
            "last_tool_phase": s.last_tool_phase.value if s.last_tool_phase else None,
            "last_event_at": iso(s.last_event_at),
            "last_seq": s.last_seq,
            "usage": s.usage,
            "tree_usage": s.tree_usage,
            "output": s.output,
            "error": s.error,
            "waiting": _shown_wait(s.waiting),
            "attempt": self.attempt,
        }


def _shown_wait(waiting: dict[str, Any] | None) -> dict[str, Any] | None:
    if waiting is None:
        return None
    shown = {k: v for k, v in waiting.items() if k != "deadline"}
    deadline = waiting.get("deadline")
    if isinstance(deadline, int | float):
        shown["expires_at"] = iso(deadline)
    return shown


@dataclass(slots=True)
class Message:
    """One entry of a session's history, in the OpenAI chat shape (``role``, ``content``,
    ``tool_calls``, ``tool_call_id``...), which ``data`` holds whole."""

    session_id: str
    role: str
    data: dict[str, Any]
    created_at: float
    run_id: str | None = None
    id: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "session_id": self.session_id,
            "run_id": self.run_id,
            "created_at": iso(self.created_at),
            **self.data,
            "role": self.role,
        }


__all__ = [
    "ACTIVE_STATUSES",
    "BusyPolicy",
    "Firing",
    "FiringCounts",
    "FiringOutcome",
    "Message",
    "Misfire",
    "Overlap",
    "Run",
    "RunState",
    "RunStatus",
    "Schedule",
    "ScheduleSpec",
    "Session",
    "SessionMode",
    "ToolPhase",
    "Trigger",
    "add_usage",
]
