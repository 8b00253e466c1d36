"""A full disk, over HTTP, on a real server: ``/healthz`` says so, new work is refused with
503 (never 500), reads go on, and once space returns everything resumes by itself with no
event lost. SIGTERM still stops the server within its deadline.

The disk is filled by the test server's switch (``tests/api/disk.py``): SQLite's own
"database or disk is full" for every write that needs room."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.api.conftest import Server, start_server
from tests.api.helpers import assert_error, eventually, finished, start


@pytest.fixture
def disk_server(tmp_path: Path) -> Iterator[Server]:
    running = start_server(tmp_path, TEST_DISK_SWITCH="1")
    yield running
    running.stop()


@pytest.fixture
async def http(disk_server: Server) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=disk_server.url, timeout=30) as client:
        yield client


async def _fill(http: httpx.AsyncClient, state: str) -> None:
    assert (await http.post(f"/test/disk/{state}")).status_code == 204


async def _healthy(http: httpx.AsyncClient) -> bool:
    return (await http.get("/healthz")).status_code == 200


async def _unhealthy(http: httpx.AsyncClient) -> bool:
    return (await http.get("/healthz")).status_code == 503


async def _all_events(http: httpx.AsyncClient, run_id: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    after = 0
    while True:
        params = {"format": "json", "after": after}
        page = (await http.get(f"/v1/runs/{run_id}/events", params=params)).json()
        found.extend(page["data"])
        if page["done"] or not page["data"]:
            return found
        after = page["next_after"]


class TestDiskFull:
    async def test_seen_while_nothing_emits_then_gone_when_space_returns(
        self, http: httpx.AsyncClient
    ) -> None:
        before = await start(http, "echo", "before")
        await finished(http, before["id"])
        await _fill(http, "full")
        # nothing is emitting: the first write that needs room is the one to find out
        big = "x" * 40_000
        refused = await http.post("/v1/runs", json={"agent": "echo", "input": big})
        assert_error(refused, 503, "unavailable")
        health = await http.get("/healthz")
        assert "full" in assert_error(health, 503, "unavailable")["message"]
        # every new piece of work is refused the same way, whatever its size
        small = await http.post("/v1/runs", json={"agent": "echo", "input": "small"})
        assert_error(small, 503, "unavailable")
        assert_error(await http.post("/v1/sessions", json={}), 503, "unavailable")
        # reads are served
        assert (await http.get(f"/v1/runs/{before['id']}")).json()["status"] == "completed"
        assert (await http.get("/v1/runs")).status_code == 200
        assert (await http.get(f"/v1/sessions/{before['session_id']}")).status_code == 200
        assert [e["seq"] for e in await _all_events(http, before["id"])] == [1, 2, 3]
        # the probe needs room as well: a few probes later the server still says so
        await asyncio.sleep(2.5)
        assert await _unhealthy(http)
        await _fill(http, "free")
        await eventually(lambda: _healthy(http), timeout=10)
        after = await start(http, "echo", big)
        assert (await finished(http, after["id"]))["output"] == big
        assert (await http.post("/v1/sessions", json={})).status_code == 201

    async def test_a_run_emitting_meanwhile_loses_nothing(self, http: httpx.AsyncClient) -> None:
        run = await start(http, "ticker", {"n": 400, "delay": 0.005})

        async def going() -> bool:
            return bool((await http.get(f"/v1/runs/{run['id']}")).json()["last_seq"] >= 20)

        await eventually(going)
        await _fill(http, "full")
        await eventually(lambda: _unhealthy(http))
        refused = await http.post("/v1/runs", json={"agent": "echo", "input": "x"})
        assert_error(refused, 503, "unavailable")
        # reads show what is committed, which stays put while the disk is full
        stalled = (await http.get(f"/v1/runs/{run['id']}")).json()
        await asyncio.sleep(0.5)
        assert (await http.get(f"/v1/runs/{run['id']}")).json()["last_seq"] == stalled["last_seq"]
        events = await _all_events(http, run["id"])
        assert [e["seq"] for e in events] == list(range(1, stalled["last_seq"] + 1))
        await _fill(http, "free")
        ended = await finished(http, run["id"], timeout=60)
        assert ended["status"] == "completed"
        events = await _all_events(http, run["id"])
        # queued, started, 400 ticks, completed: nothing queued while full was lost
        assert [e["seq"] for e in events] == list(range(1, 404))
        assert await _healthy(http)

    async def test_sigterm_while_full_stops_within_the_deadline(
        self, disk_server: Server, http: httpx.AsyncClient
    ) -> None:
        await start(http, "ticker", {"n": 100_000, "delay": 0.001})
        await _fill(http, "full")
        await eventually(lambda: _unhealthy(http))
        began = time.monotonic()
        disk_server.process.send_signal(signal.SIGTERM)
        code = await asyncio.to_thread(disk_server.process.wait, 30)
        took = time.monotonic() - began
        # cancel grace (1 s) and uvicorn's graceful shutdown (1 s), plus the bounded close
        assert took < 8, took
        # uvicorn ends by raising the signal it caught again, once it has shut down
        assert code in (0, -signal.SIGTERM)
        # the engine did close, and said what it could not write
        assert "shutting down with" in disk_server.log.read_text()
