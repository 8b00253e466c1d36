"""Benchmark webhooks through a real server and a real receiver on loopback.

Starts ``culm`` in a subprocess (SQLite in a temporary directory; private addresses allowed,
since the receiver listens on 127.0.0.1) and a receiver in this process, then measures, each
as the median of ``--repeat`` repetitions:

- runs per second (200 trivial runs, 20 at a time, each waited for) with no endpoint, with
  one endpoint for ``run.completed`` whose receiver answers at once, and with one endpoint
  for ``run.*`` whose receiver never answers (every attempt times out): deliveries must not
  slow runs
- delay from a run's ``run.completed`` (its timestamp in the log) to the receiver getting
  it: p50 and p99 over those 200 runs, at the default poll interval (0.5 s)
- a burst: 2,000 events of one run to an endpoint for them; seconds until all arrived

    python bench/bench_webhooks.py [--repeat 3]

Only 127.0.0.1 is contacted; every loop is bounded in count and time.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import orjson
import uvicorn

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_http import LIMITS, Server, runs_per_second, start  # noqa: E402


class Receiver:
    """Answers 200 at once (or never, when ``hang``); notes when each event arrived."""

    def __init__(self) -> None:
        self.hang = False
        self.arrived: dict[str, float] = {}
        self.bodies: dict[str, dict[str, Any]] = {}
        self.release = asyncio.Event()
        self.ready = asyncio.Event()
        self._changed = asyncio.Condition()

    async def until(self, count: int, timeout: float) -> None:
        """Wait until ``count`` distinct events have arrived."""
        async with asyncio.timeout(timeout), self._changed:
            await self._changed.wait_for(lambda: len(self.arrived) >= count)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        now = time.time()
        msg_id = dict(scope["headers"]).get(b"webhook-id", b"").decode()
        async with self._changed:
            self.arrived.setdefault(msg_id, now)
            self.bodies[msg_id] = orjson.loads(body) if body else {}
            self._changed.notify_all()
        if self.hang:
            await self.release.wait()
            return
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})


@asynccontextmanager
async def receiving() -> AsyncIterator[tuple[Receiver, int]]:
    receiver = Receiver()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(receiver, log_level="error", access_log=False, lifespan="off")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    async with httpx.AsyncClient() as http, asyncio.timeout(10):
        while True:  # the receiver answers once it is up
            try:
                await http.get(f"http://127.0.0.1:{sock.getsockname()[1]}/", timeout=1)
                break
            except httpx.TransportError:
                await asyncio.sleep(0.01)
    receiver.arrived.clear()
    try:
        yield receiver, sock.getsockname()[1]
    finally:
        receiver.release.set()
        server.should_exit = True
        await task
        sock.close()


def ts(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


async def one(mode: str) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        server = Server(Path(tmp), "FULL")
        try:
            async with (
                receiving() as (receiver, port),
                httpx.AsyncClient(base_url=server.url, limits=LIMITS, timeout=60) as http,
            ):
                url = f"http://127.0.0.1:{port}/hook"
                for _ in range(2):  # warm up
                    await start(http, "noop")
                if mode == "answering":
                    await http.post("/v1/webhooks", json={"url": url, "events": ["run.completed"]})
                elif mode == "hanging":
                    receiver.hang = True
                    await http.post("/v1/webhooks", json={"url": url, "events": ["run.*"]})
                figures = await runs_per_second(http, server)
                if mode == "answering":
                    await receiver.until(200, timeout=60)
                    delays = sorted(
                        receiver.arrived[i] - ts(receiver.bodies[i]["ts"]) for i in receiver.arrived
                    )
                    figures["delay p50 ms"] = statistics.median(delays) * 1000
                    figures["delay p99 ms"] = delays[int(len(delays) * 0.99) - 1] * 1000
                    receiver.arrived.clear()
                    await http.post("/v1/webhooks", json={"url": url, "events": ["bench.*"]})
                    began = time.time()
                    await start(http, "burst", 2000)
                    await receiver.until(2000, timeout=120)
                    figures["2,000 events delivered s"] = max(receiver.arrived.values()) - began
                return figures
        finally:
            server.stop()


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--only", nargs="*", default=["none", "answering", "hanging"])
    args = parser.parse_args()
    os.environ["CULM_WEBHOOK_ALLOW_PRIVATE"] = "true"
    os.environ["CULM_WEBHOOK_TIMEOUT"] = "10"
    results: dict[str, dict[str, list[float]]] = {}
    for _ in range(args.repeat):
        for mode in args.only:  # alternate, so noise hits all alike
            for name, value in (await one(mode)).items():
                results.setdefault(mode, {}).setdefault(name, []).append(value)
    for mode, figures in results.items():
        for name, values in figures.items():
            print(f"{mode:>10}  {name:<26} {statistics.median(values):10.1f}")


if __name__ == "__main__":
    asyncio.run(main())
