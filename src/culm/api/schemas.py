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


class RunInput(_Request):
    """The answer to what a waiting run asks (its ``waiting``): an approval (``approve``,
    ``reason``, edited ``arguments``) or the ``answer`` to a question."""

    call_id: str = Field(min_length=1, max_length=256)
    """The ``call_id`` of the run's ``run.waiting``."""
    approve: bool | None = None
    reason: str | None = Field(default=None, max_length=2000)
    """Why, for the model to read (with a refusal, mostly)."""
    arguments: dict[str, Any] | None = None
    """The tool call's arguments as the person edited them (with ``approve: true``)."""
    answer: Any = None
    """The answer to a question; it must fit the question's schema."""


class SendMessage(_Request):
    content: str = Field(min_length=1)
    """A user message, taken in at the run's next round."""


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


class Waiting(BaseModel):
    """What a waiting run asks: approve a tool call, or answer a question."""

    kind: str
    """``approval`` or ``question``."""
    call_id: str
    """Name it in ``POST /v1/runs/{id}/input``."""
    seq: int
    """The seq of its ``run.waiting`` event."""
    tool: str | None = None
    arguments: Any = None
    """The tool call's arguments, for an approval."""
    question: Any = None
    schema_: dict[str, Any] | None = Field(default=None, alias="schema")
    """The JSON Schema the answer must fit (a question); none: any JSON."""
    timeout: float | None = None
    expires_at: str | None = None
    on_timeout: str | None = None
    default: Any = None


class SentMessage(BaseModel):
    id: int
    run_id: str
    content: str
    created_at: str


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
    waiting: Waiting | None = None
    """While ``status`` is ``waiting``: what the run asks a person."""
    attempt: int = 0


class StartedRun(Run):
    webhook: dict[str, Any] | None = None
    """Only with ``webhook`` in the request: the run's own webhook endpoint with its secret,
    shown this once (the shape of ``POST /v1/webhooks``'s answer)."""
    steered: SentMessage | None = None
    """Only with ``if_busy=steer`` on a busy session (202): the message this run, the
    session's active one, was sent instead of a new run being started."""


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
