"""Small steps the API tests share: start a run, wait for it, check error bodies."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx

from tests.api.sse import messages


async def start(client: httpx.AsyncClient, agent: str, input: Any = None, **body: Any) -> Any:
    """Start a run on a new session (or ``session_id``); returns the run as JSON."""
    response = await client.post("/v1/runs", json={"agent": agent, "input": input, **body})
    assert response.status_code == 201, response.text
    return response.json()


async def finished(client: httpx.AsyncClient, run_id: str, timeout: float = 20) -> Any:
    """The run once it has ended; fails if it has not within ``timeout`` seconds."""
    response = await client.post(f"/v1/runs/{run_id}/wait", params={"timeout": timeout})
    assert response.status_code == 200, response.text
    run = response.json()
    assert run["status"] not in ("pending", "running"), run
    return run


async def until_event(
    client: httpx.AsyncClient, run_id: str, type: str, timeout: float = 10
) -> dict[str, Any]:
    """Follow the run's stream until an event of ``type`` arrives; returns it."""
    async with asyncio.timeout(timeout):
        async with client.stream("GET", f"/v1/runs/{run_id}/events") as response:
            async for message in messages(response):
                if message.event == type:
                    event: dict[str, Any] = message.json()
                    return event
    raise AssertionError(f"run {run_id} ended without a {type} event")


def assert_error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    """The response is the error shape with this status and code; returns the error."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"}, body
    assert body["error"]["code"] == code, body
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    return dict(body["error"])


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 10) -> None:
    """Poll the server (another process: nothing to await) until ``check`` holds; fail
    after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    for _ in itertools.count():
        if await check():
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"still not true after {timeout}s")
        await asyncio.sleep(0.05)
