"""Request and response shapes of the HTTP API, for validation and for the OpenAPI document.

Request models validate what callers send. Response models only describe what the routes
write: the routes encode the engine's records (``to_dict()``) straight to JSON, so these
must follow those dictionaries field for field.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from culm.models import BusyPolicy, RunStatus, ToolPhase, Trigger

# requests


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CreateSession(_Request):
    metadata: dict[str, Any] = Field(default_factory=dict)
    """Free-form labels; sessions can be listed by them (``?metadata.KEY=VALUE``)."""
    parent_id: str | None = Field(default=None, max_length=64)


class RunWebhook(_Request):
    """A run's own webhook: its terminal event is posted to ``url``, signed with ``secret``
    (``whsec_`` + base64 of 24 to 64 bytes; one is made when left out)."""

    url: str = Field(max_length=2048)
    secret: str | None = Field(default=None, max_length=128)


class StartRun(_Request):
    agent: str = Field(max_length=256)
    input: Any = None
    """Validated against the agent's input schema (see ``GET /v1/agents``)."""
    if_busy: BusyPolicy = BusyPolicy.REJECT
    """What to do when the session already has an active run."""
    webhook: RunWebhook | str | None = None
    """Post the run's terminal event to this URL (or ``{url, secret}``), signed per
    Standard Webhooks; the answer's ``webhook`` holds the endpoint and its secret, this once.
    """


class StartRunAnywhere(StartRun):
    session_id: str | None = Field(default=None, max_length=64)
    """The session to run on; without it the run gets a new session."""
    parent_run_id: str | None = Field(default=None, max_length=64)
    """Start it as a child of this running run (on a new child session, as if that run had
    spawned it: its limits and budget apply). Not with ``session_id``."""


class CancelRun(_Request):
    reason: str | None = Field(default=None, max_length=2000)


# responses


class Agent(BaseModel):
    model_config = ConfigDict(extra="allow")  # model agents add their model and tools

    name: str
    description: str
    input_schema: dict[str, Any]


class AgentList(BaseModel):
    data: list[Agent]


class Session(BaseModel):
    id: str
    tenant: str
    created_at: str
    metadata: dict[str, Any]
    parent_id: str | None


class SessionPage(BaseModel):
    data: list[Session]
    next_cursor: str | None
    """Pass as ``cursor`` for the next page; null on the last page."""


class Run(BaseModel):
    id: str
    session_id: str
    agent: str
    input: Any
    status: RunStatus
    trigger: Trigger
    parent_run_id: str | None
    schedule_id: str | None
    created_at: str
    started_at: str | None
    completed_at: str | None
    round: int
    last_tool: str | None
    last_tool_phase: ToolPhase | None
    last_event_at: str | None
    last_seq: int
    usage: dict[str, Any] | None
    tree_usage: dict[str, Any] | None
    """Its own usage and that of the runs it spawned (theirs too), once they ended."""
    output: Any
    error: str | None


class StartedRun(Run):
    webhook: dict[str, Any] | None = None
    """Only with ``webhook`` in the request: the run's own webhook endpoint with its secret,
    shown this once (the shape of ``POST /v1/webhooks``'s answer)."""


class RunPage(BaseModel):
    data: list[Run]
    next_cursor: str | None


class RunTree(BaseModel):
    """A run and the runs spawned below it, as they stand."""

    id: str
    agent: str
    session_id: str
    parent_run_id: str | None
    status: RunStatus
    round: int
    last_tool: str | None
    last_tool_phase: ToolPhase | None
    usage: dict[str, Any] | None
    tree_usage: dict[str, Any] | None
    """Its own usage and its subtree's, live children included."""
    error: str | None
    children: list[RunTree]


class Message(BaseModel):
    model_config = ConfigDict(extra="allow")

    id: int
    session_id: str
    run_id: str | None
    created_at: str
    role: str


class MessageList(BaseModel):
    data: list[Message]
    next_after: int | None = None
    """Pass as ``after`` for the rest when the page is full or stopped at its byte budget;
    null on the last page."""


class Event(BaseModel):
    seq: int
    run_id: str
    session_id: str
    type: str
    ts: str
    data: dict[str, Any]
    parent_run_id: str | None
    """The parent of the event's run, for a run that was spawned."""
    pos: int | None = None
    """Position in the whole log; present in session streams, where it is the cursor."""


class EventPage(BaseModel):
    data: list[Event]
    next_after: int
    """Pass as ``after`` for the next page (a page may stop early at its byte budget)."""
    done: bool
    """True once the run's terminal event has been returned: nothing more will come."""


class Health(BaseModel):
    status: str
    """``ok``, or ``degraded`` while the bus between processes is down."""
    database: str
    bus: str
    """``ok``, or why notices between processes are not getting through."""


class ErrorBody(BaseModel):
    model_config = ConfigDict(extra="allow")

    code: str
    """Stable and machine-readable: ``not_found``, ``session_busy``, ``run_finished``..."""
    message: str


class Error(BaseModel):
    error: ErrorBody
