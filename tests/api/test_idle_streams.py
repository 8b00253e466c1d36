"""Idle event streams cost (almost) nothing: once caught up, a stream waits for the bus to
announce a commit and never reads the log again on its own, however long it stays open.

The server runs in this process (a real uvicorn on a loopback socket, real HTTP clients),
so the test can count the store's reads of the log."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Sequence
from typing import Any

import httpx
import pytest

import culm
from culm.api import create_app
from culm.api.server import Server, server_config
from culm.events import Event
from tests.agents import app as test_app
from tests.api.helpers import eventually
from tests.api.sse import messages

IDLE_POLL = 0.25
STREAMS = 40


@pytest.fixture
async def served(db_url: str) -> AsyncIterator[tuple[str, culm.Engine]]:
    settings = culm.Settings(
        database_url=db_url,
        idle_poll_seconds=IDLE_POLL,
        heartbeat_seconds=0.1,
        cancel_grace=1.0,
        recent_events_bytes=0,  # every read of the log is the store's, and counted
    )
    engine = culm.Engine(test_app, settings)
    api = create_app(test_app, settings, engine=engine)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    server = Server(server_config(api, settings, log_level="warning", access_log=False), api)
    task = asyncio.create_task(server.serve(sockets=[sock]))

    async def started() -> bool:
        return bool(server.started)

    await eventually(started)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}", engine
    finally:
        server.should_exit = True
        await task
        sock.close()


class LogReads:
    """Counts the store's reads of a run's or a session's log."""

    def __init__(self, engine: culm.Engine) -> None:
        self.count = 0
        store = engine.store
        run_reads, session_reads = store.read_events, store.read_session_events

        async def read_events(run_id: str, after: int = 0, limit: int = 1000) -> list[Event]:
            self.count += 1
            return await run_reads(run_id, after, limit)

        async def read_session_events(
            ids: Sequence[str], after: int = 0, limit: int = 1000
        ) -> list[Event]:
            self.count += 1
            return await session_reads(ids, after, limit)

        store.read_events = read_events  # type: ignore[method-assign]
        store.read_session_events = read_session_events  # type: ignore[method-assign]


async def _follow(
    http: httpx.AsyncClient, url: str, caught_up: asyncio.Event, seen: list[str]
) -> None:
    """Read the stream to its end, noting each message; set ``caught_up`` at run.started."""
    async with http.stream("GET", url) as response:
        assert response.status_code == 200
        async for message in messages(response):
            seen.append(message.event or "ping")
            if message.event == "run.started":
                caught_up.set()
            if message.event == "run.cancelled" and "/runs/" in url:
                return


class TestIdleStreams:
    async def test_caught_up_streams_do_not_read_the_log(
        self, served: tuple[str, culm.Engine]
    ) -> None:
        url, engine = served
        limits = httpx.Limits(max_connections=2 * STREAMS + 10)
        async with httpx.AsyncClient(base_url=url, timeout=30, limits=limits) as http:
            run: dict[str, Any] = (await http.post("/v1/runs", json={"agent": "waiter"})).json()
            urls = [f"/v1/runs/{run['id']}/events"] * STREAMS
            urls += [f"/v1/sessions/{run['session_id']}/events"] * STREAMS
            ready = [asyncio.Event() for _ in urls]
            seen: list[list[str]] = [[] for _ in urls]
            streams = [
                asyncio.create_task(_follow(http, u, r, s))
                for u, r, s in zip(urls, ready, seen, strict=True)
            ]
            try:
                async with asyncio.timeout(20):
                    await asyncio.gather(*(r.wait() for r in ready))
                reads = LogReads(engine)
                before = [len(s) for s in seen]
                await asyncio.sleep(4 * IDLE_POLL)
                assert reads.count == 0
                # the streams are alive all the while: each sent heartbeats
                assert all(len(s) > b for s, b in zip(seen, before, strict=True))
                # and a commit still reaches every one of them, through the bus
                await http.post(f"/v1/runs/{run['id']}/cancel")
                async with asyncio.timeout(20):
                    await asyncio.gather(*streams[:STREAMS])
                    await eventually(lambda: _all_saw(seen[STREAMS:], "run.cancelled"), timeout=20)
            finally:
                for stream in streams:
                    stream.cancel()
                await asyncio.gather(*streams, return_exceptions=True)


async def _all_saw(seen: list[list[str]], event: str) -> bool:
    return all(event in s for s in seen)
