"""The client's public surface: what ``culm.client`` exports, and the blocking client
having every call the async one has."""

from __future__ import annotations

import inspect

import culm
import culm.client


def test_public_names() -> None:
    assert set(culm.client.__all__) == {
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
    }
    assert culm.Client is culm.client.Client
    assert culm.AsyncClient is culm.client.AsyncClient


def test_every_async_call_has_a_blocking_twin() -> None:
    def calls(cls: type) -> set[str]:
        return {
            name
            for name, member in vars(cls).items()
            if not name.startswith("_") and callable(member) and name not in ("aclose", "close")
        }

    assert calls(culm.AsyncClient) == calls(culm.Client)
    for name in calls(culm.AsyncClient):
        blocking = inspect.signature(getattr(culm.Client, name))
        awaited = inspect.signature(getattr(culm.AsyncClient, name))
        assert blocking == awaited, name
    assert inspect.signature(culm.Client) == inspect.signature(culm.AsyncClient)
