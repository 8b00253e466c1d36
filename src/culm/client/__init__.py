"""Talk to a culm server from Python: ``culm.Client`` (blocking) and ``culm.AsyncClient``.

    with culm.Client() as client:              # $CULM_URL, $CULM_API_KEY
        run = client.start_run("countdown", 3)
        for event in client.follow(run["id"]):  # reconnects by itself
            print(event["seq"], event["type"], event["data"])

Errors are listed in ``culm.client.errors``; the server's own (not found, conflict,
invalid input) are raised as culm's error classes, so ``except culm.NotFound`` works.
"""

from __future__ import annotations

from culm.client.aio import DEFAULT_URL, AsyncClient
from culm.client.errors import (
    APIError,
    AuthError,
    ClientError,
    ConflictError,
    InvalidInputError,
    NotFoundError,
    RunFinishedError,
    ServerUnreachable,
    SessionBusyError,
)
from culm.client.sync import Client
from culm.client.types import (
    AgentInfo,
    EventInfo,
    EventPage,
    Message,
    Page,
    RunInfo,
    RunTreeInfo,
    SessionEventInfo,
    SessionInfo,
)

__all__ = [
    "DEFAULT_URL",
    "APIError",
    "AgentInfo",
    "AsyncClient",
    "AuthError",
    "Client",
    "ClientError",
    "ConflictError",
    "EventInfo",
    "EventPage",
    "InvalidInputError",
    "Message",
    "NotFoundError",
    "Page",
    "RunFinishedError",
    "RunInfo",
    "RunTreeInfo",
    "ServerUnreachable",
    "SessionBusyError",
    "SessionEventInfo",
    "SessionInfo",
]
