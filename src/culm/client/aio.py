"""``AsyncClient``: every call of culm's HTTP API, and streams that survive dropped
connections. The blocking ``Client`` wraps this one, so each call is written once."""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator, Mapping
from types import TracebackType
from typing import Any, Self

import httpx
import orjson
from httpx_sse import EventSource
from tenacity import RetryError

from culm.client.errors import APIError, ClientError, ServerUnreachable, error_from_response
from culm.client.people import PeopleCalls
from culm.client.retry import Reconnects
from culm.client.schedules import ScheduleCalls
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
from culm.events import TERMINAL
from culm.models import RunStatus

DEFAULT_URL = "http://127.0.0.1:8000"
WAIT_CHUNK = 30.0
"""Longest single wait request; ``wait`` repeats it, so proxies never see a long request."""

_TERMINAL_STATUSES = frozenset(s.value for s in RunStatus if s.terminal)


class AsyncClient(ScheduleCalls, PeopleCalls):
    """A connection to a culm server. Use as ``async with AsyncClient() as client``.

    ``url`` and ``api_key`` default to ``$CULM_URL`` (else ``http://127.0.0.1:8000``) and
    ``$CULM_API_KEY``. ``follow`` reconnects after a dropped connection or a server restart,
    waiting ``backoff`` seconds, doubling up to ``max_backoff``; it gives up with
    ``ServerUnreachable`` after ``reconnect_for`` seconds without a new event, or after
    ``retries`` failed attempts in a row when given.
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        api_key: str | None = None,
        timeout: float = 30.0,
        stream_timeout: float = 60.0,
        retries: int | None = None,
        backoff: float = 0.2,
        max_backoff: float = 2.0,
        reconnect_for: float = 60.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.url = (url or os.environ.get("CULM_URL") or DEFAULT_URL).rstrip("/")
        key = api_key if api_key is not None else os.environ.get("CULM_API_KEY")
        self.timeout = timeout
        # A stream is idle between events; the server's heartbeats keep it under this.
        self.stream_timeout = stream_timeout
        self.retries = retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.reconnect_for = reconnect_for
        # Until the server has answered once, a failure means a wrong URL or a server
        # that is not up: ``follow`` reports it at once instead of retrying.
        self._answered = False
        self._http = httpx.AsyncClient(
            base_url=self.url,
            headers={"Authorization": f"Bearer {key}"} if key else {},
            timeout=timeout,
            transport=transport,
        )

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connections; the client cannot be used again."""
        await self._http.aclose()

    # agents

    async def agents(self) -> list[AgentInfo]:
        """The agents the server can run, with their descriptions and input schemas."""
        result: list[AgentInfo] = (await self._call("GET", "/v1/agents"))["data"]
        return result

    # sessions

    async def create_session(
        self, *, metadata: Mapping[str, Any] | None = None, parent_id: str | None = None
    ) -> SessionInfo:
        """A new, empty session."""
        body = _drop_none(
            {"metadata": dict(metadata) if metadata else None, "parent_id": parent_id}
        )
        result: SessionInfo = await self._call("POST", "/v1/sessions", json=body)
        return result

    async def get_session(self, session_id: str) -> SessionInfo:
        result: SessionInfo = await self._call("GET", f"/v1/sessions/{session_id}")
        return result

    async def list_sessions(
        self,
        *,
        metadata: Mapping[str, str] | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> Page[SessionInfo]:
        """Newest first; only sessions whose metadata has every given key and value."""
        params: dict[str, Any] = {"limit": limit, "cursor": cursor}
        params.update({f"metadata.{k}": v for k, v in (metadata or {}).items()})
        body = await self._call("GET", "/v1/sessions", params=params)
        return Page(body["data"], body.get("next_cursor"))

    async def delete_session(self, session_id: str) -> None:
        """Delete the session with its runs, events and messages (refused while active)."""
        await self._call("DELETE", f"/v1/sessions/{session_id}")

    async def messages(
        self, session_id: str, *, after: int = 0, limit: int | None = None
    ) -> list[Message]:
        """The session's conversation history, oldest first."""
        params = {"after": after, "limit": limit}
        result: list[Message] = (
            await self._call("GET", f"/v1/sessions/{session_id}/messages", params=params)
        )["data"]
        return result

    # runs

    async def start_run(
        self,
        agent: str,
        input: Any = None,
        *,
        session_id: str | None = None,
        if_busy: str | None = None,
        idempotency_key: str | None = None,
        parent_run_id: str | None = None,
    ) -> RunInfo:
        """Start ``agent`` on a session (a new one unless ``session_id``); returns at once.

        ``if_busy`` is ``reject`` (the default: ``SessionBusyError``), ``enqueue``,
        ``interrupt`` or ``steer`` (a busy session's active run is sent the input as a
        message: the answer is that run, with ``steered``). Retrying with the same
        ``idempotency_key`` returns the same run.
        With ``parent_run_id`` the run is a child of that running run, on a new child
        session, as if it had spawned it (``ConflictError`` when a spawn limit says no).
        """
        body = _drop_none(
            {"agent": agent, "input": input, "if_busy": if_busy, "parent_run_id": parent_run_id}
        )
        path = "/v1/runs" if session_id is None else f"/v1/sessions/{session_id}/runs"
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else None
        result: RunInfo = await self._call("POST", path, json=body, headers=headers)
        return result

    async def get_run(self, run_id: str) -> RunInfo:
        """The run with its live state: status, round, last tool and phase, usage..."""
        result: RunInfo = await self._call("GET", f"/v1/runs/{run_id}")
        return result

    async def list_runs(
        self,
        *,
        status: str | None = None,
        agent: str | None = None,
        session_id: str | None = None,
        trigger: str | None = None,
        schedule_id: str | None = None,
        parent_run_id: str | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> Page[RunInfo]:
        """Newest first, filtered by every argument given."""
        params = {
            "status": status,
            "agent": agent,
            "session_id": session_id,
            "trigger": trigger,
            "schedule_id": schedule_id,
            "parent_run_id": parent_run_id,
            "limit": limit,
            "cursor": cursor,
        }
        body = await self._call("GET", "/v1/runs", params=params)
        return Page(body["data"], body.get("next_cursor"))

    async def wait(self, run_id: str, timeout: float | None = None) -> RunInfo:
        """The run once it has ended, or as it stands after ``timeout`` seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            left = WAIT_CHUNK if deadline is None else max(0.0, deadline - time.monotonic())
            chunk = min(left, WAIT_CHUNK)
            run: RunInfo = await self._call(
                "POST",
                f"/v1/runs/{run_id}/wait",
                params={"timeout": chunk},
                timeout=chunk + self.timeout,
            )
            if run["status"] in _TERMINAL_STATUSES or (deadline and time.monotonic() >= deadline):
                return run

    async def cancel(self, run_id: str, *, reason: str | None = None) -> RunInfo:
        """Ask the run to stop; returns it at once (it ends at its next safe point).

        Idempotent; ``RunFinishedError`` when it had already ended another way.
        """
        body = _drop_none({"reason": reason})
        result: RunInfo = await self._call("POST", f"/v1/runs/{run_id}/cancel", json=body)
        return result

    async def children(
        self, run_id: str, *, limit: int | None = None, cursor: str | None = None
    ) -> Page[RunInfo]:
        """The runs this run spawned, newest first."""
        params = {"limit": limit, "cursor": cursor}
        body = await self._call("GET", f"/v1/runs/{run_id}/children", params=params)
        return Page(body["data"], body.get("next_cursor"))

    async def tree(self, run_id: str) -> RunTreeInfo:
        """The run and every run spawned below it: status, round, last tool, usage."""
        result: RunTreeInfo = await self._call("GET", f"/v1/runs/{run_id}/tree")
        return result

    # events

    async def events(
        self, run_id: str, *, after: int = 0, limit: int | None = None
    ) -> EventPage[EventInfo]:
        """One page of the run's stored events with ``seq > after``."""
        return await self._event_page(f"/v1/runs/{run_id}/events", after, limit)

    async def session_events(
        self, session_id: str, *, after: int = 0, limit: int | None = None
    ) -> EventPage[SessionEventInfo]:
        """One page of the events of a session's runs after log position ``after``."""
        return await self._event_page(f"/v1/sessions/{session_id}/events", after, limit)

    async def follow(self, run_id: str, after: int = 0) -> AsyncIterator[EventInfo]:
        """Every event of the run with ``seq > after``, each once and in order, then the
        live tail; ends after the terminal event.

        A dropped connection is resumed from the last event received, up to ``retries``
        failed attempts in a row with exponential backoff (a server restart is survived).
        While the server has never answered this client, a failure is raised at once.
        """
        async for event in self._follow(f"/v1/runs/{run_id}/events", after, ends=True):
            yield event

    async def follow_session(
        self, session_id: str, after: int = 0
    ) -> AsyncIterator[SessionEventInfo]:
        """Every event of the session's runs after log position ``after``, in log order,
        without end; each carries its ``pos``, to resume from later as ``after``."""
        async for event in self._follow(f"/v1/sessions/{session_id}/events", after, ends=False):
            yield event

    # plumbing

    async def _call(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> Any:
        """Send one request; the decoded JSON body (None when empty) or an ``APIError``."""
        try:
            response = await self._http.request(
                method,
                path,
                json=json,
                params=_drop_none(params or {}),
                headers=headers,
                timeout=timeout if timeout is not None else self.timeout,
            )
        except httpx.TransportError as exc:
            raise _unreachable(self.url, exc) from exc
        self._answered = True
        if response.is_error:
            raise error_from_response(response)
        return response.json() if response.content else None

    async def _event_page(self, path: str, after: int, limit: int | None) -> EventPage[Any]:
        params = {"format": "json", "after": after, "limit": limit}
        body = await self._call("GET", path, params=params)
        return EventPage(body["data"], body["next_after"], body["done"])

    async def _follow(self, path: str, after: int, *, ends: bool) -> AsyncIterator[Any]:
        last = after
        budget = Reconnects(self.retries, self.reconnect_for, self.backoff, self.max_backoff)
        retrying = budget.retrying(lambda exc: self._worth_retrying(exc))
        try:
            async for attempt in retrying:
                with attempt:
                    try:
                        async for position, event in self._stream(path, last):
                            budget.progress()
                            if position <= last:
                                continue  # already seen before a reconnect
                            last = position
                            yield event
                            if ends and event["type"] in TERMINAL:
                                return
                    except _StreamEnded:
                        return
                    raise _EndedEarly(f"the stream {path} ended before its run did")
        except RetryError as exc:
            error = exc.last_attempt.exception()
            raise ServerUnreachable(
                f"{error} (gave up reconnecting after {budget.describe()})"
            ) from error

    def _worth_retrying(self, exc: BaseException) -> bool:
        if isinstance(exc, ServerUnreachable):
            return self._answered  # a wrong URL should fail now, not after a minute
        if isinstance(exc, APIError):
            return exc.status_code >= 500
        return isinstance(exc, _EndedEarly)

    async def _stream(self, path: str, after: int) -> AsyncIterator[tuple[int, EventInfo]]:
        """One connection to an SSE stream: ``(id, event)`` pairs until it ends or breaks."""
        headers = {"Accept": "text/event-stream"}
        if after:
            headers["Last-Event-ID"] = str(after)
        timeout = httpx.Timeout(self.timeout, read=self.stream_timeout)
        try:
            async with self._http.stream("GET", path, headers=headers, timeout=timeout) as response:
                self._answered = True
                if response.is_error:
                    await response.aread()
                    raise error_from_response(response)
                if response.status_code == 204:  # the run ended and we saw its end
                    raise _StreamEnded
                async for message in EventSource(response).aiter_sse():
                    if not message.data:
                        continue
                    event: EventInfo = orjson.loads(message.data)
                    yield (int(message.id) if message.id else event["seq"]), event
        except httpx.TransportError as exc:
            raise _unreachable(self.url, exc) from exc


class _StreamEnded(Exception):
    """The server says the stream has nothing more for this cursor, ever."""


class _EndedEarly(ClientError):
    """A stream ended without its run's terminal event (the server is shutting down)."""


def _drop_none(values: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None}


def _unreachable(url: str, exc: httpx.TransportError) -> ServerUnreachable:
    return ServerUnreachable(f"cannot reach the culm server at {url}: {exc or type(exc).__name__}")
