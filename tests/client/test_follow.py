"""``follow`` survives what networks and servers do: every event arrives exactly once."""

from __future__ import annotations

import signal

import pytest

import culm
from culm.client import ServerUnreachable
from tests.client.serving import Proxy, Server, free_port

ENDLESS_TICKS = {"n": 100_000, "delay": 0.005}
"""Ticks until cancelled, so every drop lands mid-run however slow the machine is."""
DROPS = (5, 30)
"""Seqs after which the proxy cuts every connection."""
STOP = 60
"""Seq after which the run is cancelled: its terminal event can only arrive on a
connection made after the last drop."""


class TestDroppedConnections:
    """A connection cut mid-stream is resumed from the last seq: no gap, no duplicate."""

    def test_blocking(self, server: Server, proxy: Proxy, client: culm.Client) -> None:
        with culm.Client(proxy.url, backoff=0.02) as flaky:
            run = flaky.start_run("ticker", ENDLESS_TICKS)
            seen = []
            for event in flaky.follow(run["id"]):
                seen.append(event)
                if event["seq"] in DROPS:
                    proxy.drop()
                if event["seq"] == STOP:
                    client.cancel(run["id"])
        assert [e["seq"] for e in seen] == list(range(1, len(seen) + 1))
        assert seen[-1]["type"] == "run.cancelled"
        assert proxy.accepted >= 2

    async def test_async(self, server: Server, proxy: Proxy, aclient: culm.AsyncClient) -> None:
        async with culm.AsyncClient(proxy.url, backoff=0.02) as flaky:
            run = await flaky.start_run("ticker", ENDLESS_TICKS)
            seen = []
            async for event in flaky.follow(run["id"]):
                seen.append(event)
                if event["seq"] in DROPS:
                    proxy.drop()
                if event["seq"] == STOP:
                    await aclient.cancel(run["id"])
        assert [e["seq"] for e in seen] == list(range(1, len(seen) + 1))
        assert seen[-1]["type"] == "run.cancelled"
        assert proxy.accepted >= 2

    def test_session_stream(self, server: Server, proxy: Proxy, client: culm.Client) -> None:
        with culm.Client(proxy.url, backoff=0.02) as flaky:
            run = flaky.start_run("ticker", ENDLESS_TICKS)
            stream = flaky.follow_session(run["session_id"])
            seen = []
            for event in stream:
                seen.append(event)
                if event["seq"] in DROPS:
                    proxy.drop()
                if event["seq"] == STOP:
                    client.cancel(run["id"])
                if event["type"] == "run.cancelled":
                    break
            stream.close()
        assert [e["seq"] for e in seen] == list(range(1, len(seen) + 1))
        assert [e["pos"] for e in seen] == sorted({e["pos"] for e in seen})
        assert proxy.accepted >= 2

    def test_resuming_after_the_end_yields_nothing_at_once(
        self, server: Server, client: culm.Client
    ) -> None:
        run = client.start_run("count", 3)
        everything = list(client.follow(run["id"]))
        last = everything[-1]["seq"]
        assert everything[-1]["type"] == "run.completed"
        assert list(client.follow(run["id"], after=last)) == []
        assert [e["seq"] for e in client.follow(run["id"], after=last - 1)] == [last]

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
