"""``follow`` survives what networks and servers do: every event arrives exactly once."""

from __future__ import annotations

import signal
from collections.abc import Iterator

import pytest

import culm
from culm.client import EventInfo, ServerUnreachable
from tests.client.serving import Proxy, Server, free_port

SLOW_TICKS = {"n": 10, "delay": 0.05}
"""Slow enough that a drop after the first ticks always lands mid-run."""


def dropping(events: Iterator[EventInfo], proxy: Proxy, at: set[int]) -> list[EventInfo]:
    """Collect ``events``, cutting every connection right after the given seqs arrive."""
    seen = []
    for event in events:
        seen.append(event)
        if event["seq"] in at:
            proxy.drop()
    return seen


class TestDroppedConnections:
    """A connection cut mid-stream is resumed from the last seq: no gap, no duplicate."""

    def test_blocking(self, server: Server, proxy: Proxy) -> None:
        with culm.Client(proxy.url, backoff=0.02) as client:
            run = client.start_run("ticker", SLOW_TICKS)
            seen = dropping(client.follow(run["id"]), proxy, at={3, 7})
        assert [e["seq"] for e in seen] == list(range(1, 14))
        assert seen[-1]["type"] == "run.completed"
        assert proxy.accepted >= 3

    async def test_async(self, server: Server, proxy: Proxy) -> None:
        async with culm.AsyncClient(proxy.url, backoff=0.02) as client:
            run = await client.start_run("ticker", SLOW_TICKS)
            seen = []
            async for event in client.follow(run["id"]):
                seen.append(event)
                if event["seq"] in (3, 7):
                    proxy.drop()
        assert [e["seq"] for e in seen] == list(range(1, 14))
        assert seen[-1]["type"] == "run.completed"
        assert proxy.accepted >= 3

    def test_session_stream(self, server: Server, proxy: Proxy) -> None:
        with culm.Client(proxy.url, backoff=0.02) as client:
            run = client.start_run("ticker", SLOW_TICKS)
            stream = client.follow_session(run["session_id"])
            seen = []
            for event in stream:
                seen.append(event)
                if event["seq"] in (3, 7):
                    proxy.drop()
                if event["type"] == "run.completed":
                    break
            stream.close()
        assert [e["seq"] for e in seen] == list(range(1, 14))
        assert [e["pos"] for e in seen] == sorted({e["pos"] for e in seen})

    def test_gives_up_after_bounded_retries(self, server: Server) -> None:
        proxy = Proxy(server.port)
        with culm.Client(proxy.url, retries=2, backoff=0.01) as client:
            run = client.start_run("waiter")
            stream = client.follow(run["id"])
            assert next(stream)["seq"] == 1
            proxy.close()  # nothing listens any more
            with pytest.raises(ServerUnreachable):
                list(stream)
        with culm.Client(server.url) as client:
            client.cancel(run["id"])

    def test_first_connection_failure_is_raised_at_once(self) -> None:
        url = f"http://127.0.0.1:{free_port()}"
        with culm.Client(url) as client, pytest.raises(ServerUnreachable, match="cannot reach"):
            next(client.follow("run_x"))


class TestServerRestart:
    """A server killed mid-run and started again on the same database: the follower
    reconnects and sees the run end as interrupted, each event once."""

    def test_follow_across_a_restart(self, own_server: Server) -> None:
        with culm.Client(own_server.url, backoff=0.05) as client:
            run = client.start_run("waiter")
            seen = []
            for event in client.follow(run["id"]):
                seen.append(event)
                if event["type"] == "run.started":
                    own_server.stop(signal.SIGKILL)
                    own_server.start()
        assert [(e["seq"], e["type"]) for e in seen] == [
            (1, "run.queued"),
            (2, "run.started"),
            (3, "run.interrupted"),
        ]
