"""The shapes the client returns: the server's JSON as typed dicts, pages as dataclasses.

Typed dicts rather than classes so a result is exactly what the API sent: it prints,
compares and serialises as JSON with no conversion, and mypy still checks its keys.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Generic, NotRequired, TypedDict, TypeVar

T = TypeVar("T")
E = TypeVar("E", bound="EventInfo")


class AgentInfo(TypedDict):
    """An agent the server can run."""

    name: str
    description: str
    input_schema: dict[str, Any]


class SessionInfo(TypedDict):
    """A conversation; its runs take turns on it."""

    id: str
    tenant: str
    created_at: str
    metadata: dict[str, Any]
    parent_id: str | None


class RunInfo(TypedDict):
    """A run with its live state, as ``culm.Run.to_dict()`` gives it (times in ISO 8601)."""

    id: str
    session_id: str
    agent: str
    input: Any
    status: str
    trigger: str
    parent_run_id: str | None
    schedule_id: str | None
    created_at: str
    started_at: str | None
    completed_at: str | None
    round: int
    last_tool: str | None
    last_tool_phase: str | None
    last_event_at: str | None
    last_seq: int
    usage: dict[str, Any] | None
    tree_usage: dict[str, Any] | None
    """Its own usage and that of the runs it spawned (and theirs) once they ended."""
    output: Any
    error: str | None
    attempt: int
    """0 for its first execution; one more each time it was resumed after its process died
    or handed it back at a shutdown."""
    waiting: NotRequired[dict[str, Any] | None]
    """While ``status`` is ``waiting``: what it asks (``kind``, ``call_id``, ``tool`` and
    ``arguments`` or ``question`` and ``schema``)."""
    steered: NotRequired[dict[str, Any]]
    """Only from a start with ``if_busy="steer"`` that was sent to this active run."""


class RunTreeInfo(TypedDict):
    """A run and the runs spawned below it, as ``GET /v1/runs/{id}/tree`` gives them."""

    id: str
    agent: str
    session_id: str
    parent_run_id: str | None
    status: str
    round: int
    last_tool: str | None
    last_tool_phase: str | None
    usage: dict[str, Any] | None
    tree_usage: dict[str, Any] | None
    """Its own usage and its subtree's, live children included."""
    error: str | None
    children: list[RunTreeInfo]


class EventInfo(TypedDict):
    """One entry of a run's stream; ``seq`` is its position in that run (1, 2, 3...).
    ``parent_run_id`` is that of its run (set for spawned runs)."""

    seq: int
    run_id: str
    session_id: str
    type: str
    ts: str
    data: dict[str, Any]
    parent_run_id: str | None


class SessionEventInfo(EventInfo):
    """An event of a session's stream: ``pos`` is its position in the session's log, the
    ``after`` to resume from."""

    pos: int


Message = dict[str, Any]
"""One entry of a session's history in the OpenAI chat shape, plus id, run_id, created_at."""


@dataclass(slots=True, frozen=True)
class Page(Generic[T]):
    """One page of a listing; pass ``next_cursor`` as ``cursor`` for the next (None: last)."""

    data: list[T]
    next_cursor: str | None


@dataclass(slots=True, frozen=True)
class EventPage(Generic[E]):
    """One page of stored events; ask again with ``after=next_after`` until ``done``."""

    data: list[E]
    next_after: int
    done: bool
    """The stream has ended (a run's terminal event is in the log) and nothing is left."""
