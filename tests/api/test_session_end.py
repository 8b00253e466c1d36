"""A session's stream ends when the session is deleted: at once when it is deleted through
this server, within a few heartbeats when it is deleted by another process."""

from __future__ import annotations

import asyncio
import sqlite3

import httpx

from tests.api.conftest import Server
from tests.api.helpers import assert_error, finished, start
from tests.api.sse import messages


async def _follow(client: httpx.AsyncClient, session_id: str, started: asyncio.Event) -> list[str]:
    """The event types of the session's stream, until the server ends it."""
    seen = []
    async with client.stream("GET", f"/v1/sessions/{session_id}/events") as response:
        assert response.status_code == 200
        async for message in messages(response):
            if message.event is not None:
                seen.append(message.event)
                if message.event == "run.completed":
                    started.set()
    return seen


class TestSessionStreamEnds:
    """The stream closes cleanly (no error), and resuming it answers 404."""

    async def test_deleted_through_the_api(self, client: httpx.AsyncClient) -> None:
        run = await start(client, "count", 2)
        await finished(client, run["id"])
        session = run["session_id"]
        caught_up = asyncio.Event()
        follower = asyncio.create_task(_follow(client, session, caught_up))
        async with asyncio.timeout(10):
            await caught_up.wait()
        assert (await client.delete(f"/v1/sessions/{session}")).status_code == 204
        async with asyncio.timeout(5):
            seen = await follower
        assert seen == ["run.queued", "run.started", "test.tick", "test.tick", "run.completed"]
        gone = await client.get(f"/v1/sessions/{session}/events")
        assert_error(gone, 404, "not_found")

    async def test_a_child_sessions_stream_ends_with_its_parent(
        self, client: httpx.AsyncClient
    ) -> None:
        parent = (await client.post("/v1/sessions")).json()["id"]
        child = (await client.post("/v1/sessions", json={"parent_id": parent})).json()["id"]
        async with client.stream("GET", f"/v1/sessions/{child}/events") as response:
            assert response.status_code == 200
            assert (await client.delete(f"/v1/sessions/{parent}")).status_code == 204
            async with asyncio.timeout(5):
                async for _ in messages(response):
                    pass

    async def test_deleted_by_another_process(
        self, server: Server, client: httpx.AsyncClient
    ) -> None:
        session = (await client.post("/v1/sessions")).json()["id"]
        pings = 0
        async with client.stream("GET", f"/v1/sessions/{session}/events") as response:
            assert response.status_code == 200
            async with asyncio.timeout(10):  # heartbeats of 0.3 s, a check every 4
                async for message in messages(response):
                    pings += message.comment == "ping"
                    if pings == 1:  # following: another process sharing the database
                        # deletes the session, and no notice of it reaches this server
                        with sqlite3.connect(server.log.parent / "culm.db", timeout=10) as db:
                            db.execute("DELETE FROM sessions WHERE id = ?", (session,))
        assert pings >= 2  # it was noticed by the stream's own check, not at its start
