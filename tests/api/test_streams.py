"""Event streams over real HTTP: every client sees every event once, in order, however it
connects, drops and resumes."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import httpx

from tests.api.conftest import Server
from tests.api.helpers import assert_error, finished, start, until_event
from tests.api.sse import events, messages

TERMINAL = {"run.completed", "run.failed", "run.cancelled", "run.interrupted"}


async def follow(
    client: httpx.AsyncClient, run_id: str, cuts: list[int], by_query: bool = False
) -> list[dict[str, Any]]:
    """Read the run's stream, hanging up after each seq in ``cuts`` and resuming from the
    last event seen (``Last-Event-ID``, or ``?after=`` with ``by_query``)."""
    received: list[dict[str, Any]] = []
    for cut in [*cuts, None]:
        last = received[-1]["seq"] if received else None
        headers, params = {}, {}
        if last is not None and by_query:
            params["after"] = str(last)
        elif last is not None:
            headers["Last-Event-ID"] = str(last)
        url = f"/v1/runs/{run_id}/events"
        async with client.stream("GET", url, headers=headers, params=params) as response:
            if response.status_code == 204:  # resumed after the terminal event
                assert received[-1]["type"] in TERMINAL
                continue
            assert response.status_code == 200
            async for message in messages(response):
                if message.comment is not None:
                    continue
                event = message.json()
                assert message.id == str(event["seq"])
                received.append(event)
                if cut is not None and event["seq"] >= cut:
                    break
    return received


class TestManyClients:
    """Concurrent clients on one run, some hanging up and resuming, all get 1..N once."""

    async def test_concurrent_clients_with_resumes(self, server: Server) -> None:
        limits = httpx.Limits(max_connections=200)
        async with httpx.AsyncClient(base_url=server.url, timeout=30, limits=limits) as client:
            run = await start(client, "ticker", {"n": 300, "delay": 0.002})
            rng = random.Random(7)
            plans = []
            for i in range(24):
                if i % 3 == 0:
                    plans.append(sorted(rng.sample(range(1, 330), 3)))  # some beyond the end
                else:
                    plans.append([])
            results = await asyncio.gather(
                *(
                    follow(client, run["id"], cuts, by_query=i % 2 == 1)
                    for i, cuts in enumerate(plans)
                ),
                follow(client, run["id"], [5, 5, 6]),
            )
            final = await finished(client, run["id"])
            late = await follow(client, run["id"], [100])  # connects after the end
        n = final["last_seq"]
        assert n == 300 + 3  # queued, started, 300 ticks, completed
        for received in [*results, late]:
            assert [e["seq"] for e in received] == list(range(1, n + 1))
            assert received[-1]["type"] == "run.completed"
            assert received[-1]["data"] == {"output": "done"}
        assert results[0] == late  # every client saw the very same events


class TestResume:
    """A cursor picks up exactly after itself; the stream ends after the terminal event."""

    async def test_after_and_last_event_id(self, client: httpx.AsyncClient) -> None:
        run = await start(client, "count", 20)
        await finished(client, run["id"])
        url = f"/v1/runs/{run['id']}/events"
        whole = await events(client, url)
        assert [e["seq"] for e in whole] == list(range(1, 24))
        assert await events(client, f"{url}?after=10") == whole[10:]
        assert await events(client, url, {"Last-Event-ID": "15"}) == whole[15:]
        # the header wins over the query, as EventSource sets it on reconnect
        assert await events(client, f"{url}?after=3", {"Last-Event-ID": "20"}) == whole[20:]

    async def test_resume_after_the_end(self, client: httpx.AsyncClient) -> None:
        """204: nothing will come, and an EventSource stops reconnecting."""
        run = await finished(client, (await start(client, "echo", "hi"))["id"])
        url = f"/v1/runs/{run['id']}/events"
        last = run["last_seq"]
        for headers, params in (({"Last-Event-ID": str(last)}, {}), ({}, {"after": last + 50})):
            response = await client.get(url, headers=headers, params=params)
            assert (response.status_code, response.content) == (204, b"")
        page = await client.get(url, params={"after": last, "format": "json"})
        assert page.json() == {"data": [], "next_after": last, "done": True}

    async def test_a_cursor_beyond_a_live_run(self, client: httpx.AsyncClient) -> None:
        """A cursor no client could have received is refused, not followed forever."""
        run = await start(client, "waiter")
        await until_event(client, run["id"], "run.started")
        url = f"/v1/runs/{run['id']}/events"
        error = assert_error(await client.get(url, params={"after": 99}), 422, "invalid_input")
        assert "beyond the last event" in error["message"]
        await client.post(f"/v1/runs/{run['id']}/cancel")
        await finished(client, run["id"])

    async def test_bad_cursor(self, client: httpx.AsyncClient) -> None:
        run = await start(client, "echo", "hi")
        url = f"/v1/runs/{run['id']}/events"
        assert_error(await client.get(url, params={"after": -1}), 422, "invalid_request")
        bad = await client.get(url, headers={"Last-Event-ID": "seven"})
        assert_error(bad, 422, "invalid_request")


class TestJsonPages:
    """Polling clients get the very events the stream carries, page by page."""

    async def test_pages_match_the_stream(self, client: httpx.AsyncClient) -> None:
        run = await start(client, "count", 50)
        url = f"/v1/runs/{run['id']}/events"
        streamed = await events(client, url)
        paged: list[dict[str, Any]] = []
        after, done = 0, False
        while not done:
            page = await client.get(url, params={"format": "json", "after": after, "limit": 7})
            assert page.status_code == 200
            body = page.json()
            paged += body["data"]
            assert body["next_after"] == (body["data"][-1]["seq"] if body["data"] else after)
            after, done = body["next_after"], body["done"]
        assert paged == streamed
        again = await client.get(
            url, params={"after": after}, headers={"Accept": "application/json"}
        )
        assert again.json() == {"data": [], "next_after": after, "done": True}

    async def test_a_page_of_a_live_run_is_not_done(self, client: httpx.AsyncClient) -> None:
        run = await start(client, "waiter")
        await until_event(client, run["id"], "run.started")
        page = await client.get(f"/v1/runs/{run['id']}/events?format=json")
        assert [e["type"] for e in page.json()["data"]] == ["run.queued", "run.started"]
        assert page.json()["done"] is False
        assert (await client.post(f"/v1/runs/{run['id']}/cancel")).status_code == 202
        await finished(client, run["id"])


class TestLiveStream:
    """An idle stream sends heartbeats; a cancel reaches it and ends it."""

    async def test_heartbeat_then_cancel(self, client: httpx.AsyncClient) -> None:
        run = await start(client, "waiter")
        seen: list[str] = []
        async with asyncio.timeout(15):
            async with client.stream("GET", f"/v1/runs/{run['id']}/events") as response:
                async for message in messages(response):
                    if message.comment == "ping" and "ping" not in seen:
                        seen.append("ping")
                        cancel = await client.post(
                            f"/v1/runs/{run['id']}/cancel", json={"reason": "enough"}
                        )
                        assert cancel.status_code == 202
                    elif message.event is not None:
                        seen.append(message.event)
                        last = message.json()
        assert seen == ["run.queued", "run.started", "ping", "run.cancelled"]
        assert last["data"]["by"] == "http:default"
        assert last["data"]["reason"] == "enough"


class TestSessionStream:
    """A session's stream carries every run of the session, in log order, resumable by pos."""

    async def test_two_runs_then_resume(self, client: httpx.AsyncClient) -> None:
        session = (await client.post("/v1/sessions", json={})).json()
        url = f"/v1/sessions/{session['id']}/runs"
        first = (await client.post(url, json={"agent": "count", "input": 3})).json()
        second = (
            await client.post(url, json={"agent": "echo", "input": "b", "if_busy": "enqueue"})
        ).json()
        received: list[dict[str, Any]] = []
        async with asyncio.timeout(15):
            stream = f"/v1/sessions/{session['id']}/events"
            async with client.stream("GET", stream) as response:
                async for message in messages(response):
                    if message.comment is not None:
                        continue
                    event = message.json()
                    assert message.id == str(event["pos"])
                    received.append(event)
                    if sum(e["type"] in TERMINAL for e in received) == 2:
                        break
        # the second run's run.queued may come before or after the first run's ticks
        for run, n in ((first, 6), (second, 3)):
            assert [e["seq"] for e in received if e["run_id"] == run["id"]] == list(range(1, n + 1))
        assert len(received) == 9
        positions = [e["pos"] for e in received]
        assert positions == sorted(set(positions))
        page = await client.get(stream, params={"format": "json", "after": positions[2]})
        assert page.json()["data"] == received[3:]
        assert page.json()["next_after"] == positions[-1]
        resumed: list[dict[str, Any]] = []
        async with asyncio.timeout(15):
            headers = {"Last-Event-ID": str(positions[4])}
            async with client.stream("GET", stream, headers=headers) as response:
                async for message in messages(response):
                    if message.comment is None:
                        resumed.append(message.json())
                        if len(resumed) == len(received) - 5:
                            break
        assert resumed == received[5:]


class TestUnknown:
    """Streams of unknown runs and sessions answer 404 in the error shape, in any format."""

    async def test_unknown_ids(self, client: httpx.AsyncClient) -> None:
        for url in ("/v1/runs/run_nope/events", "/v1/sessions/ses_nope/events"):
            assert_error(await client.get(url), 404, "not_found")
            assert_error(await client.get(url, params={"format": "json"}), 404, "not_found")
